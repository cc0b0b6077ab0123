#!/usr/bin/env bash
# scripts/deps.sh: install what building and testing toolcell needs, on
# Debian 12. Idempotent: packages already installed (dpkg) are left alone and
# apt is not touched at all when nothing is missing.
#   scripts/deps.sh          everything scripts/test.sh needs (incl. the VM)
#   scripts/deps.sh --demo   only what scripts/demo.sh needs (cgo + libseccomp)
# Also checks that Go is available (/usr/local/go/bin is added to PATH).
set -euo pipefail
die() { echo "deps: ERROR: $*" >&2; exit 1; }

demo_pkgs=(libseccomp-dev gcc pkg-config python3)
# make, python3-venv and npm: the everyday workloads the tests run in the
# sandbox (sandbox/workload_test.go)
all_pkgs=("${demo_pkgs[@]}" bubblewrap qemu-system-x86 busybox-static cpio xz-utils zstd
          python3 git util-linux iproute2 ca-certificates curl make python3-venv
          xfsprogs btrfs-progs    # the file systems idmapped workdirs are tested on
          kmod)                   # depmod: the VM kernel's module dependencies
case ${1:-} in
  --demo) pkgs=("${demo_pkgs[@]}") ;;
  "")     pkgs=("${all_pkgs[@]}") ;;
  -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
  *) die "unknown argument '$1' (use --demo or nothing)" ;;
esac

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
# node and npm: Debian's packages, unless a node that brings its own npm
# (NodeSource's nodejs) is installed already
if [ "${1:-}" = "" ] && ! command -v npm >/dev/null; then
  installed nodejs || missing+=(nodejs)
  missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing: ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
      die "missing packages (${missing[*]}) and not root; run: sudo apt-get install ${missing[*]}"
    sudo=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed (network or apt sources?)"
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    # retry one by one so the error names the package that failed
    for p in "${missing[@]}"; do
      installed "$p" && continue
      echo "deps: installing $p"
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
        die "apt-get install $p failed"
    done
  fi
  for p in "${missing[@]}"; do installed "$p" || die "package $p is still not installed"; done
  echo "deps: installed ${missing[*]}"
else
  echo "deps: all ${#pkgs[@]} packages present"
fi

# The official TypeScript MCP client the tests drive toolcell mcp with
# (testdata/mcp-client, pinned by its package-lock.json): installed once
# per lock file, from npm.
if [ "${1:-}" = "" ]; then
  mc=$(cd "$(dirname "$0")/.." && pwd)/testdata/mcp-client
  stamp=$mc/node_modules/.toolcell-lock
  want=$(sha256sum "$mc/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "deps: npm ci in testdata/mcp-client (@modelcontextprotocol/sdk)"
    (cd "$mc" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in $mc failed (npm registry reachable?)"
    echo "$want" > "$stamp"
  fi
fi

# Go: not from apt (bookworm's is too old); expected at /usr/local/go.
[ -x /usr/local/go/bin/go ] && case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH=/usr/local/go/bin:$PATH ;; esac
command -v go >/dev/null ||
  die "Go not found (looked in PATH and /usr/local/go/bin); install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod" 2>/dev/null) to /usr/local/go"
echo "deps: $(go version)"

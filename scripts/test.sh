#!/usr/bin/env bash
# scripts/test.sh: the whole toolcell test suite (what CI runs via .ci/run).
#
#   scripts/test.sh                 deps, lint, root, rootless and vm stages
#   scripts/test.sh --quick         deps, lint and the root stage only
#   scripts/test.sh --stage NAME    deps and one stage: lint|root|rootless|vm
#                                   (repeatable)
# Stages:
#   lint      gofmt -l (must be empty), go vet, staticcheck (pinned); package
#             audit builds with CGO_ENABLED=0 from the standard library alone
#   root      go test ./... as root on this host      TOOLCELL_HOST_KIND=root-hybrid
#   rootless  compiled test binaries run as uid/gid 65534 without capabilities,
#             with a delegated cgroup v1 subtree       TOOLCELL_HOST_KIND=rootless-hybrid
#   vm        go test -exec scripts/vm/vmexec: each package in a fresh qemu VM
#             with pure cgroup v2, as root             TOOLCELL_HOST_KIND=vm-v2
# All stages set TOOLCELL_CI=1: tests never skip for a missing prerequisite.
# With CI=true a stage that cannot run (not root, no qemu) fails; by hand it
# is reported as SKIP.
#
# env: TOOLCELL_PACKAGES     packages for lint/root/rootless (default ./...)
#      TOOLCELL_VM_PACKAGES  packages for the vm stage (default $TOOLCELL_PACKAGES)
#      TOOLCELL_VM_PARALLEL  VMs at once (default 1: TCG on 2 cores is faster serial)
#      TOOLCELL_TEST_FLAGS   extra go test flags, e.g. "-v -run TestX"
#      TOOLCELL_VM_DIR       VM asset cache (default /var/cache/toolcell-vm)
#      TOOLCELL_TOOLS_DIR    where staticcheck is installed (default ~/.cache/toolcell-tools)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
STATICCHECK_VERSION=v0.8.2   # staticcheck 2026.2.2, supports Go 1.26
NOBODY=65534

say() { printf '\n==> %s\n' "$*"; }
die() { echo "test.sh: ERROR: $*" >&2; exit 2; }
usage() { sed -n '2,8p' "$0"; exit "${1:-0}"; }

stages=()
quick=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --stage) [ $# -ge 2 ] || usage 2; stages+=("$2"); shift ;;
    --stage=*) stages+=("${1#--stage=}") ;;
    -h|--help) usage 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
  shift
done
if [ ${#stages[@]} -eq 0 ]; then
  if [ -n "$quick" ]; then stages=(lint root); else stages=(lint root rootless vm); fi
fi
for s in "${stages[@]}"; do
  case $s in lint|root|rootless|vm) ;; *) die "unknown stage '$s' (lint|root|rootless|vm)";; esac
done

in_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
# a stage that cannot run: failure in CI, skip by hand
cannot() {
  if in_ci; then echo "test.sh: stage cannot run: $* (CI=$CI: failing instead of skipping)" >&2; return 1; fi
  echo "test.sh: SKIP: $*" >&2; return 3
}

# --- environment -----------------------------------------------------------
t0=$SECONDS
"$root/scripts/deps.sh"
[ -x /usr/local/go/bin/go ] && PATH=/usr/local/go/bin:$PATH
export PATH
command -v go >/dev/null || die "go not found"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"   # a clone owned by another user must not break builds
export TOOLCELL_CI=1
unset TOOLCELL_HOST_KIND
PKGS=${TOOLCELL_PACKAGES:-./...}
VM_PKGS=${TOOLCELL_VM_PACKAGES:-$PKGS}
# shellcheck disable=SC2206
TFLAGS=(-count=1 -timeout=15m ${TOOLCELL_TEST_FLAGS:-})
GOBIN_DIR=$(go env GOBIN); GOBIN_DIR=${GOBIN_DIR:-$(go env GOPATH)/bin}

work=$(mktemp -d "${TMPDIR:-/tmp}/toolcell-test.XXXXXX")
chmod 755 "$work"
cleanup_main() { rm -rf "$work"; }
trap cleanup_main EXIT
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP
deps_time=$((SECONDS - t0))

# --- lint --------------------------------------------------------------------
stage_lint() {
  local bad=0 out sc files
  say "lint: gofmt -l"
  # the packages' own files only (testdata may hold deliberately odd Go code)
  files=$(go list -e -f '{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}{{range .CgoFiles}}{{$d}}/{{.}} {{end}}{{range .TestGoFiles}}{{$d}}/{{.}} {{end}}{{range .XTestGoFiles}}{{$d}}/{{.}} {{end}}{{range .IgnoredGoFiles}}{{$d}}/{{.}} {{end}}' $PKGS)
  files="$files $(find examples/agentloop -name '*.go' 2>/dev/null | tr '\n' ' ')"
  out=$(gofmt -l $files 2>&1) || { echo "$out"; bad=1; }
  if [ -n "$out" ]; then echo "gofmt: these files need formatting (run gofmt -w):"; echo "$out"; bad=1; fi
  say "lint: go vet $PKGS"
  go vet $PKGS || bad=1
  sc=${TOOLCELL_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/toolcell-tools}/staticcheck-$STATICCHECK_VERSION
  if [ ! -x "$sc/staticcheck" ]; then
    say "lint: installing staticcheck $STATICCHECK_VERSION into $sc"
    (cd "$work" && GOBIN=$sc GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION") ||
      { echo "cannot install staticcheck $STATICCHECK_VERSION"; return 1; }
  fi
  say "lint: staticcheck ($("$sc/staticcheck" -version)) $PKGS"
  "$sc/staticcheck" $PKGS || bad=1
  say "lint: a build without cgo fails with one line naming the fix (internal/needcgo)"
  out=$(CGO_ENABLED=0 go build ./... 2>&1) && { echo "CGO_ENABLED=0 go build succeeded?"; bad=1; }
  if [ "$(grep -c . <<<"$out")" -ne 2 ] || ! grep -q 'toolcell_needs_cgo_and_libseccomp_dev' <<<"$out"; then
    echo "CGO_ENABLED=0 go build said:"; echo "$out"; bad=1
  fi
  say "lint: package audit builds without cgo and imports the standard library only"
  if ! out=$(CGO_ENABLED=0 go build ./audit 2>&1); then
    echo "package audit must build with CGO_ENABLED=0 (log pipelines parse records without libseccomp); CGO_ENABLED=0 go build ./audit said:"
    echo "$out"; bad=1
  fi
  # with cgo on, so that a dependency's cgo files show (std's too: net, os/user)
  if ! out=$(go list -deps -f '{{if not .Standard}}{{if ne .ImportPath "github.com/toolcell/toolcell/audit"}}{{.ImportPath}} (not in the standard library){{"\n"}}{{end}}{{end}}{{if .CgoFiles}}{{.ImportPath}} (uses cgo){{"\n"}}{{end}}' ./audit 2>&1); then
    echo "go list -deps ./audit failed:"; echo "$out"; bad=1
  elif [ -n "$out" ]; then
    echo "package audit must import the standard library only, without cgo; its dependencies include:"
    echo "$out"; bad=1
  fi
  return $bad
}

# --- root ----------------------------------------------------------------------
stage_root() {
  [ "$(id -u)" = 0 ] || { cannot "root stage: not running as root (uid $(id -u))"; return; }
  say "root: TOOLCELL_HOST_KIND=root-hybrid go test ${TFLAGS[*]} $PKGS"
  TOOLCELL_HOST_KIND=root-hybrid go test "${TFLAGS[@]}" $PKGS || return 1
  agentloop_tests
}

# The agent-loop examples are a module of their own (the vendors' SDKs stay
# out of the core module's dependencies): vet and test it against its fake
# model servers, with the core module replaced by this tree.
agentloop_tests() {
  [ "$PKGS" = ./... ] || return 0
  say "root: examples/agentloop (own module): go vet, go test"
  (cd examples/agentloop && go vet ./... && TOOLCELL_HOST_KIND=root-hybrid go test "${TFLAGS[@]}" ./...)
}

# --- rootless ------------------------------------------------------------------
# v1 cgroup mount point of a controller, from /proc/self/mountinfo
v1_mount() {
  awk -v c="$1" '{ for (i = 7; $i != "-"; i++); if ($(i+1) != "cgroup") next
                   n = split($(i+3), o, ","); for (j = 1; j <= n; j++) if (o[j] == c) { print $5; exit } }' /proc/self/mountinfo
}
# our cgroup path in the v1 hierarchy that has controller $1
v1_own() { awk -F: -v c="$1" '{ n = split($2, o, ","); for (j = 1; j <= n; j++) if (o[j] == c) { print $3; exit } }' /proc/self/cgroup; }

rootless_cg_dirs=()
rootless_cleanup() {
  set +e
  local d p
  for d in "${rootless_cg_dirs[@]}"; do
    [ -d "$d" ] || continue
    # anything still inside was started by this test run: kill it, then remove
    for p in $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    for _ in 1 2 3 4 5; do
      find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$d" ] || break
      sleep 0.2
    done
    if [ -d "$d" ]; then echo "test.sh: WARNING: could not remove cgroup $d" >&2; fi
  done
  rm -rf "$work/rootless"
}

stage_rootless() {
  [ "$(id -u)" = 0 ] || { cannot "rootless stage needs root to set up uid $NOBODY and its cgroups (uid $(id -u))"; return; }
  command -v setpriv >/dev/null || { cannot "setpriv not found (util-linux)"; return; }
  trap rootless_cleanup EXIT
  trap 'exit 130' INT; trap 'exit 143' TERM
  local rl=$work/rootless c mnt own rel dir name env=() list pkg pdir bin fails=0 t rc deleg=()
  mkdir -p "$rl/bin" "$rl/tmp"
  chmod 755 "$rl" "$rl/bin"; chown "$NOBODY:$NOBODY" "$rl/tmp"; chmod 755 "$rl/tmp"

  say "rootless: delegating cgroups to uid $NOBODY"
  if [ -n "$(v1_mount memory)" ]; then
    for c in memory pids cpu cpuacct; do
      mnt=$(v1_mount "$c"); own=$(v1_own "$c")
      [ -n "$mnt" ] && [ -n "$own" ] || { echo "no cgroup v1 hierarchy for $c"; return 1; }
      rel=${own%/}/toolcell-ci-$$
      dir=$mnt$rel
      if [ ! -d "$dir" ]; then mkdir "$dir"; rootless_cg_dirs+=("$dir"); fi
      chown -R "$NOBODY:$NOBODY" "$dir"
      env+=("TOOLCELL_CGROUP_PARENT_${c^^}=$rel")
      deleg+=("$dir")
      echo "  $c: $dir"
    done
  else
    # pure v2 host: delegate <own>/toolcell-ci-$$ (needs <own> to pass the
    # controllers down, i.e. to hold no processes itself)
    own=$(sed -n 's/^0:://p' /proc/self/cgroup); mnt=/sys/fs/cgroup
    rel=${own%/}/toolcell-ci-$$; dir=$mnt$rel
    for c in memory pids cpu; do
      grep -qw "$c" "$mnt${own%/}/cgroup.subtree_control" 2>/dev/null ||
        echo "+$c" > "$mnt${own%/}/cgroup.subtree_control" ||
        { echo "cannot enable $c below $own (no-internal-process rule)"; return 1; }
    done
    mkdir "$dir"; rootless_cg_dirs+=("$dir")
    chown "$NOBODY:$NOBODY" "$dir" "$dir"/cgroup.procs "$dir"/cgroup.subtree_control "$dir"/cgroup.threads
    env+=("TOOLCELL_CGROUP_PARENT=$rel")
    echo "  v2: $dir"
  fi

  say "rootless: copying the source tree for uid $NOBODY and compiling test binaries"
  mkdir "$rl/src"
  tar -C "$root" --exclude=./.git -cf - . | tar -C "$rl/src" -xf -
  chown -R "$NOBODY:$NOBODY" "$rl/src"
  list=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' $PKGS)
  local -a built=()
  while read -r pkg pdir; do
    [ -n "$pkg" ] || continue
    name=${pkg//\//_}
    if go test -c -o "$rl/bin/$name.test" "$pkg"; then
      built+=("$pkg $pdir")
    else
      echo "FAIL	$pkg [build failed]"; fails=$((fails + 1))
    fi
  done <<< "$list"
  chmod -R a+rX "$rl/bin"

  say "rootless: running ${#built[@]} test binaries as uid $NOBODY (setpriv, no capabilities)"
  local vflag=()
  case " ${TOOLCELL_TEST_FLAGS:-} " in *" -v "*) vflag=(-test.v) ;; esac
  for pkgline in "${built[@]}"; do
    read -r pkg pdir <<< "$pkgline"
    name=${pkg//\//_}
    t=$SECONDS
    set +e
    # Like a delegated deployment: the test process lives in the cgroups
    # delegated to it, so "below my own cgroup" is where it may create.
    (for d in "${deleg[@]}"; do echo "$BASHPID" > "$d/cgroup.procs"; done &&
     { cd "$rl/src/${pdir#"$root"/}" 2>/dev/null || cd "$rl/src"; } &&
     setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups --inh-caps=-all --bounding-set=-all \
       env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin \
       HOME=/nonexistent TMPDIR="$rl/tmp" LANG=C.UTF-8 USER=nobody LOGNAME=nobody \
       TOOLCELL_CI=1 TOOLCELL_HOST_KIND=rootless-hybrid "${env[@]}" \
       "$rl/bin/$name.test" -test.count=1 -test.timeout=15m -test.paniconexit0 "${vflag[@]}") \
      > "$rl/out.txt" 2>&1 </dev/null
    rc=$?
    set -e
    if [ $rc -eq 0 ]; then
      [ ${#vflag[@]} -gt 0 ] && cat "$rl/out.txt"
      printf 'ok  \t%s\t%ss (uid %s)\n' "$pkg" "$((SECONDS - t))" "$NOBODY"
    else
      cat "$rl/out.txt"
      printf 'FAIL\t%s\t%ss (uid %s, exit %s)\n' "$pkg" "$((SECONDS - t))" "$NOBODY" "$rc"
      fails=$((fails + 1))
    fi
  done
  [ "$fails" -eq 0 ]
}

# --- vm --------------------------------------------------------------------------
stage_vm() {
  command -v qemu-system-x86_64 >/dev/null || { cannot "vm stage: qemu-system-x86_64 not installed"; return; }
  if [ "$(id -u)" = 0 ]; then
    say "vm: building/checking the VM assets"
    "$root/scripts/vm/build.sh"
  elif [ ! -r "${TOOLCELL_VM_DIR:-/var/cache/toolcell-vm}/current.env" ]; then
    cannot "vm stage: no cached VM assets and not root to build them (run scripts/vm/build.sh as root)"; return
  fi
  case $("$root/scripts/vm/vmexec" --which-accel) in
    kvm) echo "vm: using KVM (a probe guest booted with it)" ;;
    *) echo "vm: using TCG (no working KVM: slow but fine)" ;;
  esac
  local sc=$work/vm-selfcheck.txt rc
  say "vm: proving that a failing test in the VM fails go test (TOOLCELL_VMTEST_SELFCHECK=fail)"
  set +e
  TOOLCELL_HOST_KIND=vm-v2 TOOLCELL_VMTEST_SELFCHECK=fail \
    go test -count=1 -run '^TestSelfcheckFail$' -exec "$root/scripts/vm/vmexec" ./internal/vmtest > "$sc" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ] || ! grep -q 'deliberate failure' "$sc"; then
    cat "$sc"; echo "vm: the deliberate failure did NOT fail the run (go test exit $rc): exit status is lost"; return 1
  fi
  echo "vm: ok, the deliberate failure propagated (go test exit $rc)"
  say "vm: TOOLCELL_HOST_KIND=vm-v2 go test -p ${TOOLCELL_VM_PARALLEL:-1} ${TFLAGS[*]} -exec scripts/vm/vmexec $VM_PKGS"
  TOOLCELL_HOST_KIND=vm-v2 go test -p "${TOOLCELL_VM_PARALLEL:-1}" "${TFLAGS[@]}" \
    -exec "$root/scripts/vm/vmexec" $VM_PKGS
}

# --- run ------------------------------------------------------------------------------
declare -A result dur
failed=0
for s in "${stages[@]}"; do
  t=$SECONDS
  set +e
  ( set -e; trap - EXIT; "stage_$s" )
  rc=$?
  set -e
  dur[$s]=$((SECONDS - t))
  case $rc in
    0) result[$s]=PASS ;;
    3) result[$s]=SKIP ;;
    *) result[$s]="FAIL (exit $rc)"; failed=1 ;;
  esac
done

say "summary"
printf '  %-9s %-14s %5ss\n' deps PASS "$deps_time"
for s in "${stages[@]}"; do printf '  %-9s %-14s %5ss\n' "$s" "${result[$s]}" "${dur[$s]}"; done
printf '  %-9s %-14s %5ss\n' total "$([ $failed = 0 ] && echo PASS || echo FAIL)" "$SECONDS"
npass=0 nskip=0
for s in "${stages[@]}"; do
  case ${result[$s]} in PASS) npass=$((npass + 1)) ;; SKIP) nskip=$((nskip + 1)) ;; esac
done
echo "stages: $npass passed, $(( ${#stages[@]} - npass - nskip )) failed, $nskip skipped"
exit $failed

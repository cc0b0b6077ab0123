#!/usr/bin/env bash
# scripts/vm/build.sh: fetch a Debian kernel and build the initramfs for the
# throwaway cgroup-v2 test VM (layout: scripts/vm/init, usage: scripts/vm/vmexec). Idempotent and cached:
#
#   $TOOLCELL_VM_DIR (default /var/cache/toolcell-vm)
#     apt-<suite>/                  private apt state (system sources untouched)
#     kernels/<pkg>_<version>/      vmlinux, config, modules (9p, loop, overlay,
#                                   xfs, btrfs and their dependencies), initrd-<hash>.gz
#     current.env                   KERNEL=... INITRD=... KVER=... read by runvm.sh
#
# The kernel .deb is downloaded and unpacked, never installed. The cache key is
# the kernel package name + version; the initrd is keyed additionally by a hash
# of scripts/vm/init and this script, so editing them rebuilds only the initrd.
#
# env: TOOLCELL_VM_KERNEL_SUITE  bookworm-backports (default, Linux 6.12) or
#                                bookworm (Linux 6.1). If backports cannot be
#                                resolved the build falls back to bookworm.
#      TOOLCELL_VM_REFRESH=1     re-resolve the kernel version even if the
#                                package lists are fresh (<24h).
# Needs root (apt) on a Debian 12 host, plus busybox-static cpio xz-utils zstd.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VMDIR=${TOOLCELL_VM_DIR:-/var/cache/toolcell-vm}
SUITE=${TOOLCELL_VM_KERNEL_SUITE:-bookworm-backports}
export DEBIAN_FRONTEND=noninteractive
log() { echo "vm/build: $*" >&2; }
die() { echo "vm/build: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get download into $VMDIR)"
for t in busybox cpio xz zstd dpkg-deb apt-get flock depmod; do
  command -v "$t" >/dev/null || die "missing tool '$t' (run scripts/deps.sh)"
done
[ -x /bin/busybox ] && file_bb=/bin/busybox || die "no /bin/busybox (package busybox-static)"
mkdir -p "$VMDIR"
exec 9>"$VMDIR/.lock"
flock 9   # concurrent builds wait for each other

# --- resolve the kernel package for $SUITE -> kpkg, kver ------------------
apt_opts=()
resolve() {   # $1 = suite; sets kpkg kver apt_opts; returns 1 when not resolvable
  local suite=$1 st=$VMDIR/apt-$1 mirror
  apt_opts=()
  if [ "$suite" != bookworm ]; then
    mkdir -p "$st/lists/partial" "$st/cache/archives/partial"
    # reuse the Debian mirror this machine already uses (one-line or deb822 format)
    mirror=$(grep -rhoE '^deb +(\[[^]]*\] +)?https?://[^ ]+/debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
             grep -oE 'https?://[^ ]+' | head -1 || true)
    [ -n "$mirror" ] || mirror=$(grep -rhoE '^URIs: *https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null |
             sed 's/^URIs: *//' | head -1 || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} $suite main" > "$st/sources.list"
    apt_opts=(-o "Dir::Etc::sourcelist=$st/sources.list" -o Dir::Etc::sourceparts=-
              -o "Dir::State::Lists=$st/lists" -o "Dir::Cache=$st/cache")
    if [ -n "${TOOLCELL_VM_REFRESH:-}" ] || [ -z "$(find "$st/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
      log "apt-get update ($suite, private state in $st)"
      apt-get "${apt_opts[@]}" update -qq >&2 || return 1
    fi
  elif [ -z "$(apt-cache policy linux-image-amd64 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]; then
    log "apt-get update (system lists have no linux-image-amd64)"
    apt-get update -qq >&2 || return 1
  fi
  kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
         sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -1)
  [ -n "$kpkg" ] || return 1
  kver=$(apt-cache "${apt_opts[@]}" show "$kpkg" 2>/dev/null | sed -n 's/^Version: //p' | head -1)
  [ -n "$kver" ]
}
if ! resolve "$SUITE"; then
  if [ "$SUITE" != bookworm ]; then
    log "WARNING: cannot resolve a kernel from $SUITE, falling back to bookworm (Linux 6.1)"
    SUITE=bookworm
    resolve bookworm || die "cannot resolve linux-image-amd64 from bookworm either (apt sources/network?)"
  else
    die "cannot resolve linux-image-amd64 from bookworm (apt sources/network?)"
  fi
fi
kdir=$VMDIR/kernels/${kpkg}_${kver//[^A-Za-z0-9.+~-]/_}

# --- kernel: download + extract once per package version ----------------
# .complete holds the layout version: a kernel unpacked by an older build.sh
# (fewer modules) is unpacked again.
KLAYOUT=4
if [ ! -s "$kdir/vmlinux" ] || [ "$(cat "$kdir/.complete" 2>/dev/null)" != "$KLAYOUT" ]; then
  t0=$SECONDS
  rm -rf "$kdir"; mkdir -p "$kdir/x"
  log "downloading $kpkg $kver ($SUITE)"
  (cd "$kdir" && apt-get "${apt_opts[@]}" -o APT::Sandbox::User=root download -qq "$kpkg=$kver" >&2) ||
    die "apt-get download $kpkg=$kver failed"
  deb=$(ls "$kdir"/*.deb)
  # the kernel image, its config and its modules (only the ones below are kept)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$kdir/x" --wildcards \
    './boot/vmlinuz-*' './boot/config-*' './lib/modules/*' './usr/lib/modules/*' \
    2>/dev/null || true   # not every pattern exists in every kernel version
  cp "$kdir"/x/boot/config-* "$kdir/config" || die "no /boot/config-* in $deb"
  vmlinuz=$(ls "$kdir"/x/boot/vmlinuz-* | head -1)
  [ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $deb"
  # Decompressing a bzImage under TCG costs seconds per boot: extract the ELF
  # vmlinux once; qemu boots it through the PVH entry point (CONFIG_PVH=y).
  if grep -q '^CONFIG_KERNEL_XZ=y' "$kdir/config"; then
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
    [ -n "$off" ] && { tail -c +$((off + 1)) "$vmlinuz" | xz -dc --single-stream > "$kdir/vmlinux" 2>/dev/null || true; }
  elif grep -q '^CONFIG_KERNEL_ZSTD=y' "$kdir/config"; then
    off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$vmlinuz" | head -1 | cut -d: -f1)
    [ -n "$off" ] && { tail -c +$((off + 1)) "$vmlinuz" | zstd -qdc > "$kdir/vmlinux" 2>/dev/null || true; }
  fi
  if [ "$(head -c4 "$kdir/vmlinux" 2>/dev/null | od -An -c | tr -d ' ')" != '177ELF' ] ||
     ! grep -q '^CONFIG_PVH=y' "$kdir/config"; then
    log "no bootable ELF vmlinux extracted; booting the bzImage"
    cp "$vmlinuz" "$kdir/vmlinux"
  fi
  # Modules in load order, each after what it depends on (modules.dep),
  # decompressed (busybox insmod wants plain .ko): 9p over virtio for the
  # host's /usr, then loop, overlay, ext4, xfs and btrfs, the file systems
  # the idmapped-workdir tests mount, with the checksum algorithms they ask
  # the crypto API for (soft dependencies: modprobe would load them, insmod
  # does not). Whatever is missing is built in (=y).
  mkdir -p "$kdir/modules"
  : > "$kdir/modules/order"
  mroot=$(ls -d "$kdir"/x/lib/modules/* "$kdir"/x/usr/lib/modules/* 2>/dev/null | head -1) || true
  [ -n "$mroot" ] || die "no lib/modules in $deb"
  # The package leaves modules.dep to depmod at install time.
  if [ ! -s "$mroot/modules.dep" ]; then
    command -v depmod >/dev/null || die "depmod not found (package kmod)"
    depmod -b "${mroot%/lib/modules/*}" "${mroot##*/}" || die "depmod failed for $deb"
  fi
  declare -A loaded=()
  add_module() {   # add_module NAME: its dependencies first, then it
    local m=$1 rel dep f
    [ -n "${loaded[$m]:-}" ] && return
    loaded[$m]=1
    rel=$(grep -E "(^|/)${m}\.ko(\.xz|\.zst)?:" "$mroot/modules.dep" | head -1) || true
    [ -n "$rel" ] || return 0   # built in
    for dep in ${rel#*:}; do
      dep=${dep##*/}; dep=${dep%.zst}; dep=${dep%.xz}; add_module "${dep%.ko}"
    done
    f=$mroot/${rel%%:*}
    case $f in
      *.xz)  xz -dc "$f" > "$kdir/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" > "$kdir/modules/$m.ko" ;;
      *)     cp "$f" "$kdir/modules/$m.ko" ;;
    esac
    echo "$m" >> "$kdir/modules/order"
  }
  for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
           netfs fscache 9pnet 9pnet_virtio 9p loop overlay ext4 \
           crc32c_generic xxhash_generic blake2b_generic xfs btrfs; do
    add_module "$m"
  done
  grep -qE '^CONFIG_NET_9P_VIRTIO=[ym]' "$kdir/config" || die "$kpkg has no 9p virtio transport"
  grep -qE '^CONFIG_9P_FS=y' "$kdir/config" || grep -qx 9p "$kdir/modules/order" ||
    die "$kpkg: 9p filesystem module not found in the package"
  basename "$(ls -d "$kdir"/x/lib/modules/* "$kdir"/x/usr/lib/modules/* 2>/dev/null | head -1)" > "$kdir/release"
  rm -rf "$kdir/x" "$deb"
  echo "$KLAYOUT" > "$kdir/.complete"
  log "kernel $kpkg $kver ready in $((SECONDS - t0))s"
fi

# --- initramfs: busybox + init + 9p modules, keyed by the init's content ---
ihash=$(cat "$here/init" "$here/build.sh" | sha256sum | cut -c1-16)
initrd=$kdir/initrd-$ihash.gz
if [ ! -s "$initrd" ]; then
  st=$(mktemp -d "$VMDIR/initramfs.XXXXXX")
  trap 'rm -rf "$st"' EXIT
  chmod 755 "$st"
  # Merged /usr like the host: /usr comes from the host over 9p, so the
  # initramfs keeps its own busybox under /.vm and only symlinks the rest.
  mkdir -p "$st"/{.vm/bin,.vm/modules,usr,dev,proc,sys,tmp,run,mnt,root,etc,var/tmp,work}
  for d in bin lib lib64 sbin; do ln -s "usr/$d" "$st/$d"; done
  cp "$file_bb" "$st/.vm/bin/busybox"
  install -m755 "$here/init" "$st/init"
  cp "$kdir"/modules/* "$st/.vm/modules/"
  chmod 700 "$st/root"; chmod 1777 "$st/tmp" "$st/var/tmp"
  mknod -m 600 "$st/dev/console" c 5 1
  mknod -m 666 "$st/dev/null" c 1 3
  (cd "$st" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  rm -rf "$st"; trap - EXIT
  log "initramfs built: $initrd"
fi
# initrds of older init/build.sh versions are useless now
find "$kdir" -maxdepth 1 -name 'initrd-*.gz' ! -name "${initrd##*/}" -delete

# Landlock must be an active LSM (toolcell fails closed without it): boot
# with the kernel's own default list (CONFIG_LSM), landlock put first when
# the list lacks it (vmexec passes LSM as lsm=).
grep -q '^CONFIG_SECURITY_LANDLOCK=y' "$kdir/config" || die "$kpkg has no Landlock (CONFIG_SECURITY_LANDLOCK)"
lsm=$(sed -n 's/^CONFIG_LSM="\(.*\)"$/\1/p' "$kdir/config")
case ",$lsm," in *,landlock,*) ;; *) lsm=landlock${lsm:+,$lsm} ;; esac

cat > "$VMDIR/current.env.tmp" <<ENV
KERNEL=$kdir/vmlinux
INITRD=$initrd
KPKG=$kpkg
KVER=$kver
SUITE=$SUITE
LSM=$lsm
ENV
mv "$VMDIR/current.env.tmp" "$VMDIR/current.env"
log "using $kpkg $kver ($SUITE); assets in $kdir"

#!/usr/bin/env bash
# netprobe VM kernel matrix: runs the netprobe-tools integration tests inside QEMU (TCG)
# against Debian kernels, one VM per kernel, and prints a verdict per kernel.
#
#   sudo tests/vm/run.sh                      # the four default kernels (5.10, 6.1, 6.12, sid)
#   sudo KERNELS=sid:cloud-amd64 tests/vm/run.sh
#
# See tests/vm/README.md for what it does, the knobs and how to add a kernel.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_DIR=$ROOT/tests/vm
CACHE=$VM_DIR/.cache
TARGET=$ROOT/target/vm
TRIPLE=x86_64-unknown-linux-gnu
LOGS=$TARGET/logs
IMAGES=$TARGET/images

# [suite:]metapackage-suffix: linux-image-<suffix> from Debian <suite> (a private apt configuration
# in tests/vm/.cache/apt-<suite>/), or from the machine's own apt sources without a suite.
KERNELS=${KERNELS:-"bullseye:cloud-amd64 bookworm:cloud-amd64 bookworm:6.12-cloud-amd64 sid:cloud-amd64"}
VM_DEBIAN_MIRROR=${VM_DEBIAN_MIRROR:-}  # default: the Debian mirror of the machine's apt sources
VM_APT_MAX_AGE=${VM_APT_MAX_AGE:-86400} # seconds before a private suite's package lists are refreshed
VM_TIMEOUT=${VM_TIMEOUT:-1500}         # seconds per VM (qemu is killed after that)
VM_TEST_TIMEOUT=${VM_TEST_TIMEOUT:-540} # seconds per test executable inside the VM
VM_MEM=${VM_MEM:-2048}
VM_SMP=${VM_SMP:-2}
VM_PARALLEL=${VM_PARALLEL:-2}          # guests booted at once (each takes one host thread)
# KERNELS entries (grep -E) whose vCPUs TCG runs on one host thread: under multi-threaded TCG
# the sid and 6.12 kernels' text patching (static keys of tracepoints being attached) has hit
# stale int3s in a vCPU ("Oops: int3" in handle_softirqs, a jump into ttwu_do_activate's middle).
VM_TCG_SINGLE=${VM_TCG_SINGLE:-"."}
VM_APPEND=${VM_APPEND:-"console=ttyS0 panic=-1 quiet"}
VM_VERBOSE=${VM_VERBOSE:-0}             # 1: also stream the serial console to stdout
VM_SKIP_BUILD=${VM_SKIP_BUILD:-0}       # 1: reuse the executables of the last build
VM_TESTS=${VM_TESTS:-}                  # grep -E pattern: only these test executables (virtio_tools|tun_tools)
# Modules loaded by /init up front (the guest's modprobe loads the rest on demand).
VM_MODULES=${VM_MODULES:-"tun veth macvtap nf_tables openvswitch vhost_net kvm kvm_amd virtio_pci virtio_net"}
# Modules copied into the image (with their dependency closure), in addition to the
# kernel/ subtrees in MODULE_TREES. Names as modprobe knows them.
VM_EXTRA_MODULES=${VM_EXTRA_MODULES:-"tun veth tap macvtap 8021q sch_ingress sch_tbf bridge cls_bpf nfnetlink nf_tables openvswitch vhost_net kvm kvm_amd virtio_pci virtio_net"}
# The guest's NICs: two virtio-net-pci devices on one QEMU hub (what one sends, the other
# receives), with the MACs netprobe_lab::virtio::HUB_MACS looks for.
VM_NET=${VM_NET:-"-netdev hubport,id=np0,hubid=0 -device virtio-net-pci,netdev=np0,mac=52:54:00:4e:50:01
    -netdev hubport,id=np1,hubid=0 -device virtio-net-pci,netdev=np1,mac=52:54:00:4e:50:02"}
read -ra NET_ARGS <<<"$(tr '\n' ' ' <<<"$VM_NET")"
read -ra MODULES_UP_FRONT <<<"$VM_MODULES"
read -ra EXTRA_MODULES <<<"$VM_EXTRA_MODULES"
MODULE_TREES="net/netfilter net/ipv4/netfilter net/ipv6/netfilter net/openvswitch net/nsh net/psample drivers/vhost"
# Kernel options the image and the tests rely on being =y (checked in boot/config-*).
REQUIRED_BUILTIN="BLK_DEV_INITRD RD_GZIP DEVTMPFS SERIAL_8250_CONSOLE PROC_FS SYSFS TMPFS BPF_SYSCALL
    DEBUG_INFO_BTF BPF_EVENTS FTRACE NET_NS PACKET INET UNIX MODULES"
# module:CONFIG option of the modules the tests use. Either =y or =m will do: sid builds
# NETFILTER_NETLINK in, and lists no nfnetlink in modules.builtin (it is part of netfilter core).
MODULE_OPTS="tun:TUN veth:VETH tap:TAP macvtap:MACVTAP 8021q:VLAN_8021Q sch_ingress:NET_SCH_INGRESS sch_tbf:NET_SCH_TBF bridge:BRIDGE kvm:KVM kvm_amd:KVM_AMD cls_bpf:NET_CLS_BPF
    nfnetlink:NETFILTER_NETLINK nf_tables:NF_TABLES openvswitch:OPENVSWITCH vhost_net:VHOST_NET
    virtio_pci:VIRTIO_PCI virtio_net:VIRTIO_NET"
# Host programs the tests shell out to that busybox cannot replace (busybox ip has no netns),
# and Open vSwitch's user space (netprobe_lab::ovs_switch; unshare --time for ovs-vswitchd).
HOST_PROGRAMS="ip tc bridge ping nft bpftool unshare ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-dpctl"
# Files the guest needs besides the programs: OVS's database schema.
HOST_FILES="/usr/share/openvswitch/vswitch.ovsschema"
APT_PACKAGES="qemu-system-x86 busybox-static kmod cpio xz-utils gzip iproute2 iputils-ping nftables bpftool libelf-dev zlib1g-dev util-linux openvswitch-switch"

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

log() { echo "vm: [${SECONDS}s] $*" >&2; }
# ldd exits 1 on static executables, so capture its text first (pipefail).
is_static() {
    local out
    out=$(ldd "$1" 2>&1 || true)
    grep -qE 'not a dynamic executable|statically linked' <<<"$out"
}
die() {
    echo "vm: error: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (installs packages, creates device nodes in the image)"
mkdir -p "$CACHE/debs" "$CACHE/kernels" "$LOGS" "$IMAGES"

# ---------------------------------------------------------------------------------------------
# 1. Host packages
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_update() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        timeout 300 apt-get update -qq
        APT_UPDATED=1
    fi
}

need=()
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    apt_update
    log "installing ${need[*]}"
    # openvswitch-switch would start its daemons on the host: policy-rc.d forbids it.
    rcd_made=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        rcd_made=1
    fi
    rc=0
    timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
    [ "$rcd_made" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get install ${need[*]} failed (exit $rc)"
fi
BUSYBOX=$(command -v busybox) || die "busybox not found"
is_static "$BUSYBOX" ||
    die "$BUSYBOX is not static (install busybox-static)"

# ---------------------------------------------------------------------------------------------
# 2. Kernels: [suite:]metapackage -> versioned image package (+ its split parts) -> cached
#    .debs -> extracted tree
# ---------------------------------------------------------------------------------------------
# The machine's own release: "<HOST_SUITE>:x" is the same as plain "x" (its sources also carry
# <suite>-updates and -security, where bookworm's 6.12 lives).
# shellcheck source=/dev/null
HOST_SUITE=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
DEBIAN_MIRROR=$VM_DEBIAN_MIRROR

# The Debian mirror the machine's own sources use for HOST_SUITE (one-line .list and deb822
# .sources files), else deb.debian.org.
host_mirror() {
    local f m=
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        m=$(awk -v s="$HOST_SUITE" '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == s) { print $i; exit }
            }' "$f")
        [ -z "$m" ] || break
    done
    if [ -z "$m" ]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            m=$(awk -v s="$HOST_SUITE" '
                function flush() {
                    if (index(" " types " ", " deb ") && enabled != "no" && index(" " suites " ", " " s " ")) {
                        split(uris, u, " "); if (u[1] != "") { print u[1]; found = 1; exit }
                    }
                    types = uris = suites = enabled = ""
                }
                /^[ \t]*$/ { flush(); next }
                /^#/ { next }
                tolower($1) == "types:" { $1 = ""; types = $0 }
                tolower($1) == "uris:" { $1 = ""; uris = $0 }
                tolower($1) == "suites:" { $1 = ""; suites = $0 }
                tolower($1) == "enabled:" { enabled = tolower($2) }
                END { if (!found) flush() }' "$f")
            [ -z "$m" ] || break
        done
    fi
    if [ -z "$m" ]; then
        m=http://deb.debian.org/debian
        log "no Debian mirror for '${HOST_SUITE:-?}' in the machine's apt sources; using $m"
    fi
    echo "${m%/}"
}

# Other suites go through a private apt configuration in $CACHE/apt-<suite>/ (own source list,
# lists and cache); the machine's own sources are never touched.
suite_dir() { echo "$CACHE/apt-$1"; }
is_private() { [ -n "$1" ] && [ "$1" != "$HOST_SUITE" ]; }
# Runs an apt command ($2...) against suite $1 (empty or HOST_SUITE: the machine's sources).
# docker-style apt.conf.d files disable the binary cache; a private one keeps it (4x faster).
apt_in() {
    local s=$1
    shift
    if is_private "$s"; then
        APT_CONFIG="$(suite_dir "$s")/apt.conf" "$@" -o Dir::Cache::pkgcache=pkgcache.bin
    else
        "$@"
    fi
}
# apt-get update of one suite: the machine's (at most once) or a private one.
refresh() {
    local s=$1 d out
    if ! is_private "$s"; then
        apt_update
        return 0
    fi
    d=$(suite_dir "$s")
    log "apt-get update ($s, private lists in ${d#"$ROOT"/}/lists)"
    if out=$(apt_in "$s" timeout 300 apt-get update -qq 2>&1); then
        touch "$d/updated"
    elif [ -f "$d/updated" ]; then
        log "warning: apt-get update of $s failed, using its older lists: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
    else
        die "apt-get update of $s failed: $out"
    fi
    grep -v unsandboxed <<<"$out" >&2 || true
}
declare -A SUITE_READY
# Writes suite $1's private apt configuration and refreshes its lists when they are missing,
# older than VM_APT_MAX_AGE or for another mirror.
suite_setup() {
    local s=$1 d age conf
    is_private "$s" || return 0
    [ -z "${SUITE_READY[$s]:-}" ] || return 0
    [[ $s =~ ^[a-z0-9][a-z0-9.+-]*$ ]] || die "bad suite name '$s' in KERNELS"
    [ -n "$DEBIAN_MIRROR" ] || DEBIAN_MIRROR=$(host_mirror)
    d=$(suite_dir "$s")
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    conf=$(
        cat <<EOF
// Written by tests/vm/run.sh: Debian $s for the VM kernel matrix (APT_CONFIG=this file).
Dir::Etc::SourceList "$d/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$d/lists";
Dir::Cache "$d/cache";
// Only the Packages index (no AppStream metadata).
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
EOF
    )
    [ "$(cat "$d/apt.conf" 2>/dev/null)" = "$conf" ] || echo "$conf" >"$d/apt.conf"
    if [ "$(cat "$d/sources.list" 2>/dev/null)" != "deb $DEBIAN_MIRROR $s main" ]; then
        echo "deb $DEBIAN_MIRROR $s main" >"$d/sources.list"
        rm -f "$d/updated"
    fi
    age=$VM_APT_MAX_AGE
    [ -f "$d/updated" ] && age=$(($(date +%s) - $(stat -c %Y "$d/updated")))
    [ "$age" -lt "$VM_APT_MAX_AGE" ] || refresh "$s"
    SUITE_READY[$s]=1
}

meta_depends() { { apt_in "$1" apt-cache depends "linux-image-$2" 2>/dev/null || true; } | awk '/Depends: linux-image/ {print $2; exit}'; }
candidate() { { apt_in "$1" apt-cache show --no-all-versions "$2" 2>/dev/null || true; } | awk '/^Version:/ {print $2; exit}'; }
# The packages that carry an image package's files. Sid splits linux-image-<flavour> (docs only)
# into linux-binary-<flavour> (vmlinuz), linux-modules-<flavour> and linux-base-<flavour>
# (config, modules.builtin); older releases depend on no such package.
image_parts() {
    { apt_in "$1" apt-cache depends "$2" 2>/dev/null || true; } |
        awk -v f="${2#linux-image-}" '$1 ~ /Depends:$/ && $2 ~ /^linux-/ && $2 != "linux-image-" f &&
            substr($2, length($2) - length(f)) == "-" f {print $2}' | sort -u
}
# Downloads package $2 of suite $1 (cached in $CACHE/debs) and sets DEB to its path.
DEB=
fetch_deb() {
    local s=$1 p=$2 v try
    for try in 1 2; do
        v=$(candidate "$s" "$p")
        [ -n "$v" ] || die "no candidate version for $p${s:+ in $s}"
        DEB=$CACHE/debs/${p}_${v//:/%3a}_amd64.deb
        [ -f "$DEB" ] && return 0
        log "downloading $p $v${s:+ ($s)}"
        (cd "$CACHE/debs" && apt_in "$s" timeout 600 apt-get download "$p=$v" 2>&1 | grep -v 'unsandboxed' >&2) || true
        [ -f "$DEB" ] && return 0
        # Stale lists name a version the mirror no longer has: refresh once and retry.
        [ "$try" -eq 2 ] || refresh "$s"
    done
    die "apt-get download $p=$v did not produce $DEB"
}

# Fills, per KERNELS entry, KDIR (extracted package root), KVER (uname -r), KIMG (vmlinuz) and
# KBUILTIN (the MODULE_OPTS modules its config builds in).
declare -A KDIR KVER KIMG KBUILTIN
KLIST=()
for k in $KERNELS; do
    suite=
    suffix=$k
    if [[ $k == *:* ]]; then
        suite=${k%%:*}
        suffix=${k#*:}
    fi
    [ -n "$suffix" ] || die "empty metapackage suffix in KERNELS entry '$k'"
    suite_setup "$suite"
    pkg=$(meta_depends "$suite" "$suffix")
    if [ -z "$pkg" ]; then
        refresh "$suite"
        pkg=$(meta_depends "$suite" "$suffix")
    fi
    [ -n "$pkg" ] || die "cannot resolve linux-image-$suffix${suite:+ in $suite} to a kernel image package (apt-cache depends)"
    fetch_deb "$suite" "$pkg"
    debs=("$DEB")
    ver=$(candidate "$suite" "$pkg")
    mapfile -t parts < <(image_parts "$suite" "$pkg")
    for p in "${parts[@]}"; do
        fetch_deb "$suite" "$p"
        debs+=("$DEB")
    done
    dir=$CACHE/kernels/${pkg}_$ver
    stamp=$(printf '%s\n' "${debs[@]##*/}")
    if [ "$(cat "$dir/.extracted" 2>/dev/null)" != "$stamp" ]; then
        log "extracting $(printf '%s ' "${debs[@]##*/}")"
        rm -rf "$dir"
        mkdir -p "$dir"
        for d in "${debs[@]}"; do
            dpkg-deb -x "$d" "$dir"
        done
        echo "$stamp" >"$dir/.extracted"
    fi
    # boot/vmlinuz-<ver> up to trixie; sid's linux-binary-* has usr/lib/modules/<ver>/vmlinuz.
    vmlinuz=
    for f in "$dir"/boot/vmlinuz-* "$dir"/usr/lib/modules/*/vmlinuz "$dir"/lib/modules/*/vmlinuz; do
        if [ -f "$f" ]; then
            vmlinuz=$f
            break
        fi
    done
    [ -n "$vmlinuz" ] || die "no boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in $(printf '%s ' "${debs[@]##*/}")"
    case $vmlinuz in
    */boot/vmlinuz-*) kver=${vmlinuz##*/vmlinuz-} ;;
    *) kver=$(basename "$(dirname "$vmlinuz")") ;;
    esac
    # depmod -b looks in <base>/lib/modules; newer packages ship usr/lib/modules only.
    if [ ! -d "$dir/lib/modules/$kver" ] && [ -d "$dir/usr/lib/modules/$kver" ]; then
        mkdir -p "$dir/lib"
        ln -sfn ../usr/lib/modules "$dir/lib/modules"
    fi
    [ -d "$dir/lib/modules/$kver/kernel" ] || die "no modules for $kver in $(printf '%s ' "${debs[@]##*/}")"
    # The packages ship no modules.dep: compute it once for the closure below.
    [ -f "$dir/lib/modules/$kver/modules.dep" ] || depmod -b "$dir" "$kver"
    # The image needs these built in (a module cannot help before /init runs); the modules the
    # tests use may be =y or =m (add_modules checks VM_MODULES against the image itself).
    cfg=
    for f in "$dir/boot/config-$kver" "$dir/lib/modules/$kver/config"; do
        if [ -f "$f" ]; then
            cfg=$f
            break
        fi
    done
    if [ -n "$cfg" ]; then
        for opt in $REQUIRED_BUILTIN; do
            grep -q "^CONFIG_$opt=y" "$cfg" || log "warning: $kver: CONFIG_$opt is not built in ($(grep "CONFIG_${opt}[= ]" "$cfg" || echo unset))"
        done
        builtin=()
        for mo in $MODULE_OPTS; do
            opt=${mo#*:}
            if grep -q "^CONFIG_$opt=y" "$cfg"; then
                builtin+=("${mo%%:*}")
            elif ! grep -q "^CONFIG_$opt=m" "$cfg"; then
                log "warning: $kver: CONFIG_$opt (${mo%%:*}) is neither =y nor =m ($(grep "CONFIG_${opt}[= ]" "$cfg" || echo unset))"
            fi
        done
        KBUILTIN[$k]=${builtin[*]}
        [ "${#builtin[@]}" -eq 0 ] || log "$kver: built in, not modules: ${builtin[*]}"
    else
        log "$kver: no kernel config (boot/config-$kver, lib/modules/$kver/config) in the packages; skipping the config check"
    fi
    dup=
    for o in "${KLIST[@]}"; do
        [ "${KVER[$o]}" != "$kver" ] || dup=$o
    done
    if [ -n "$dup" ]; then
        log "kernel $k -> $kver again (as $dup): booted once"
        continue
    fi
    KDIR[$k]=$dir
    KVER[$k]=$kver
    KIMG[$k]=$vmlinuz
    KLIST+=("$k")
    log "kernel $k -> $pkg $ver ($kver)${parts[*]:+, split into ${parts[*]}}"
done

# ---------------------------------------------------------------------------------------------
# 3. Static build of the test executables, tool binaries and the example
# ---------------------------------------------------------------------------------------------
cargo_env=(env CARGO_TARGET_DIR="$TARGET" LIBBPF_SYS_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu
    RUSTFLAGS='-C target-feature=+crt-static')
cargo_args=(--release --target "$TRIPLE" --features netprobe-tools/static -p netprobe-tools
    --message-format=json-render-diagnostics)
if [ "$VM_SKIP_BUILD" != 1 ]; then
    log "building static test executables (target/vm)"
    (cd "$ROOT" && timeout 1800 "${cargo_env[@]}" cargo test "${cargo_args[@]}" --no-run) \
        >"$TARGET/build-tests.json" || die "cargo test --no-run failed"
    log "building static tool binaries and examples"
    (cd "$ROOT" && timeout 1800 "${cargo_env[@]}" cargo build "${cargo_args[@]}" --bins --examples) \
        >"$TARGET/build-bins.json" || die "cargo build --bins --examples failed"
fi
if [ ! -f "$TARGET/build-tests.json" ] || [ ! -f "$TARGET/build-bins.json" ]; then
    die "no build output; run without VM_SKIP_BUILD=1"
fi
# Artifacts from cargo's JSON messages: test harnesses have "profile":{...,"test":true}.
executables() { grep '"reason":"compiler-artifact"' "$1" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p'; }
mapfile -t TEST_EXES < <(grep '"profile":{[^}]*"test":true}' "$TARGET/build-tests.json" |
    executables /dev/stdin | sort -u)
mapfile -t BIN_EXES < <(grep -v '"profile":{[^}]*"test":true}' "$TARGET/build-bins.json" |
    executables /dev/stdin | sort -u)
if [ -n "$VM_TESTS" ]; then
    mapfile -t TEST_EXES < <(printf '%s\n' "${TEST_EXES[@]}" | grep -E "/($VM_TESTS)-[0-9a-f]+\$" || true)
    log "VM_TESTS=$VM_TESTS: ${#TEST_EXES[@]} test executable(s)"
fi
[ "${#TEST_EXES[@]}" -gt 0 ] || die "the build produced no test executable (VM_TESTS=${VM_TESTS:-})"
[ "${#BIN_EXES[@]}" -gt 0 ] || die "the build produced no tool binary"
CHECK_BIN=
for f in "${TEST_EXES[@]}" "${BIN_EXES[@]}"; do
    [ -x "$f" ] || die "missing executable $f"
    is_static "$f" || die "$f is dynamically linked: $(ldd "$f" 2>&1 | head -n 3 | tr '\n' ' ')"
    [ "${f##*/}" = netprobe_check ] && CHECK_BIN=$f
done
[ -n "$CHECK_BIN" ] || die "netprobe_check was not built"
# drop_tools first: it is the one that matters; the bins' own unit-test harnesses after it.
mapfile -t TEST_EXES < <(printf '%s\n' "${TEST_EXES[@]}" | awk -F/ '{ print ($NF ~ /^drop_tools-/ ? 0 : 1) "\t" $0 }' |
    sort -s -k1,1n | cut -f2-)
# Targets of the cpu tools' tests, built where the lab looks first (<test exe dir>/../targets,
# netprobe_lab::targets): the guest has no rustc.
TARGETS_DIR=$(realpath -ms "$(dirname "${TEST_EXES[0]}")/../targets")
mkdir -p "$TARGETS_DIR"
TARGET_EXES=()
for src in "$ROOT"/tests/targets/*.rs; do
    name=$(basename "$src" .rs)
    rustc --edition 2021 -O -g -C force-frame-pointers=yes -o "$TARGETS_DIR/$name" "$src" ||
        die "building test target $src failed"
    TARGET_EXES+=("$TARGETS_DIR/$name")
done
# netprobe_lab::targets::cpu_burn_v0: Rust's v0 symbol mangling.
rustc --edition 2021 -O -g -C force-frame-pointers=yes -C symbol-mangling-version=v0 \
    -o "$TARGETS_DIR/cpu_burn_v0" "$ROOT/tests/targets/cpu_burn.rs" || die "building cpu_burn_v0 failed"
TARGET_EXES+=("$TARGETS_DIR/cpu_burn_v0")
command -v go >/dev/null || die "no go: the Go test targets need golang-go (scripts/setup.sh installs it)"
for src in "$ROOT"/tests/targets/*.go; do
    name=$(basename "$src" .go)
    GOCACHE="$TARGETS_DIR/go-cache" GOPATH="$TARGETS_DIR/go-path" GO111MODULE=off \
        go build -o "$TARGETS_DIR/$name" "$src" || die "building test target $src failed"
    TARGET_EXES+=("$TARGETS_DIR/$name")
done
for src in "$ROOT"/tests/targets/*.c; do
    name=$(basename "$src" .c)
    cc -O2 -g -fno-omit-frame-pointer -pthread -o "$TARGETS_DIR/$name" "$src" ||
        die "building test target $src failed"
    TARGET_EXES+=("$TARGETS_DIR/$name")
done
log "test executables: $(printf '%s ' "${TEST_EXES[@]##*/}")"
log "binaries: $(printf '%s ' "${BIN_EXES[@]##*/}")"

# ---------------------------------------------------------------------------------------------
# 4. Guest userland (shared by all kernels) and per-kernel initramfs
# ---------------------------------------------------------------------------------------------
# Copies an absolute host path (dereferenced) to the same path under root $1.
put() {
    local root=$1 src=$2
    mkdir -p "$root$(dirname "$src")"
    cp -L --preserve=mode "$src" "$root$src"
}
# Copies a dynamically linked program with its ldd closure (incl. the loader).
put_dynamic() {
    local root=$1 prog=$2 lib
    put "$root" "$prog"
    while read -r lib; do
        [ -n "$lib" ] && put "$root" "$lib"
    done < <(ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

build_base() {
    local b=$1 p prog l
    rm -rf "$b"
    mkdir -p "$b"/usr/{bin,sbin,lib,lib64} "$b"/{etc,proc,sys,dev,run,tmp,root,mnt}
    chmod 1777 "$b/tmp"
    # Merged /usr like the host, so ldd paths (/lib/..., /lib64/...) land in the right place.
    ln -s usr/bin "$b/bin"
    ln -s usr/sbin "$b/sbin"
    ln -s usr/lib "$b/lib"
    ln -s usr/lib64 "$b/lib64"
    mkdir -p "$b/var"
    ln -s ../run "$b/var/run"
    mknod -m 600 "$b/dev/console" c 5 1
    mknod -m 666 "$b/dev/null" c 1 3

    for p in $HOST_PROGRAMS; do
        prog=$(command -v "$p") || die "host program $p not found"
        prog=$(readlink -f "$prog")
        put_dynamic "$b" "$prog"
        # Make it reachable under its usual name too.
        [ -e "$b/usr/sbin/$p" ] || ln -s "$prog" "$b/usr/sbin/$p"
    done
    for p in /etc/iproute2 /usr/share/iproute2 /usr/lib/iproute2; do
        [ -d "$p" ] && mkdir -p "$b$(dirname "$p")" && cp -aL "$p" "$b$p"
    done
    for p in $HOST_FILES; do
        [ -f "$p" ] || die "host file $p not found"
        put "$b" "$p"
    done
    for p in /etc/protocols /etc/services /etc/ld.so.conf; do
        [ -f "$p" ] && put "$b" "$p"
    done
    [ -d /etc/ld.so.conf.d ] && cp -aL /etc/ld.so.conf.d "$b/etc/"
    ldconfig -r "$b" 2>/dev/null || true
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$b/etc/passwd"
    printf 'root:x:0:\n' >"$b/etc/group"

    # Static busybox and its applet links, where no host program took the name.
    cp "$BUSYBOX" "$b/usr/bin/busybox"
    while read -r l; do
        [ -n "$l" ] || continue
        [ -e "$b/$l" ] || [ -L "$b/$l" ] || ln -s /usr/bin/busybox "$b/$l"
    done < <("$BUSYBOX" --list-full)
    [ -e "$b/sbin/modprobe" ] || die "busybox has no modprobe applet"

    # The executables at their host paths: the tests use env!("CARGO_BIN_EXE_*") and
    # <test exe dir>/../examples/drops_by_reason.
    for p in "${TEST_EXES[@]}" "${BIN_EXES[@]}"; do
        put "$b" "$p"
    done
    # The test targets are the host's dynamically linked programs: with their libraries.
    for p in "${TARGET_EXES[@]}"; do
        put_dynamic "$b" "$p"
    done

    mkdir -p "$b/etc/netprobe-vm"
    printf '%s\n' "${TEST_EXES[@]}" >"$b/etc/netprobe-vm/tests"
    printf '%s\n' "$CHECK_BIN" >"$b/etc/netprobe-vm/check"
    printf '%s\n' "${MODULES_UP_FRONT[@]}" >"$b/etc/netprobe-vm/modules"
    printf '%s\n' "$VM_TEST_TIMEOUT" >"$b/etc/netprobe-vm/test_timeout"
    install -m 755 "$VM_DIR/init" "$b/init"
}

# Copies the module closure of kernel $1 (KERNELS entry) into root $2 and runs depmod there.
# Also writes the image's list of modules for /init to load, without the built-in ones.
add_modules() {
    local k=$1 r=$2 dir=${KDIR[$1]} kver=${KVER[$1]} src dst names=() t f rel line up=()
    local built_in=" ${KBUILTIN[$1]:-} "
    src=$dir/lib/modules/$kver
    dst=$r/lib/modules/$kver
    mkdir -p "$dst"
    for t in $MODULE_TREES; do
        [ -d "$src/kernel/$t" ] || continue
        while read -r f; do
            f=${f##*/}
            names+=("${f%%.ko*}")
        done < <(find "$src/kernel/$t" -name '*.ko*')
    done
    for t in "${EXTRA_MODULES[@]}"; do
        [[ $built_in == *" $t "* ]] || names+=("$t")
    done
    # modprobe resolves hard and soft dependencies; "builtin x" lines need nothing copied.
    while read -r line; do
        f=$(awk '$1 == "insmod" {print $2}' <<<"$line")
        [ -n "$f" ] || continue
        rel=${f#"$src"/}
        mkdir -p "$dst/$(dirname "$rel")"
        case $f in
        *.ko.xz) [ -f "$dst/${rel%.xz}" ] || xz -dc "$f" >"$dst/${rel%.xz}" ;;
        *.ko.zst) [ -f "$dst/${rel%.zst}" ] || zstd -qdc "$f" >"$dst/${rel%.zst}" ;;
        *.ko.gz) [ -f "$dst/${rel%.gz}" ] || gzip -dc "$f" >"$dst/${rel%.gz}" ;;
        *) [ -f "$dst/$rel" ] || cp "$f" "$dst/$rel" ;;
        esac
    done < <(modprobe -d "$dir" -S "$kver" --show-depends -a "${names[@]}" 2>"$TARGET/modprobe-$kver.err")
    for f in modules.builtin modules.builtin.modinfo modules.order; do
        [ -f "$src/$f" ] && cp "$src/$f" "$dst/"
    done
    [ ! -s "$TARGET/modprobe-$kver.err" ] ||
        log "$kver: modprobe --show-depends: $(head -n 3 "$TARGET/modprobe-$kver.err" | tr '\n' ' ')"
    depmod -b "$r" "$kver"
    for t in "${MODULES_UP_FRONT[@]}"; do
        if [[ $built_in == *" $t "* ]]; then
            continue
        fi
        modprobe -d "$r" -S "$kver" --show-depends "$t" >/dev/null 2>&1 ||
            die "module $t is neither in the image nor built into $kver"
        up+=("$t")
    done
    printf '%s\n' "${up[@]}" >"$r/etc/netprobe-vm/modules"
}

BASE=$IMAGES/base
log "assembling guest userland"
build_base "$BASE"

# ---------------------------------------------------------------------------------------------
# 5. Boot each kernel and 6. judge it from its serial log
# ---------------------------------------------------------------------------------------------
summarize() { # kernel-suffix log qemu-exit seconds
    awk -v name="$1" -v qrc="$3" -v secs="$4" -f "$VM_DIR/verdict.awk" "$2"
}

# Boots image dir $1 with its serial console in $2 and ${3:-} added to the kernel command
# line; sets qrc to qemu's exit code.
boot_guest() {
    local append="$VM_APPEND${3:+ $3}" accel=tcg
    [ -z "$VM_TCG_SINGLE" ] || ! grep -qE "$VM_TCG_SINGLE" <<<"$k" || accel=tcg,thread=single
    qrc=0
    if [ "$VM_VERBOSE" = 1 ]; then
        timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel "$accel" -cpu max -smp "$VM_SMP" -m "$VM_MEM" \
            -kernel "$1/vmlinuz" -initrd "$1/initrd.cpio.gz" -nographic -no-reboot "${NET_ARGS[@]}" \
            -append "$append" </dev/null 2>&1 | tee "$2" || qrc=${PIPESTATUS[0]}
    else
        timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel "$accel" -cpu max -smp "$VM_SMP" -m "$VM_MEM" \
            -kernel "$1/vmlinuz" -initrd "$1/initrd.cpio.gz" -nographic -no-reboot "${NET_ARGS[@]}" \
            -append "$append" </dev/null >"$2" 2>&1 || qrc=$?
    fi
}

# The console without carriage returns and terminal escapes.
clean_console() {
    tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'
}

# The head of the kernel's oops report in console $1: what failed, and where.
oops_head() {
    local text
    text=$(clean_console "$1")
    grep -E -m 1 -A 7 <<<"$text" \
        '(BUG:|Oops|general protection|invalid opcode|kernel BUG|Unable to handle|unable to handle|stack-protector|double fault)' |
        sed 's/^/    | /' || true
}

# A guest kernel that panicked in the middle of the tests (seen under TCG: a jump into the
# middle of an instruction in ttwu_do_activate during an interrupt) gets one more boot that
# resumes at the test executable it was running; the console $2 is then the first boot's
# finished executables followed by the second boot's. Sets panic_note.
resume_after_panic() { # image-dir console
    local first=$2.panicked name text
    panic_note=
    text=$(clean_console "$2")
    grep -q '=== VM-KERNEL ' <<<"$text" || return 0
    grep -q '^=== VM-DONE ===' <<<"$text" && return 0
    grep -q 'Kernel panic - not syncing' <<<"$text" || return 0
    name=$(sed -n 's/^=== VM-TEST \([^ ]*\) ===$/\1/p' <<<"$text" | tail -n 1)
    [ -n "$name" ] || return 0
    mv "$2" "$first"
    log "$kver: kernel panic during $name (console: ${first#"$ROOT"/}): booting once more from $name"
    boot_guest "$1" "$2.rerun" "netprobe.from=$name"
    {
        clean_console "$first" | sed "/^=== VM-TEST $name ===\$/,\$d"
        clean_console "$2.rerun" | sed -n '/^=== VM-TEST /,$p'
    } >"$2"
    panic_note="  kernel panic during ${name%-*}; its executable and the rest ran again in a second boot (first console: ${first#"$ROOT"/}):"$'\n'$(oops_head "$first")
}

# Boots kernel $1 and judges it: writes the verdict (with its #TOTALS line) to $2.
run_kernel() { # KLIST-entry verdict-file
    local k=$1 kver img root logf start secs out
    kver=${KVER[$k]}
    img=$IMAGES/$kver
    root=$img/root
    log "image for $kver"
    rm -rf "$img"
    mkdir -p "$img"
    cp -a "$BASE" "$root"
    add_modules "$k" "$root"
    (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$img/initrd.cpio.gz"
    rm -rf "$root"
    cp "${KIMG[$k]}" "$img/vmlinuz"
    logf=$LOGS/$kver.log
    log "booting $kver ($(du -h "$img/initrd.cpio.gz" | cut -f1) initramfs, log: ${logf#"$ROOT"/})"
    rm -f "$logf.first-boot" "$logf.panicked" "$logf.rerun"
    start=$(date +%s)
    boot_guest "$img" "$logf"
    # Not anchored: the console's reset escapes come first on the marker's line.
    if ! grep -q '=== VM-KERNEL ' <(tr -d '\r' <"$logf"); then
        # The kernel died before /init ran (seen once: a TCG panic in an async device probe of
        # the sid kernel at 1.5 s). No test ran, so one more boot judges nothing twice.
        cp "$logf" "$logf.first-boot"
        log "$kver did not reach /init (qemu exit $qrc, console: ${logf#"$ROOT"/}.first-boot): booting once more"
        boot_guest "$img" "$logf"
    fi
    resume_after_panic "$img" "$logf"
    secs=$(($(date +%s) - start))
    out=$(summarize "$k" "$logf" "$qrc" "$secs")
    if ! grep -q '^=== VM-DONE ===' <(tr -d '\r' <"$logf"); then
        # Boot or init trouble: the end of the console says why.
        out+=$'\n'"  last lines of the console:"$'\n'$(tr -d '\r' <"$logf" | tail -n 15 | sed 's/^/    | /')
    fi
    [ -z "$panic_note" ] || out+=$'\n'"$panic_note"
    printf '%s\n' "$out" >"$2"
    log "$kver done in ${secs}s (qemu exit $qrc)"
}

# VM_PARALLEL guests at a time, each on one host thread (single-threaded TCG); verdicts are
# printed in KLIST order.
VERDICTS=$TARGET/verdicts
rm -rf "$VERDICTS"
mkdir -p "$VERDICTS"
# The newest kernels first: their guests take longest, and the older ones fill in after them.
running=0
i=${#KLIST[@]}
for ((j = i - 1; j >= 0; j--)); do
    if [ "$running" -ge "$VM_PARALLEL" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_kernel "${KLIST[$j]}" "$VERDICTS/$j" &
    running=$((running + 1))
done
wait || true

SUMMARY=()
TOTAL_PASS=0
TOTAL_FAIL=0
ANY_BAD=0
for ((j = 0; j < i; j++)); do
    if [ ! -s "$VERDICTS/$j" ]; then
        SUMMARY+=("VM ${KVER[${KLIST[$j]}]}: no verdict (the runner of this kernel failed)")
        ANY_BAD=1
        continue
    fi
    out=$(<"$VERDICTS/$j")
    read -r _ p f bad < <(grep '^#TOTALS ' <<<"$out")
    TOTAL_PASS=$((TOTAL_PASS + p))
    TOTAL_FAIL=$((TOTAL_FAIL + f))
    [ "$bad" -eq 0 ] || ANY_BAD=1
    SUMMARY+=("$(grep -v '^#TOTALS ' <<<"$out")")
done

echo
echo "==== netprobe VM matrix ===="
for s in "${SUMMARY[@]}"; do
    echo "$s"
done
echo "logs: ${LOGS#"$ROOT"/}/"
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$ANY_BAD" -eq 0 ] && [ "$TOTAL_FAIL" -eq 0 ]

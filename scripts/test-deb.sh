#!/usr/bin/env bash
# Tests the Debian package: lintian on the .deb, then an installation into a fresh Debian 12
# (debootstrap --variant=minbase bookworm) chroot: dpkg -i (postinst without systemd running),
# tern --version, tern check-config, tern serve answering coturn's turnutils_stunclient on
# 127.0.0.1:3478 (the chroot shares the host's network), SIGTERM, dpkg --purge.
#
#   scripts/test-deb.sh [dist/tern_<version>_<arch>.deb]   (without it: scripts/package-deb.sh first)
#
# Needs root (debootstrap, chroot, mount) and UDP/TCP port 3478 and TCP 8478 free on the host.
# The debootstrapped root is cached as a tarball, keyed on its --include list:
#   TERN_DEBOOTSTRAP_CACHE  (default /var/cache/tern-test/bookworm-minbase.tar.gz)
#   TERN_DEB_MIRROR         (default http://deb.debian.org/debian)
#   TERN_DEB_LINTIAN=0      skips the lintian phase
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS
say() { echo "test-deb.sh: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
phase_start=$SECONDS
phase_name=""
phase() {
    if [ -n "$phase_name" ]; then say "phase '$phase_name': $((SECONDS - phase_start))s"; fi
    phase_name=$1
    phase_start=$SECONDS
    say "--- $phase_name"
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap, chroot, mount)"

apt_install() {
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null ||
        { DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; }
}
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v turnutils_stunclient >/dev/null || missing+=(coturn)
command -v ss >/dev/null || missing+=(iproute2)
if [ "${TERN_DEB_LINTIAN:-1}" != 0 ]; then command -v lintian >/dev/null || missing+=(lintian); fi
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
    # Only coturn's turnutils_stunclient is wanted; a turnserver the package started holds 3478.
    if [[ " ${missing[*]} " == *" coturn "* ]]; then pkill -x turnserver || true; fi
fi

# tern serve binds UDP/TCP 3478 and TCP 8478 (admin) on the host's network: checked now, to fail
# before the slow phases, and again just before it starts.
ports_free() {
    local busy
    busy=$(ss -Hlun 'sport = :3478'; ss -Hltn '( sport = :3478 or sport = :8478 )')
    [ -z "$busy" ] || fail "something already listens on port 3478 or 8478 on this host (coturn's turnserver?):
$busy"
}
ports_free

# --- The package ---------------------------------------------------------------------------------
phase "package"
if [ $# -ge 1 ]; then
    deb=$(readlink -f "$1")
else
    deb=$(scripts/package-deb.sh | tail -n 1)
fi
[ -f "$deb" ] || fail "no such .deb: $deb"
version=$(dpkg-deb -f "$deb" Version)
depends=$(dpkg-deb -f "$deb" Depends)
say "$deb: version $version; Depends: $depends"

# --- lintian -------------------------------------------------------------------------------------
if [ "${TERN_DEB_LINTIAN:-1}" != 0 ]; then
    phase "lintian"
    # Errors and warnings fail; info tags are printed (and so are overridden ones, with --show-overrides).
    lintian --fail-on error,warning --display-info --show-overrides "$deb" || fail "lintian reported errors or warnings"
fi

# --- The Debian 12 root (cached) -------------------------------------------------------------------
phase "debootstrap root"
cache=${TERN_DEBOOTSTRAP_CACHE:-/var/cache/tern-test/bookworm-minbase.tar.gz}
mirror=${TERN_DEB_MIRROR:-http://deb.debian.org/debian}
# The runtime dependencies (first alternative of each, without versions), and init-system-helpers
# for deb-systemd-helper (essential, so in minbase anyway): dpkg -i works offline with them.
includes=$( { tr ',' '\n' <<<"$depends" | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g'; echo init-system-helpers; } |
    grep -v '^$' | LC_ALL=C sort -u | paste -sd, -)
key="bookworm minbase $mirror include=$includes"
if [ -f "$cache" ] && [ "$(cat "$cache.key" 2>/dev/null)" = "$key" ]; then
    say "cached root: $cache ($key)"
else
    say "debootstrapping bookworm into the cache ($key); the first run takes a few minutes"
    mkdir -p "$(dirname "$cache")"
    bootstrap=$(mktemp -d /tmp/tern-debootstrap.XXXXXX)
    cleanup_bootstrap() {
        # debootstrap mounts /proc and /sys inside; never delete through a mount.
        for m in $(awk -v r="$bootstrap" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
            umount "$m" 2>/dev/null || umount -l "$m" || true
        done
        rm -rf --one-file-system "$bootstrap"
    }
    trap cleanup_bootstrap EXIT
    debootstrap --variant=minbase --include="$includes" bookworm "$bootstrap" "$mirror" >/tmp/tern-debootstrap.log 2>&1 ||
        { tail -n 30 /tmp/tern-debootstrap.log >&2; fail "debootstrap failed (log: /tmp/tern-debootstrap.log)"; }
    rm -f "$bootstrap"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$bootstrap" -czf "$cache.tmp" . || fail "could not write $cache"
    mv -f "$cache.tmp" "$cache"
    echo "$key" >"$cache.key"
    cleanup_bootstrap
    trap - EXIT
fi

# --- A fresh root for this run ---------------------------------------------------------------------
phase "extract root"
root=$(mktemp -d /tmp/tern-deb-test.XXXXXX)
tern_pid=""
cleanup() {
    set +e
    if [ -n "$tern_pid" ] && kill -0 "$tern_pid" 2>/dev/null; then kill -KILL "$tern_pid"; fi
    # Any process still running inside the chroot.
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then kill -KILL "${p#/proc/}" 2>/dev/null; fi
    done
    for m in $(awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
    if awk -v r="$root" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        say "warning: mounts remain under $root; not deleting it"
    else
        rm -rf --one-file-system "$root"
    fi
    say "finished in $((SECONDS - start))s"
}
trap cleanup EXIT
# Device nodes are not extracted (a container may not allow mknod): the few a package needs are
# bind-mounted from the host below.
tar --numeric-owner -C "$root" --exclude='./dev/*' -xzf "$cache" || fail "could not extract $cache"
mount -t proc proc "$root/proc"
mkdir -p "$root/dev"
for node in null zero random urandom full tty; do
    [ -e "/dev/$node" ] || continue
    rm -f "$root/dev/$node"
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
ln -sf /proc/self/fd "$root/dev/fd"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
cp "$deb" "$root/tmp/tern.deb"
grep -q 'VERSION_CODENAME=bookworm' "$root/etc/os-release" || fail "the root is not Debian 12"
in_root sh -c '! command -v swift' >/dev/null || fail "the root has Swift installed"

# --- dpkg -i ---------------------------------------------------------------------------------------
phase "dpkg -i"
[ ! -d "$root/run/systemd/system" ] || fail "the root has /run/systemd/system: postinst would act as if systemd ran"
in_root dpkg -i /tmp/tern.deb || fail "dpkg -i failed"
[ "$(in_root dpkg-query -W -f '${Status}' tern)" = "install ok installed" ] || fail "tern is not installed and configured"
in_root getent group tern >/dev/null || fail "postinst did not create the tern group"
check_mode() {  # path owner:group mode
    local got
    got=$(in_root stat -c '%U:%G %a' "$1") || fail "$1 is missing"
    [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
    say "$1: $got"
}
check_mode /etc/tern/config.json root:tern 640
check_mode /etc/tern/turn-secret root:tern 640
grep -Eqx '[0-9a-f]{64}' "$root/etc/tern/turn-secret" && [ "$(wc -l <"$root/etc/tern/turn-secret")" -eq 1 ] ||
    fail "/etc/tern/turn-secret is not 64 hex digits and a newline"
in_root dpkg-statoverride --list /etc/tern/config.json | grep -q '^root tern 0*640 /etc/tern/config.json$' ||
    fail "no dpkg-statoverride root tern 640 for /etc/tern/config.json"
[ -L "$root/etc/systemd/system/multi-user.target.wants/tern.service" ] ||
    fail "deb-systemd-helper did not enable tern.service"
[ ! -e "$root/etc/systemd/system/sockets.target.wants/tern.socket" ] || fail "tern.socket was enabled; it should not be"
for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ]; then fail "a process runs in the root after dpkg -i (postinst started something): $(tr '\0' ' ' <"$p/cmdline")"; fi
done
for f in /usr/bin/tern /usr/lib/systemd/system/tern.service /usr/lib/systemd/system/tern.socket \
    /usr/lib/sysusers.d/tern.conf /usr/lib/sysctl.d/99-tern.conf /usr/share/doc/tern/copyright \
    /usr/share/doc/tern/README.md.gz /usr/share/doc/tern/admin-api.openapi.json /usr/share/man/man1/tern.1.gz; do
    [ -f "$root$f" ] || fail "$f is not installed"
done
grep -q '^ExecStart=/usr/bin/tern serve --config /etc/tern/config.json$' "$root/usr/lib/systemd/system/tern.service" ||
    fail "tern.service does not run /usr/bin/tern"

# --- tern --version, check-config --------------------------------------------------------------------
phase "tern --version, check-config"
got=$(in_root tern --version) || fail "tern --version failed in the root (a missing library?): $got"
[ "$got" = "$version" ] || fail "tern --version printed '$got', expected '$version'"
say "tern --version: $got"
in_root tern check-config /etc/tern/config.json || fail "tern check-config /etc/tern/config.json failed"
# The config's secret is the generated file: a credential minted from the config (which reads the
# file) equals one minted from the file's content (the same second: the username holds the expiry).
same=0
for _ in 1 2 3; do
    from_config=$(in_root tern credentials --config /etc/tern/config.json --user debtest --ttl 1h | sed -n 's/^password: //p')
    from_file=$(in_root tern credentials --secret "$(cat "$root/etc/tern/turn-secret")" --user debtest --ttl 1h | sed -n 's/^password: //p')
    if [ -n "$from_config" ] && [ "$from_config" = "$from_file" ]; then same=1; break; fi
done
[ "$same" = 1 ] || fail "tern credentials --config does not use /etc/tern/turn-secret ('$from_config' vs '$from_file')"
say "tern credentials --config uses /etc/tern/turn-secret"

# --- tern serve and a STUN Binding -----------------------------------------------------------------
phase "tern serve + turnutils_stunclient"
ports_free
log=$root/tmp/tern-serve.log
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    /usr/bin/tern serve --config /etc/tern/config.json >"$log" 2>&1 &
tern_pid=$!
up=0
for _ in $(seq 1 100); do   # at most 100 x 0.1 s
    kill -0 "$tern_pid" 2>/dev/null || { cat "$log" >&2; fail "tern serve exited during startup"; }
    if [ -n "$(ss -Hlun 'sport = :3478')" ] && [ -n "$(ss -Hltn 'sport = :3478')" ]; then up=1; break; fi
    sleep 0.1
done
[ "$up" = 1 ] || { cat "$log" >&2; fail "tern serve did not bind UDP and TCP 3478 within 10 s"; }
say "tern serve is up (pid $tern_pid) after $((SECONDS - phase_start))s"
stun=$(timeout 15 turnutils_stunclient 127.0.0.1 2>&1) || true
echo "$stun" | grep -E 'reflexive addr' >&2 || true
grep -Eq 'UDP reflexive addr: 127\.0\.0\.1:[0-9]+' <<<"$stun" ||
    { echo "$stun" >&2; cat "$log" >&2; fail "turnutils_stunclient 127.0.0.1 got no mapped address"; }
kill -TERM "$tern_pid"
stopped=0
for _ in $(seq 1 200); do   # at most 200 x 0.1 s (drain.timeoutSeconds is 30, but nothing is allocated)
    kill -0 "$tern_pid" 2>/dev/null || { stopped=1; break; }
    sleep 0.1
done
[ "$stopped" = 1 ] || { cat "$log" >&2; fail "tern serve did not exit within 20 s of SIGTERM"; }
status=0
wait "$tern_pid" || status=$?
tern_pid=""
[ "$status" = 0 ] || { cat "$log" >&2; fail "tern serve exited with status $status after SIGTERM"; }
say "tern serve exited cleanly after SIGTERM"

# --- dpkg --purge ----------------------------------------------------------------------------------
phase "dpkg --purge"
in_root dpkg --purge tern || fail "dpkg --purge tern failed"
[ ! -e "$root/usr/bin/tern" ] || fail "/usr/bin/tern is still there after purge"
[ ! -e "$root/etc/tern" ] || fail "/etc/tern is still there after purge"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/tern.service" ] || fail "the tern.service enablement symlink survived purge"
! ls "$root"/var/lib/systemd/deb-systemd-helper-enabled/*tern* >/dev/null 2>&1 || fail "deb-systemd-helper state for tern survived purge"
! in_root dpkg-statoverride --list /etc/tern/config.json >/dev/null || fail "the dpkg-statoverride for config.json survived purge"
left=$(in_root dpkg-query -W -f '${Status}' tern 2>/dev/null || true)
case "$left" in *" installed" | *config-files*) fail "dpkg still lists tern after purge: $left" ;; esac
phase "done"
say "PASS: $deb"

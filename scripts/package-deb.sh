#!/usr/bin/env bash
# Builds dist/tern_<version>_<arch>.deb with dpkg-deb (no debhelper): a release build of tern with
# the Swift runtime, Foundation and Dispatch linked statically (a Debian 12 without Swift runs it),
# the systemd units from deploy/, and the packaging files in deploy/debian/. See deploy/README.md,
# "The Debian package".
#
#   scripts/package-deb.sh            build (incremental after the first run) and package
#   TERN_DEB_SKIP_BUILD=1 scripts/package-deb.sh
#                                     package the binary already in .build-release (no swift build)
#
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
start=$SECONDS
say() { echo "package-deb.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps strip readelf gzip ldd; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils)"
done
if ! command -v swift >/dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

scratch=.build-release
binary=$scratch/release/tern

# --- Build -------------------------------------------------------------------------------------
phase=$SECONDS
if [ "${TERN_DEB_SKIP_BUILD:-0}" != 1 ]; then
    command -v swift >/dev/null || die "swift not found (install Swift 6.3 or add it to PATH)"
    # Sources edited while the build runs make SwiftPM stop ("was modified during the build") or
    # compile a torn mix of old and new files: if the sources changed, the next, incremental,
    # attempt picks the edit up. A failure on unchanged sources fails at once.
    fingerprint() { find Sources Package.swift -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | md5sum; }
    log=$(mktemp)
    for attempt in 1 2 3; do
        before=$(fingerprint)
        if swift build -c release --product tern --static-swift-stdlib --scratch-path "$scratch" 2>&1 | tee "$log" >&2; then
            break
        fi
        if [ "$attempt" -lt 3 ] && { grep -q "was modified during the build" "$log" || [ "$(fingerprint)" != "$before" ]; }; then
            say "the sources changed during the build; building again (attempt $((attempt + 1)) of 3)"
            continue
        fi
        rm -f "$log"
        die "swift build failed"
    done
    rm -f "$log"
fi
[ -x "$binary" ] || die "$binary is missing (run without TERN_DEB_SKIP_BUILD)"
say "build: $((SECONDS - phase))s"

# --- Version, architecture, linkage -----------------------------------------------------------
phase=$SECONDS
version=$(sed -n 's/^public let ternVersion = "\([^"]*\)".*/\1/p' Sources/TernCore/Snapshot/ServerSnapshot.swift)
[ -n "$version" ] || die "ternVersion not found in Sources/TernCore/Snapshot/ServerSnapshot.swift"
binary_version=$("$binary" --version 2>/dev/null | tr -d '\r') || die "$binary --version failed"
[ "$binary_version" = "$version" ] ||
    die "$binary prints version '$binary_version' but the sources say '$version' (a stale binary? build again)"
arch=$(dpkg --print-architecture)

# The Swift runtime, Foundation and Dispatch must be inside the binary: a fresh Debian has no
# Swift to load them from.
ldd_out=$(ldd "$binary")
if grep -E 'libswift|libFoundation|libdispatch|libBlocksRuntime|lib_FoundationICU|not found' <<<"$ldd_out" >&2; then
    die "$binary links the Swift libraries above dynamically (or misses a library); it must be built with --static-swift-stdlib"
fi

# --- Staging tree ---------------------------------------------------------------------------------
umask 022
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
debian=deploy/debian
doc=$stage/usr/share/doc/tern

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
    "$stage/usr/lib/sysctl.d" "$stage/etc/tern" "$doc" "$stage/usr/share/man/man1"

# The binary, stripped as dh_strip does.
install -m 0755 "$binary" "$stage/usr/bin/tern"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$stage/usr/bin/tern"

# The units from deploy/, with the packaged paths (the hardening is not forked).
sed -e 's|/usr/local/bin/tern|/usr/bin/tern|g' \
    -e 's|^Documentation=.*|Documentation=man:tern(1) file:///usr/share/doc/tern/README.md.gz|' \
    -e 's|^# Tern STUN/TURN server. Install: .*|# Tern STUN/TURN server, from the tern Debian package (/usr/share/doc/tern/README.md.gz).|' \
    deploy/tern.service >"$stage/usr/lib/systemd/system/tern.service"
grep -q '^ExecStart=/usr/bin/tern ' "$stage/usr/lib/systemd/system/tern.service" || die "tern.service: ExecStart was not rewritten"
grep -q '/usr/local' "$stage/usr/lib/systemd/system/tern.service" && die "tern.service still names /usr/local"
sed -e 's|/usr/local/bin/tern|/usr/bin/tern|g' deploy/tern.socket >"$stage/usr/lib/systemd/system/tern.socket"
chmod 0644 "$stage"/usr/lib/systemd/system/*

install -m 0644 "$debian/tern-sysusers.conf" "$stage/usr/lib/sysusers.d/tern.conf"
sed -e 's|^# Socket buffers for a busy relay (copy to /etc/sysctl.d/ and run `sysctl --system`).|# Socket buffers for a busy relay, from the tern package. Override: /etc/sysctl.d/99-tern.conf.|' \
    deploy/99-tern-sysctl.conf >"$stage/usr/lib/sysctl.d/99-tern.conf"
chmod 0644 "$stage/usr/lib/sysctl.d/99-tern.conf"

# The conffile. It names the secret by path and holds none; postinst makes the secret and sets
# root:tern 0640 on this file (the group does not exist before installation).
install -m 0644 "$debian/config.json" "$stage/etc/tern/config.json"

# Documentation.
gzip -9nc README.md >"$doc/README.md.gz"
install -m 0644 docs/admin-api.openapi.json "$doc/admin-api.openapi.json"
install -m 0644 "$debian/copyright" "$doc/copyright"
# The drop-in for io.offload "tc" (CAP_BPF, CAP_NET_ADMIN): an example the operator copies, never active by default.
install -d "$doc/examples"
install -m 0644 deploy/tern-offload.conf "$doc/examples/tern-offload.conf"
gzip -9nc "$debian/tern.1" >"$stage/usr/share/man/man1/tern.1.gz"

# The changelog (a native package: changelog.gz). A version without an entry gets one generated.
changelog=$(mktemp)
top_version=$(sed -n '1s/^tern (\([^)]*\)).*/\1/p' "$debian/changelog")
if [ "$top_version" != "$version" ]; then
    say "warning: $debian/changelog has no entry for $version (top: $top_version); generating one"
    maintainer=$(sed -n 's/^Maintainer: //p' "$debian/control.in")
    {
        printf 'tern (%s) unstable; urgency=medium\n\n  * Tern %s, packaged from the repository.\n\n' "$version" "$version"
        printf ' -- %s  %s\n\n' "$maintainer" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
        cat "$debian/changelog"
    } >"$changelog"
else
    cp "$debian/changelog" "$changelog"
fi
gzip -9nc "$changelog" >"$doc/changelog.gz"
rm -f "$changelog"

# NOTICE files of the Apache-2.0 packages linked into the binary (Apache-2.0 section 4(d)): the
# packages whose modules are in the link of the tern product.
linked_modules=$(sed -n 's|.*/release/\([^/]*\)\.build/.*|\1|p' "$scratch/release/tern.product/Objects.LinkFileList" 2>/dev/null | sort -u)
notice=$(mktemp)
{
    echo "Notices of the third-party Swift packages linked into /usr/bin/tern"
    echo "(their licenses are in /usr/share/doc/tern/copyright)."
} >"$notice"
linked_packages=()
for checkout in "$scratch"/checkouts/*/; do
    name=$(basename "$checkout")
    for module in $linked_modules; do
        if [ -d "$checkout/Sources/$module" ]; then
            linked_packages+=("$name")
            if [ -f "$checkout/NOTICE.txt" ]; then
                printf '\n==== %s ====\n\n' "$name" >>"$notice"
                cat "$checkout/NOTICE.txt" >>"$notice"
            fi
            grep -q "swift-packages/$name/" "$debian/copyright" ||
                say "warning: $name is linked into tern but not listed in $debian/copyright"
            break
        fi
    done
done
((${#linked_packages[@]})) || say "warning: found no linked Swift packages ($scratch/release/tern.product/Objects.LinkFileList); NOTICE.gz lists none"
gzip -9nc "$notice" >"$doc/NOTICE.gz"
rm -f "$notice"

if [ -f "$debian/lintian-overrides" ]; then
    install -d "$stage/usr/share/lintian/overrides"
    install -m 0644 "$debian/lintian-overrides" "$stage/usr/share/lintian/overrides/tern"
fi

# --- Control files -------------------------------------------------------------------------------
# Depends: the packages of the shared libraries the binary links, with versions from their symbols
# files (dpkg-shlibdeps wants a debian/control, so it runs in a scratch directory).
shlibs_dir=$(mktemp -d)
mkdir "$shlibs_dir/debian"
printf 'Source: tern\n\nPackage: tern\nArchitecture: any\n' >"$shlibs_dir/debian/control"
depends=$(cd "$shlibs_dir" && dpkg-shlibdeps -O -e"$stage/usr/bin/tern" 2> >(grep -v 'binaries to analyze should already be installed' >&2) |
    sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlibs_dir"
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies"
# Cross-check with readelf, ldd and dpkg -S: every library the binary itself needs (its NEEDED
# entries; ldd also lists their dependencies) comes from a package in Depends.
for soname in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
    case "$soname" in ld-linux*) continue ;; esac
    lib=$(awk -v s="$soname" '$1 == s && $2 == "=>" { print $3 }' <<<"$ldd_out")
    [ -n "$lib" ] || die "ldd does not resolve $soname"
    real=$(readlink -f "$lib")
    pkg=$({ dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null || true; } | head -n 1 | cut -d: -f1)
    [ -n "$pkg" ] || die "no package owns $lib"
    tr ',|' '\n\n' <<<"$depends" | sed -e 's/(.*)//' -e 's/[[:space:]]//g' | grep -Fqx "$pkg" ||
        die "$lib comes from $pkg, which is not in Depends: $depends"
done

installed_size=$(du -k -s --apparent-size "$stage" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@DEPENDS@|$depends|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
    "$debian/control.in" >"$stage/DEBIAN/control"
echo /etc/tern/config.json >"$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$debian/$script" "$stage/DEBIAN/$script"
done
# md5sums of everything but the conffile (as dh_md5sums does).
(cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\n' | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

# --- Build the .deb ------------------------------------------------------------------------------
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p dist
deb=dist/tern_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
say "package: $((SECONDS - phase))s (total $((SECONDS - start))s)"
say "Depends: $depends"
echo "$repo/$deb"

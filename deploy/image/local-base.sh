#!/bin/sh
# Assemble a local stand-in for the official python:3.11-slim-bookworm image,
# for machines that reach Debian's package mirror but no container registry.
#
#   deploy/image/local-base.sh WORKDIR IMAGE [PYTHON]
#
# WORKDIR  scratch folder (the root file system is built in WORKDIR/rootfs)
# IMAGE    the tag to import it as, e.g. localhost/podwall-python:3.11-slim-bookworm
# PYTHON   a CPython 3.11 built with --enable-shared, installed under its own
#          prefix (PREFIX/bin/python3.11, PREFIX/lib/libpython3.11.so.1.0,
#          PREFIX/lib/python3.11); default: the interpreter running `python3.11`
#
# The result has the layout of the official image: Debian 12 (debootstrap
# minbase) with the runtime libraries CPython's extension modules link, and
# CPython in /usr/local (bin/python3.11 with python3/python links,
# lib/libpython3.11.so.1.0, lib/python3.11 without tests, tkinter, idlelib and
# site-packages).  A release build uses the official image instead
# (`--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm`, the Dockerfile's default).
#
# Needs root, debootstrap, binutils (strip) and podman.  Writes only under WORKDIR and into
# podman's image store.
set -eu
work=${1:?WORKDIR}
image=${2:?IMAGE}
python=${3:-$(command -v python3.11)}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
prefix=$("$python" -c 'import sys; print(sys.base_prefix)')
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
test -f "$prefix/lib/libpython$version.so.1.0" || {
	echo "local-base.sh: $python is not a shared-library build (no $prefix/lib/libpython$version.so.1.0)" >&2
	exit 1
}
# what the official slim image keeps (its Dockerfile: ca-certificates netbase
# tzdata plus the libraries the built modules link)
packages=ca-certificates,netbase,tzdata,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libtinfo6,libuuid1,zlib1g,libexpat1,libnsl2,libtirpc3,libgdbm6,libdb5.3
root="$work/rootfs"
rm -rf "$root"
mkdir -p "$work"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -20 "$work/debootstrap.log" >&2
	exit 1
}
local="$root/usr/local"
mkdir -p "$local/bin" "$local/lib"
cp -p "$prefix/bin/python$version" "$local/bin/python$version"
cp -p "$prefix/lib/libpython$version.so.1.0" "$local/lib/"
ln -sf "libpython$version.so.1.0" "$local/lib/libpython$version.so"
cp -p "$prefix/lib/libpython3.so" "$local/lib/" 2>/dev/null || true
tar -C "$prefix/lib" \
	--exclude="python$version/site-packages/*" --exclude="python$version/test" \
	--exclude="python$version/idlelib" --exclude="python$version/tkinter" \
	--exclude="python$version/turtledemo" --exclude="python$version/lib-dynload/_tkinter*" \
	--exclude="__pycache__" -cf - "python$version" | tar -C "$local/lib" -xf -
for name in python3 python; do ln -sf "python$version" "$local/bin/$name"; done
# stripped like the official image's build (LDFLAGS=-Wl,--strip-all): no debug info
strip --strip-unneeded "$local/bin/python$version" "$local/lib/libpython$version.so.1.0" \
	"$local/lib/python$version/lib-dynload"/*.so
chroot "$root" /sbin/ldconfig
chroot "$root" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, readline, venv'
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*
tar -C "$root" -c . | podman import --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$image" >/dev/null
echo "$image"

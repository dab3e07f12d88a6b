#!/usr/bin/env bash
# Makes a root filesystem tarball from Debian's busybox-static, with a web page in /www.
set -euo pipefail
out=${1:?usage: make-busybox-rootfs.sh OUT.tar}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,www,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$root/bin/"
for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
cat > "$root/www/index.html" <<'HTML'
<!doctype html><title>Dash</title><h1>Hello from Dash</h1><p>Served by busybox httpd in a Dash replica.</p>
HTML
tar -C "$root" -cf "$out" .

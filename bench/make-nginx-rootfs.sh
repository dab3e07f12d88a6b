#!/usr/bin/env bash
# bench/make-nginx-rootfs.sh OUT.tar FILE_BYTES: a root filesystem tarball that runs Debian's
# nginx (nginx-light) as a replica would: the binary, the shared libraries ldd names, a config
# with one worker, access_log off, HTTP/1.1 keep-alive, serving /www/file.bin (FILE_BYTES
# random bytes) on port 80 in the foreground. For bench/proxy.sh: nginx as a replica behind
# Dash's route, and the backend haproxy and nginx (as proxies) reach the same way.
set -euo pipefail
out=${1:?usage: make-nginx-rootfs.sh OUT.tar FILE_BYTES}
bytes=${2:?usage: make-nginx-rootfs.sh OUT.tar FILE_BYTES}
nginx=$(command -v nginx) || { echo "nginx is missing (apt-get install nginx-light)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{usr/sbin,etc/nginx,www,tmp,var/log/nginx,var/lib/nginx,run,proc,sys,dev}
cp "$nginx" "$root/usr/sbin/nginx"
# The libraries and the loader, at the paths the binary asks for.
for lib in $(ldd "$nginx" | awk '/=>/ {print $3} /^\t\// {print $1}'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
echo 'nogroup:x:65534:' >>"$root/etc/group"
echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >>"$root/etc/passwd"
head -c "$bytes" /dev/urandom >"$root/www/file.bin"
cat >"$root/etc/nginx/nginx.conf" <<'EOF'
daemon off;
master_process off;
worker_processes 1;
user root;
error_log stderr warn;
pid /run/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path /tmp/body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  default_type application/octet-stream;
  server {
    listen 80 default_server reuseport;
    root /www;
    location = /status { stub_status; }
  }
}
EOF
tar -C "$root" -cf "$out" .

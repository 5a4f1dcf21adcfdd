#!/usr/bin/env bash
# Checks the deployment files with the tools that will read them:
# `systemd-analyze verify` for the units and `nginx -t` for the proxy config.
# Installs systemd and nginx-light (apt) if missing. Run by deploy/test.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
apt_install systemd nginx-light openssl

work=$(mktemp -d /tmp/rcron-check-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The units name binaries and users of a real host: stand them in.
mkdir -p "$work/units"
for unit in "$here"/systemd/*.service; do
  sed -e "s#/usr/local/bin/rcron-#$work/bin/rcron-#" -e "s#/usr/bin/etcd#$work/bin/etcd#" \
    -e "s#^User=.*#User=root#" -e "s#^Group=.*#Group=root#" "$unit" >"$work/units/$(basename "$unit")"
done
mkdir -p "$work/bin"
for b in rcron-master rcron-worker etcd; do printf '#!/bin/sh\n' >"$work/bin/$b"; chmod +x "$work/bin/$b"; done
log "systemd-analyze verify deploy/systemd/*.service"
out=$(systemd-analyze verify "$work"/units/*.service 2>&1 || true)
# Lines about the host's own units (not ours) are not our concern.
ours=$(printf '%s\n' "$out" | grep -E 'rcron-|etcd\.service' || true)
if [ -n "$ours" ]; then
  printf '%s\n' "$ours" >&2
  die "systemd-analyze found problems in the units"
fi

log "nginx -t deploy/nginx/rcron.conf"
# The config names the certificate of a real host: stand in a self-signed one.
mkdir -p "$work/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=cron.example.com \
  -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" >/dev/null 2>&1
sed -e "s#/etc/rcron/tls/#$work/tls/#" "$here/nginx/rcron.conf" >"$work/rcron.conf"
cat >"$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    include $work/rcron.conf;
}
CONF
nginx -t -c "$work/nginx.conf" -p "$work"
log "deployment files OK"

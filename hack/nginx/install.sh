#!/usr/bin/env bash
# Installs Debian's nginx, the oracle of `tests/nginx.rs`, when no `nginx` is on PATH, and makes
# sure the package's own service is not left running (its postinst would start nginx on port 80):
# a policy-rc.d that refuses every service start is in place during the install, and any nginx
# the package started anyway is stopped. Quick and idempotent once nginx is installed. Needs root
# (or sudo) to install. Prints the nginx binary's path on stdout; logs go to stderr.
set -euo pipefail

find_nginx() {
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

nginx="$(find_nginx)"
if [[ -n "$nginx" ]]; then
  echo "$nginx"
  exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install.sh: need root or sudo to install nginx" >&2; exit 1; }
  sudo=(sudo)
fi

# invoke-rc.d asks /usr/sbin/policy-rc.d first; 101 means "action not allowed". Keep an existing
# one aside and put it back afterwards.
policy=/usr/sbin/policy-rc.d
saved=""
if [[ -e "$policy" ]]; then
  saved="$(mktemp)"
  "${sudo[@]}" cp -p "$policy" "$saved"
fi
restore() {
  if [[ -n "$saved" ]]; then
    "${sudo[@]}" cp -p "$saved" "$policy"
    rm -f "$saved"
  else
    "${sudo[@]}" rm -f "$policy"
  fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
"${sudo[@]}" chmod 0755 "$policy"

echo "installing nginx (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends nginx >&2

# Belt and braces: whatever started (systemd ignores policy-rc.d on some setups) is stopped.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  "${sudo[@]}" systemctl disable --now nginx >&2 2>/dev/null || true
fi
pidfile=/run/nginx.pid
if [[ -s "$pidfile" ]]; then
  pid="$(cat "$pidfile")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == nginx ]]; then
    echo "stopping the nginx the package started (pid $pid)" >&2
    "${sudo[@]}" kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -e "/proc/$pid" ]] || break
      sleep 0.1
    done
    [[ -e "/proc/$pid" ]] && "${sudo[@]}" kill -KILL "$pid" 2>/dev/null || true
  fi
fi

nginx="$(find_nginx)"
if [[ -z "$nginx" ]]; then
  echo "install.sh: nginx was installed but is not found on PATH or at /usr/sbin/nginx" >&2
  exit 1
fi
echo "$nginx"

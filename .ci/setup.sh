#!/usr/bin/env bash
# CI machine setup, idempotent: the system packages the tests need that pip cannot install, installed only when
# missing, with one `apt-get update` when anything is.
# - Debian's chromium (and a font, so screenshots have text): the browser tests/http/test_page.py drives
#   (Playwright never downloads a browser here).
# - Debian's nginx: the HTTP/2 load balancer (grpc_pass) of `make cluster` and tests/cluster/. Only installed: the
#   Debian service is never started (policy-rc.d); the cluster runs its own nginx with its own config on 127.0.0.1.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo ".ci/setup.sh: ${missing[*]} missing and we are not root: the browser and cluster tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

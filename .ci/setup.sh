#!/usr/bin/env bash
# CI machine setup, idempotent: the system packages the tests need that pip cannot install.
# Debian's chromium is the browser tests/http/test_page.py drives (Playwright never downloads a browser here).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo ".ci/setup.sh: /usr/bin/chromium is missing and we are not root: the browser test will skip" >&2
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
# Debian's nginx is the HTTP/2 load balancer (grpc_pass) of `make cluster` and tests/cluster/. Only installed: the
# Debian service is never started (policy-rc.d), the cluster runs its own nginx with its own config on 127.0.0.1.
if [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo ".ci/setup.sh: /usr/sbin/nginx is missing and we are not root: tests/cluster/ will skip" >&2
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q
    apt-get install -y -q --no-install-recommends nginx-light
fi

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

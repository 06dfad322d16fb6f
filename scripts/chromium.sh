#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the web console's browser tests
# (crates/vexil/tests/console): installs Debian's `chromium` and `chromium-driver` when either
# is missing (as root), checks that both start, and prints the variables the tests read:
#
#   eval "$(bash scripts/chromium.sh)"    # exports VEXIL_TEST_CHROMEDRIVER and VEXIL_TEST_CHROMIUM
set -euo pipefail

chromium=/usr/bin/chromium
chromedriver=/usr/bin/chromedriver

if [[ ! -x "$chromium" || ! -x "$chromedriver" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "chromium.sh: install the Debian packages chromium and chromium-driver (or run this as root)" >&2
        exit 1
    fi
    echo "chromium.sh: installing the Debian packages chromium and chromium-driver" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
fi

# A package that installed but cannot run (a missing library) fails here, not in every test.
"$chromium" --headless --no-sandbox --disable-gpu --version >&2
"$chromedriver" --version >&2
echo "export VEXIL_TEST_CHROMEDRIVER=$chromedriver VEXIL_TEST_CHROMIUM=$chromium"

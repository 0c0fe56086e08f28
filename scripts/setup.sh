#!/usr/bin/env bash
# Installs what a bare Debian machine lacks to build, test and run LogSentry,
# and starts a local RabbitMQ broker if none answers on 127.0.0.1:5672.
# Idempotent: every step checks first. Run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_UPDATED=0
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    echo "setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

# C/C++ toolchain for DuckDB's bundled build, pkg-config, curl for rustup.
apt_install build-essential pkg-config ca-certificates curl

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: installing the Rust toolchain (rustup)"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

# Headless browser tests: Debian's chromium (no browser download) driven by
# playwright-core from the npm registry.
apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
if [ ! -d tests/browser/node_modules/playwright-core ] && [ -f tests/browser/package.json ]; then
    echo "setup: installing playwright-core for the browser test"
    (cd tests/browser && npm install --no-audit --no-fund --silent)
fi

# RabbitMQ for the streaming commands and their tests.
broker_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! broker_up; then
    apt_install rabbitmq-server
    echo "setup: starting rabbitmq-server"
    $SUDO rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
        broker_up && break
        sleep 1
    done
    broker_up || { echo "setup: RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }
fi
echo "setup: ok (cargo $(cargo --version | cut -d' ' -f2), RabbitMQ on 127.0.0.1:5672)"

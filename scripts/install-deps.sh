#!/usr/bin/env bash
# Installs what building and testing Parley needs, when it is missing:
# Debian packages (ncursesw headers, pkg-config, tmux; PostgreSQL, whose tests and the
# cluster demo start private servers of their own; nginx, for the cluster demo) and the
# Python packages of the interop server (python-socketio, aiohttp). Safe to run again.
set -euo pipefail

apt_packages=(libncurses-dev libsqlite3-dev pkg-config tmux postgresql nginx)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

python="${PARLEY_PYTHON:-python3}"
if ! "$python" -c 'import socketio, aiohttp' >/dev/null 2>&1; then
    echo "installing Python packages: python-socketio aiohttp"
    "$python" -m pip install --quiet --disable-pip-version-check "python-socketio>=5.8,<6" "aiohttp>=3.9,<4"
fi

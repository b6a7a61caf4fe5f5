#!/usr/bin/env bash
# Usage: scripts/azurite.sh install | start DIR | stop DIR
# Azurite (Microsoft's Azure Storage emulator) as the Azure Blob Storage of the tests, on loopback
# only. `install` puts the pinned npm package azurite into .cache/ once and prints the path of its
# azurite-blob. `start DIR` keeps everything under DIR (the blobs, the port it chose, its log) and
# writes DIR/env, the variables the real-Azure tests read: the account's blob endpoint
# (path-style, http://127.0.0.1:PORT/devstoreaccount1) and Azurite's well-known development
# account and key, which it checks every request's Shared Key signature against.
# Azurite's telemetry is off (--disableTelemetry): it would send usage data to Microsoft.
# `stop DIR` sends SIGTERM, then SIGKILL after 15 s.
# Pinned to 3.35.0, the last release that supports Node.js 20 (3.36 and later want 21 or 22).
# Needs node and npm (Debian: apt-get install nodejs npm), python3 and, once, access to npm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=3.35.0
prefix=$root/.cache/azurite-$version
bin=$prefix/node_modules/.bin/azurite-blob
# Azurite's published development account: https://learn.microsoft.com/azure/storage/common/storage-use-azurite
account=devstoreaccount1
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

die() { echo "azurite: $*" >&2; exit 1; }

install() {
    if [ -x "$bin" ] && [ -f "$prefix/node_modules/azurite/package.json" ] &&
        grep -q "\"version\": \"$version\"" "$prefix/node_modules/azurite/package.json"; then
        echo "$bin"
        return
    fi
    command -v npm >/dev/null || die "npm is not installed (Debian: apt-get install nodejs npm)"
    local partial=$prefix.partial.$$
    rm -rf "$partial"
    mkdir -p "$partial"
    echo "azurite: installing azurite@$version into $prefix" >&2
    npm install --prefix "$partial" --no-audit --no-fund --silent "azurite@$version" >&2 ||
        { rm -rf "$partial"; die "npm could not install azurite@$version"; }
    rm -rf "$prefix"
    mv "$partial" "$prefix"
    [ -x "$bin" ] || die "$bin is missing after npm install"
    echo "$bin"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1
    install >/dev/null
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/port" ] || free_port >"$dir/port"
    local port
    port=$(cat "$dir/port")
    "$bin" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir/data" \
        --skipApiVersionCheck --silent --disableTelemetry \
        </dev/null >>"$dir/azurite.log" 2>&1 &
    echo $! >"$dir/pid"
    # Ready when the port answers any HTTP status (a 400 for a bare request is fine).
    local tries=0
    until python3 -c "
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen('http://127.0.0.1:$port/$account?comp=list', timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)" 2>/dev/null; do
        tries=$((tries + 1))
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null || [ "$tries" -ge 300 ]; then
            tail -n 30 "$dir/azurite.log" >&2 || true
            stop "$dir"
            die "Azurite did not get ready on 127.0.0.1:$port (log: $dir/azurite.log)"
        fi
        sleep 0.1
    done
    {
        echo "export VOYC_TEST_AZURITE_ENDPOINT=http://127.0.0.1:$port/$account"
        echo "export VOYC_TEST_AZURITE_ACCOUNT=$account"
        echo "export VOYC_TEST_AZURITE_KEY='$key'"
        echo "export VOYC_TEST_AZURITE_VERSION=$version"
    } >"$dir/env"
    echo "azurite: $version serving blobs on http://127.0.0.1:$port/$account (pid $(cat "$dir/pid"), folder $dir)" >&2
}

stop() {
    local dir=$1
    [ -f "$dir/pid" ] || return 0
    local pid
    pid=$(cat "$dir/pid")
    if kill -TERM "$pid" 2>/dev/null; then
        local waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 150 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "azurite: still running 15 s after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
install) install ;;
start) [ $# -eq 2 ] || die "usage: scripts/azurite.sh start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: scripts/azurite.sh stop DIR"; stop "$2" ;;
*) die "usage: scripts/azurite.sh install | start DIR | stop DIR" ;;
esac

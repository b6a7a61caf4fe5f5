#!/usr/bin/env bash
# Usage: scripts/bench-objects.sh [COUNT SIZE_KIB]      (default: 1000 64)
# `upload` of COUNT recordings of SIZE_KIB KiB each, read from local disk and then the same
# bytes read from SeaweedFS (s3:// in the manifest), both uploaded through a sandbox whose
# presigned uploads go to SeaweedFS too: files/s, MB/s and peak RSS (GNU time's "Maximum
# resident set size") of each run, one table. Uses the SeaweedFS that SEAWEED_DIR names
# (a folder of scripts/seaweedfs.sh start), else starts one of its own on free ports and stops
# it at the end. Builds the release binary (CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
size_kib=${2:-64}
[ -x /usr/bin/time ] || { echo "bench-objects: GNU time is needed (apt-get install time)" >&2; exit 2; }

cargo build --release --quiet -p voyc-import --bin voyc-import
bin=${CARGO_TARGET_DIR:-target}/release/voyc-import

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-bench-objects.XXXXXX")
own=
sandbox_pid=
cleanup() {
    [ -z "$sandbox_pid" ] || kill "$sandbox_pid" 2>/dev/null || true
    [ -z "$own" ] || scripts/seaweedfs.sh stop "$own"
    rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${SEAWEED_DIR:-}" ]; then
    own=$work/seaweedfs
    scripts/seaweedfs.sh start "$own" >&2
    SEAWEED_DIR=$own
fi
# shellcheck disable=SC1091
. "$SEAWEED_DIR/env"

tag=$(date +%s)
src=voyc-bench-src-$tag
# The recordings, on disk and (through the filer: no code of ours) in the source bucket.
python3 - "$work" "$count" "$size_kib" "$VOYC_TEST_S3_FILER" "$src" <<'EOF'
import concurrent.futures, http.client, os, random, struct, sys, urllib.parse
work, count, size_kib, filer, bucket = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
os.makedirs(f"{work}/calls", exist_ok=True)
size = size_kib * 1024
names = []
for i in range(count):
    name = f"calls/{i:06}.wav"
    body = b"RIFF" + struct.pack("<I", size - 8) + b"WAVEfmt " + random.Random(i).randbytes(size - 16)
    with open(f"{work}/{name}", "wb") as f:
        f.write(body)
    names.append(name)
host = urllib.parse.urlsplit(filer).netloc
def put(name):
    with open(f"{work}/{name}", "rb") as f:
        body = f.read()
    boundary = "voycbench"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name.split('/')[-1]}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(host)
    conn.request("POST", f"/buckets/{bucket}/{name}", form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = conn.getresponse()
    answer.read()
    assert answer.status < 300, answer.status
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, names))
header = "file,channel_id,call_date,call_time,agent\n"
for manifest, prefix in (("local.csv", ""), ("remote.csv", f"s3://{bucket}/")):
    with open(f"{work}/{manifest}", "w") as f:
        f.write(header)
        for i, name in enumerate(names):
            f.write(f"{prefix}{name},1,2024-03-01,09:{i % 60:02}:00,Agent {i % 50}\n")
EOF

run() { # NAME MANIFEST: one upload through a fresh sandbox; prints a table row
    local name=$1 manifest=$2 dest=voyc-bench-dest-$tag-$1
    "$bin" sandbox --listen 127.0.0.1:0 --s3-endpoint "$VOYC_TEST_S3_ENDPOINT" --s3-bucket "$dest" \
        >"$work/$name.sandbox" 2>"$work/$name.sandbox.err" &
    sandbox_pid=$!
    local tries=0
    until [ -s "$work/$name.sandbox" ] && head -1 "$work/$name.sandbox" | grep -q '^http'; do
        tries=$((tries + 1)); [ "$tries" -lt 300 ] || { cat "$work/$name.sandbox.err" >&2; exit 1; }
        sleep 0.1
    done
    local url
    url=$(head -1 "$work/$name.sandbox")
    local start end
    start=$(date +%s.%N)
    (cd "$work" && VOYC_TOKEN=sandbox-token /usr/bin/time -f "%M" -o "$name.rss" \
        "$bin" upload "$manifest" --org 1 --base-url "$url" --quiet \
        --source-endpoint "$VOYC_TEST_S3_ENDPOINT" --report "$name.report.csv")
    end=$(date +%s.%N)
    kill "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=
    local uploaded
    uploaded=$(grep -c ',uploaded,' "$work/$name.report.csv" || true)
    [ "$uploaded" = "$count" ] || { echo "bench-objects: $name: $uploaded of $count uploaded" >&2; exit 1; }
    python3 - "$name" "$start" "$end" "$count" "$size_kib" "$(cat "$work/$name.rss")" <<'EOF'
import sys
name, start, end, count, size_kib, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
wall = end - start
print(f"| {name} | {count} × {size_kib} KiB | {wall:.2f} s | {count / wall:.0f} | {count * size_kib * 1024 / wall / 1e6:.1f} | {rss / 1024:.1f} MiB |")
EOF
}

echo "| read from | files | wall time | files/s | MB/s | peak RSS |"
echo "|---|---|---|---|---|---|"
run local local.csv
run s3 remote.csv

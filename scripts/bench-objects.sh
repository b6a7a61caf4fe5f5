#!/usr/bin/env bash
# Usage: scripts/bench-objects.sh [COUNT SIZE_KIB]      (default: 1000 64)
# `upload` of COUNT recordings of SIZE_KIB KiB each, read from local disk and then the same
# bytes read from SeaweedFS (s3:// in the manifest), both uploaded through a sandbox whose
# presigned uploads go to SeaweedFS too: files/s, MB/s and peak RSS (GNU time's "Maximum
# resident set size") of each run, one table. Uses the SeaweedFS that SEAWEED_DIR names
# (a folder of scripts/seaweedfs.sh start), else starts one of its own on free ports and stops
# it at the end. Builds the release binary (CARGO_TARGET_DIR is honoured). Also times
# `validate` of each manifest (the s3:// one asks every object's HEAD and first bytes).
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
import concurrent.futures, os, struct, subprocess, sys
work, count, size_kib, filer, bucket = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
os.makedirs(f"{work}/calls", exist_ok=True)
size = size_kib * 1024
names = []
for i in range(count):
    name = f"calls/{i:06}.wav"
    with open(f"{work}/{name}", "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", min(size - 8, 2**32 - 1)) + b"WAVEfmt ")
        left = size - 16
        while left:
            piece = min(left, 16 << 20)
            f.write(os.urandom(piece))
            left -= piece
    names.append(name)
def put(name):
    subprocess.run(["curl", "-sSf", "-o", "/dev/null", "-F", f"file=@{work}/{name}",
                    f"{filer}/buckets/{bucket}/{name}"], check=True)
with concurrent.futures.ThreadPoolExecutor(8) as pool:
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

for manifest in local remote; do
    start=$(date +%s.%N)
    (cd "$work" && /usr/bin/time -f "%M" -o "validate-$manifest.rss" \
        "$bin" validate "$manifest.csv" --source-endpoint "$VOYC_TEST_S3_ENDPOINT" >/dev/null)
    end=$(date +%s.%N)
    python3 -c "import sys; s, e, n, rss = map(float, sys.argv[2:]); print(f'validate {sys.argv[1]}.csv: {n:.0f} rows in {e - s:.2f} s ({n / (e - s):.0f} rows/s), peak RSS {rss / 1024:.1f} MiB')" \
        "$manifest" "$start" "$end" "$count" "$(cat "$work/validate-$manifest.rss")"
done
echo
echo "| read from | files | wall time | files/s | MB/s | peak RSS |"
echo "|---|---|---|---|---|---|"
run local local.csv
run s3 remote.csv

#!/usr/bin/env bash
# Usage: scripts/pacing.sh [--quick]
# Measures upload's pacing against real sandboxes on loopback (figures in BENCHMARKS.md):
#   1. --max-rps 20 at concurrency 32: the call-1 rate the sandbox saw;
#   2. no --max-rps at concurrency 32 against `sandbox --rate-limit 20`: the share of call-1
#      requests answered 429, and the rate the run settled at;
#   3. a 40-second outage of the sandbox (every API and S3 request 503) mid-run: every row
#      uploaded, exit 0, and how many requests met the outage;
#   4. --bwlimit 4M: the upload rate of 8 files of 4 MiB;
#   5. concurrency 32 against `sandbox --throttle-rate 0.1 --latency-ms 20` (a tenth of call 1s
#      answered 429 at random, whatever the rate), and the same rows without it: random 429s
#      must cost the run their own Retry-After waits, not most of its rate.
# Prints the figures; fails only if a run loses a row, uploads one twice or exits non-zero.
# --quick: smaller runs and a 5-second outage (a smoke test of the script itself).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=${1:-}
if [ "$quick" = --quick ]; then
    rps_rows=60 limit_rows=120 outage_rows=120 outage_secs=5 big_files=2 noise_rows=300
else
    rps_rows=600 limit_rows=1200 outage_rows=800 outage_secs=40 big_files=8 noise_rows=3000
fi

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-pacing.XXXXXX")
pid=
stop_sandbox() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap 'stop_sandbox; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# Starts a sandbox with the given options; sets $pid and $url.
start_sandbox() {
    "$bin" sandbox --listen 127.0.0.1:0 --data-dir "$work/data.$RANDOM" "$@" >"$work/sandbox.out" 2>"$work/sandbox.err" &
    pid=$!
    for _ in $(seq 100); do [ -s "$work/sandbox.out" ] && break; sleep 0.05; done
    url=$(head -1 "$work/sandbox.out")
    [ -n "$url" ] || { cat "$work/sandbox.err" >&2; exit 1; }
}

stat() { curl -s "$url/_sandbox/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Every manifest row is one conversation with audio, and none is there twice.
check_once() {
    local rows=$1
    curl -s "$url/_sandbox/conversations" | python3 -c "
import json, sys
rows = $rows
conversations = json.load(sys.stdin)
with_audio = [c for c in conversations if c['uploaded']]
# Every file of the corpus is different: one file twice is one SHA-256 twice.
hashes = {c['sha256'] for c in with_audio}
assert len(with_audio) == rows, f'{len(with_audio)} conversations with audio, expected {rows}'
assert len(hashes) == rows, 'a row was uploaded twice'
"
}

# Uploads corpus $1 to the sandbox at $url with extra options; prints the seconds it took.
upload() {
    local corpus=$1; shift
    rm -f "$work/run.report.csv" "$work/run.report.csv.journal"
    local start end
    start=$(date +%s.%N)
    (cd "$work" && VOYC_TOKEN=sandbox-token "$bin" upload "$corpus/manifest.csv" --org 1 --base-url "$url" \
        --report "$work/run.report.csv" "$@" 2>"$work/upload.err") || {
        echo "pacing: upload failed (exit $?):" >&2; tail -20 "$work/upload.err" >&2; exit 1; }
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
}

corpus() {
    local dir=$work/corpus-$1-$2
    [ -f "$dir/manifest.csv" ] || python3 scripts/gen_corpus.py "$dir" --rows "$1" --bytes "$2" >/dev/null
    echo "$dir"
}

echo "== 1. --max-rps 20, concurrency 32, $rps_rows rows of 1 KiB"
c=$(corpus "$rps_rows" 1024)
start_sandbox
secs=$(upload "$c" --concurrency 32 --max-rps 20)
calls=$(stat '["api_requests"]')
check_once "$rps_rows"
echo "call 1: $calls requests in ${secs} s: $(python3 -c "print(f'{$calls / $secs:.2f}')") a second"
stop_sandbox

echo "== 2. no --max-rps, concurrency 32, against sandbox --rate-limit 20, $limit_rows rows"
c=$(corpus "$limit_rows" 1024)
start_sandbox --rate-limit 20
secs=$(upload "$c" --concurrency 32)
calls=$(stat '["api_requests"]')
limited=$(stat '["rate_limited"]')
check_once "$limit_rows"
echo "call 1: $calls requests, $limited answered 429 ($(python3 -c "print(f'{100 * $limited / $calls:.1f}')")%); $limit_rows rows in ${secs} s: $(python3 -c "print(f'{$limit_rows / $secs:.2f}')") a second"
grep -h "^throttled:\|throttled:" "$work/upload.err" | sed 's/^/upload said: /' || true
stop_sandbox

echo "== 3. a ${outage_secs}-second outage after 100 call 1s, concurrency 16, $outage_rows rows, 20 ms latency"
c=$(corpus "$outage_rows" 1024)
start_sandbox --outage-after 100 --outage-secs "$outage_secs" --latency-ms 20
secs=$(upload "$c" --concurrency 16)
check_once "$outage_rows"
api=$(stat '["outage_api_requests"]')
s3=$(stat '["outage_s3_requests"]')
echo "every row uploaded, exit 0, in ${secs} s; requests that met the outage: $api call 1, $s3 uploads"
grep -h "waiting:\|resumed:\|waited out" "$work/upload.err" | sed 's/^/upload said: /' | tail -4 || true
stop_sandbox

echo "== 4. --bwlimit 4M, $big_files files of 4 MiB, concurrency 8"
c=$(corpus "$big_files" $((4 << 20)))
start_sandbox
secs=$(upload "$c" --concurrency 8 --bwlimit 4M)
check_once "$big_files"
echo "$big_files x 4 MiB in ${secs} s: $(python3 -c "print(f'{$big_files * 4 / $secs:.2f}')") MiB a second"
stop_sandbox

echo "== 5. concurrency 32, $noise_rows rows, 20 ms latency, with and without sandbox --throttle-rate 0.1"
c=$(corpus "$noise_rows" 1024)
start_sandbox --latency-ms 20
plain=$(upload "$c" --concurrency 32)
check_once "$noise_rows"
stop_sandbox
start_sandbox --latency-ms 20 --throttle-rate 0.1
secs=$(upload "$c" --concurrency 32)
calls=$(stat '["api_requests"]')
check_once "$noise_rows"
echo "without 429s: $noise_rows rows in ${plain} s; with a tenth of call 1s answered 429 at random: in ${secs} s ($calls call-1 requests)"
grep -h "throttled:" "$work/upload.err" | sed 's/^/upload said: /' || true
stop_sandbox

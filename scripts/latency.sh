#!/usr/bin/env bash
# Usage: scripts/latency.sh [--files N] [--bytes B] [--latency-ms MS] [--concurrency "32 256"] [--runs R] [--bin PATH]
# The latency-bound fraction of issue 15: N files (default 10,000 of 64 KiB, scripts/gen_corpus.py,
# made once in ${TMPDIR:-/tmp}/voyc-latency-N-B and reused) uploaded by `voyc-import upload` to a
# fresh `voyc-import sandbox --latency-ms MS` (uploads on /dev/shm when it has room) at each
# concurrency, R runs each. The time is the whole process's wall time (GNU time), validation and
# start-up included; the limit is concurrency / (2 x latency) files a second, as every file waits
# for two answers. Also prints where the rest went: the upload phase (the summary's duration,
# from the first row sent to the last settled) against the whole, and the rows' mean duration_ms
# from the report against the 2 x latency every row must wait. Fails if a row is not uploaded.
set -euo pipefail
cd "$(dirname "$0")/.."

files=10000 bytes=65536 latency=50 concurrencies="32 256" runs=3 bin=
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files=$2; shift ;;
        --bytes) bytes=$2; shift ;;
        --latency-ms) latency=$2; shift ;;
        --concurrency) concurrencies=$2; shift ;;
        --runs) runs=$2; shift ;;
        --bin) bin=$2; shift ;;
        *) sed -n 2p "$0" >&2; exit 2 ;;
    esac
    shift
done
command -v python3 >/dev/null || { echo "latency: python3 is needed" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "latency: GNU time is needed (apt-get install time)" >&2; exit 2; }
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
fi
corpus=${TMPDIR:-/tmp}/voyc-latency-$files-$bytes
if [ ! -f "$corpus/manifest.csv" ]; then
    echo "latency: generating $files files of $bytes bytes in $corpus" >&2
    python3 scripts/gen_corpus.py "$corpus" --rows "$files" --bytes "$bytes" >&2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-latency.XXXXXX")
need_kib=$(( files * (bytes / 1024 + 8) * 2 ))
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
sandbox_pid=
cleanup() {
    [ -z "$sandbox_pid" ] || { kill "$sandbox_pid" 2>/dev/null; wait "$sandbox_pid" 2>/dev/null; } || true
    rm -rf "$work" "${data:-}"
}
trap cleanup EXIT

echo "latency: $files files of $bytes bytes, sandbox --latency-ms $latency, $runs runs at each concurrency" >&2
printf '%-11s %-8s %8s %9s %9s %8s %10s %9s\n' concurrency run "wall s" "files/s" "of limit" "upload s" "row ms" "RSS MiB"
for concurrency in $concurrencies; do
    for run in $(seq "$runs"); do
        if [ -n "$shm_free_kib" ] && [ "$shm_free_kib" -gt "$need_kib" ]; then
            data=$(mktemp -d /dev/shm/voyc-latency.XXXXXX)
        else
            data=$(mktemp -d "$work/data.XXXXXX")
        fi
        "$bin" sandbox --listen 127.0.0.1:0 --latency-ms "$latency" --data-dir "$data" >"$work/sandbox.out" 2>"$work/sandbox.err" &
        sandbox_pid=$!
        for _ in $(seq 200); do [ -s "$work/sandbox.out" ] && break; sleep 0.05; done
        url=$(head -1 "$work/sandbox.out")
        [ -n "$url" ] || { cat "$work/sandbox.err" >&2; exit 1; }
        rm -f "$work/report.csv" "$work/journal"*
        (cd "$corpus" && VOYC_TOKEN=sandbox-token /usr/bin/time -f '%e %M' -o "$work/time" \
            "$bin" upload manifest.csv --org 5 --base-url "$url" --concurrency "$concurrency" \
            --report "$work/report.csv" --journal "$work/journal" --log-format json 2>"$work/log")
        kill "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=
        rm -rf "$data"
        python3 - "$work" "$files" "$concurrency" "$latency" "$run" <<'EOF'
import csv, json, sys
work, files, concurrency, latency, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
wall, rss = open(f"{work}/time").read().split()
rows = list(csv.DictReader(open(f"{work}/report.csv")))
uploaded = [r for r in rows if r["status"] == "uploaded"]
if len(uploaded) != files:
    sys.exit(f"latency: {len(uploaded)} of {files} rows uploaded")
summary = [json.loads(l) for l in open(f"{work}/log") if '"summary"' in l][-1]
upload_s = summary.get("duration_ms", 0) / 1000
row_ms = sum(float(r["duration_ms"]) for r in uploaded) / len(uploaded)
rate = files / float(wall)
limit = concurrency / (2 * latency / 1000)
print(f"{concurrency:<11} {run:<8} {float(wall):8.2f} {rate:9.0f} {100 * rate / limit:8.1f}% {upload_s:8.2f} {row_ms:10.1f} {int(rss) / 1024:9.1f}")
EOF
    done
done

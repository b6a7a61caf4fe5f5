#!/usr/bin/env bash
# Usage: scripts/bench-validate.sh [ROWS]   (default 100000; corpus kept in $BENCH_DIR,
# default /tmp/voyc-bench-ROWS, and reused). Times the release binary's `validate` on a
# generated manifest of ROWS small audio files (CSV, then the same rows as JSONL), warm (after
# one untimed run), 3 runs each, and reports rows/s and peak RSS (GNU time's "Maximum resident
# set size").
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-100000}
dir=${BENCH_DIR:-/tmp/voyc-bench-$rows}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
[ -f "$dir/manifest.jsonl" ] || python3 scripts/gen_corpus.py "$dir" --rows "$rows"

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
for manifest in "$dir/manifest.csv" "$dir/manifest.jsonl"; do
    "$bin" validate "$manifest" > /dev/null # warm the page cache
    echo "voyc-import validate $manifest ($rows rows, $(nproc) cores)"
    for run in 1 2 3; do
        start=$(date +%s%N)
        /usr/bin/time -v "$bin" validate "$manifest" > "$dir/validate.out" 2> "$dir/time.txt"
        end=$(date +%s%N)
        rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
        awk -v rows="$rows" -v ns="$((end - start))" -v kib="$rss_kib" -v run="$run" 'BEGIN {
            s = ns / 1e9
            printf "  run %d: %.2f s, %d rows/s, peak RSS %.1f MiB\n", run, s, rows / s, kib / 1024
        }'
    done
    echo "  $(tail -n 1 "$dir/validate.out")"
done

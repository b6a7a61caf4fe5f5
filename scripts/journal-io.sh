#!/usr/bin/env bash
# Usage: scripts/journal-io.sh [--rows N] [--concurrency "1 32"] [--bin PATH] [--corpus DIR]
# What the journal costs the disk: `voyc-import upload` of N files of 1 KiB (default 5,000, the
# corpus of scripts/gen_corpus.py, made once and reused) against a spawned sandbox, at each
# concurrency, with the journal on disk and the report and the sandbox's uploads on /dev/shm, so
# that the client's bytes written (GNU time's file system outputs, x 512) are the journal's. The
# fsyncs (fsync and fdatasync, every thread) are counted by `perf stat` on the syscall
# tracepoints, which does not slow the run; where perf cannot (no perf, or no access to
# tracepoints), by strace, which slows every syncing call, so that fewer changes share each
# commit and the bytes a row are higher than in a real run (the line says which counted). Prints
# one line a run: bytes and fsyncs per row, the journal's size and the wall time. Needs python3,
# and perf or strace.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=5000 concurrencies="1 32" bin= corpus=
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) rows=$2; shift ;;
        --concurrency) concurrencies=$2; shift ;;
        --bin) bin=$2; shift ;;
        --corpus) corpus=$2; shift ;;
        *) sed -n 2p "$0" >&2; exit 2 ;;
    esac
    shift
done
counter=
if command -v perf >/dev/null &&
    perf stat -e syscalls:sys_enter_fsync -o /dev/null true 2>/dev/null; then
    counter=perf
elif command -v strace >/dev/null; then
    counter=strace
else
    echo "journal-io: perf (with access to syscall tracepoints) or strace is needed" >&2; exit 2
fi
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
fi
corpus=${corpus:-${TMPDIR:-/tmp}/voyc-bench-$rows}
[ -f "$corpus/manifest.csv" ] || python3 scripts/gen_corpus.py "$corpus" --rows "$rows" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-journal-io.XXXXXX")
shm=$(mktemp -d /dev/shm/voyc-journal-io.XXXXXX)
sandbox_pid=
cleanup() {
    [ -z "$sandbox_pid" ] || { kill "$sandbox_pid" 2>/dev/null; wait "$sandbox_pid" 2>/dev/null; } || true
    rm -rf "$work" "$shm"
}
trap cleanup EXIT

for concurrency in $concurrencies; do
    mkdir -p "$shm/data.$concurrency"
    "$bin" sandbox --listen 127.0.0.1:0 --data-dir "$shm/data.$concurrency" >"$work/sandbox.out" 2>"$work/sandbox.err" &
    sandbox_pid=$!
    for _ in $(seq 200); do [ -s "$work/sandbox.out" ] && break; sleep 0.05; done
    url=$(head -1 "$work/sandbox.out")
    [ -n "$url" ] || { cat "$work/sandbox.err" >&2; exit 1; }
    journal=$work/journal.$concurrency
    if [ "$counter" = perf ]; then
        count=(perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -o "$work/syncs")
    else
        count=(strace --seccomp-bpf -f -c -e trace=fsync,fdatasync -o "$work/syncs")
    fi
    VOYC_TOKEN=sandbox-token /usr/bin/time -f '%O %e' -o "$work/time" \
        "${count[@]}" \
        "$bin" upload "$corpus/manifest.csv" --org 5 --base-url "$url" --concurrency "$concurrency" \
        --quiet --report "$shm/report.$concurrency.csv" --journal "$journal"
    kill "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=
    read -r blocks seconds <"$work/time"
    if [ "$counter" = perf ]; then
        syncs=$(awk -F, '$3 ~ /sys_enter_f(data)?sync/ { n += $1 } END { print n + 0 }' "$work/syncs")
    else
        syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$work/syncs")
    fi
    size=$(( $(stat -c %s "$journal") + $(stat -c %s "$journal-wal" 2>/dev/null || echo 0) ))
    awk -v r="$rows" -v c="$concurrency" -v b="$blocks" -v s="$syncs" -v z="$size" -v t="$seconds" -v by="$counter" 'BEGIN {
        printf "rows %d concurrency %d: %.0f bytes written a row (%.1f MB), %.2f fsyncs a row (%d, counted by %s), journal %.0f bytes a row, %.1f s\n",
            r, c, b * 512 / r, b * 512 / 1e6, s / r, s, by, z / r, t }'
    rm -rf "$shm/data.$concurrency" "$shm/report.$concurrency.csv"
done

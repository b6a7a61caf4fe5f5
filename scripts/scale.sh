#!/usr/bin/env bash
# Usage: scripts/scale.sh [--files N] [--concurrency N] [--bin PATH] [--keep]
# The scale run: N tiny audio files (default 1,000,000 of 1 KiB; scripts/gen_corpus.py, made once
# in ${TMPDIR:-/tmp}/voyc-bench-N and reused) uploaded by `voyc-import upload` at concurrency 64
# to a spawned sandbox (uploads kept on /dev/shm when it has room), with the report and the
# journal on disk. Prints files/s in ten equal windows of the upload phase (from the first upload
# the sandbox counts to the last, sampled from its /_sandbox/stats twice a second), the client's
# peak RSS, CPU and bytes written, the client's and the sandbox's CPU a file in each window, the
# journal's and report's sizes, then the time of a rerun that must find every row uploaded and
# send nothing, and the start-up of `--shard 1/4` when this build has --shard. Fails if a row is
# missing or was uploaded twice. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

files=1000000 concurrency=64 bin= keep=
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files=$2; shift ;;
        --concurrency) concurrency=$2; shift ;;
        --bin) bin=$2; shift ;;
        --keep) keep=1 ;;
        *) sed -n 2p "$0" >&2; exit 2 ;;
    esac
    shift
done
command -v python3 >/dev/null || { echo "scale: python3 is needed" >&2; exit 2; }
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
fi
corpus=${TMPDIR:-/tmp}/voyc-bench-$files
if [ ! -f "$corpus/manifest.csv" ]; then
    echo "scale: generating $files files of 1 KiB in $corpus" >&2
    python3 scripts/gen_corpus.py "$corpus" --rows "$files" --bytes 1024 >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-scale.XXXXXX")
# A 1 KiB upload takes a 4 KiB page and an inode on tmpfs: about 5 KiB each.
shm_free_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
if [ -n "$shm_free_kib" ] && [ "$shm_free_kib" -gt $((files * 5 * 2)) ]; then
    data=$(mktemp -d /dev/shm/voyc-scale.XXXXXX)
else
    data=$work/sandbox-data
fi
sandbox_pid= upload_pid=
cleanup() {
    [ -z "$upload_pid" ] || kill -9 "$upload_pid" 2>/dev/null || true
    [ -z "$sandbox_pid" ] || { kill "$sandbox_pid" 2>/dev/null; wait "$sandbox_pid" 2>/dev/null; } || true
    rm -rf "$data"
    if [ -n "$keep" ]; then echo "scale: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

mkdir -p "$data"
"$bin" sandbox --listen 127.0.0.1:0 --data-dir "$data" >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
for _ in $(seq 200); do [ -s "$work/sandbox.out" ] && break; sleep 0.05; done
url=$(head -1 "$work/sandbox.out")
[ -n "$url" ] || { cat "$work/sandbox.err" >&2; exit 1; }

upload() {
    VOYC_TOKEN=sandbox-token /usr/bin/time -f '%e %M %U %S %O' -o "$work/time.$1" \
        "$bin" upload "$corpus/manifest.csv" --org 5 --base-url "$url" --concurrency "$concurrency" \
        --quiet --report "$work/report.csv" --journal "$work/journal" "${@:2}" 2>"$work/stderr.$1"
}

echo "scale: uploading $files files at concurrency $concurrency (sandbox data in $data)" >&2
upload first &
upload_pid=$!
python3 - "$url" "$upload_pid" "$sandbox_pid" >"$work/samples" <<'EOF'
import json, os, sys, time, urllib.request
url, pid, sandbox = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def stat(of):
    try:
        with open(f"/proc/{of}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
def running():
    fields = stat(pid)
    return fields is not None and fields[0] != "Z"
def cpu(of):
    """User + system clock ticks of `of` and of its live descendants (the client under time)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := stat(entry)) is not None:
            children.setdefault(int(fields[1]), []).append((int(entry), fields))
    total, todo = 0, [of]
    while todo:
        for child, fields in children.get(todo.pop(), []):
            total += int(fields[11]) + int(fields[12])
            todo.append(child)
    own = stat(of)
    return total + (int(own[11]) + int(own[12]) if own else 0)
# A process that has ended counts no more: each column keeps the most it has seen.
client_ticks = sandbox_ticks = 0
while True:
    alive = running()
    with urllib.request.urlopen(url + "/_sandbox/stats") as answer:
        uploads = json.load(answer)['uploads']
    client_ticks, sandbox_ticks = max(client_ticks, cpu(pid)), max(sandbox_ticks, cpu(sandbox))
    print(f"{time.time():.3f} {uploads} {client_ticks} {sandbox_ticks}", flush=True)
    if not alive:
        break
    time.sleep(0.5)
EOF
wait "$upload_pid" || { status=$?; upload_pid=; echo "scale: upload exited $status" >&2; tail -5 "$work/stderr.first" >&2; exit 1; }
upload_pid=

api_before=$(curl -fsS "$url/_sandbox/stats" | python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["api_requests"], s["s3_requests"], s["uploads"], s["conversations"])')
read -r api s3 uploads conversations <<<"$api_before"
[ "$uploads" -eq "$files" ] && [ "$conversations" -eq "$files" ] \
    || { echo "scale: the sandbox holds $conversations conversations and $uploads uploads for $files files" >&2; exit 1; }
journal_bytes=$(( $(stat -c %s "$work/journal") + $(stat -c %s "$work/journal-wal" 2>/dev/null || echo 0) ))
report_bytes=$(stat -c %s "$work/report.csv")

upload rerun || { echo "scale: the rerun exited $?" >&2; tail -5 "$work/stderr.rerun" >&2; exit 1; }
read -r api2 s32 _ _ <<<"$(curl -fsS "$url/_sandbox/stats" | python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["api_requests"], s["s3_requests"], s["uploads"], s["conversations"])')"
[ "$api2" -eq "$api" ] && [ "$s32" -eq "$s3" ] || { echo "scale: the rerun sent $((api2 - api)) calls 1 and $((s32 - s3)) uploads" >&2; exit 1; }

shard="--shard is not in this build: not measured"
if "$bin" upload --help | grep -q -- '--shard'; then
    upload shard --shard 1/4 --dry-run >/dev/null || true
    shard="--shard 1/4 --dry-run (start-up and planning of a quarter of the rows): $(cut -d' ' -f1 "$work/time.shard") s, peak RSS $(( $(cut -d' ' -f2 "$work/time.shard") / 1024 )) MiB"
fi

python3 - "$work" "$files" "$concurrency" "$journal_bytes" "$report_bytes" "$shard" <<'EOF'
import sys
work, files, concurrency, journal, report, shard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
import os
rows = [tuple(map(float, line.split())) for line in open(f"{work}/samples")]
samples = [(t, n) for t, n, _, _ in rows]
start = next(t for t, n in samples if n > 0)
# The last upload happened between the last sample short of all files and the first with all.
end = next(t for t, n in samples if n >= files)
def at(when, column):
    """A column of the samples at time `when`, interpolated between them."""
    for r0, r1 in zip(rows, rows[1:]):
        if r0[0] <= when <= r1[0]:
            return r0[column] + (r1[column] - r0[column]) * (when - r0[0]) / (r1[0] - r0[0]) if r1[0] > r0[0] else r1[column]
    return rows[-1][column]
width = (end - start) / 10
edges = [start + i * width for i in range(11)]
rates = [(at(b, 1) - at(a, 1)) / width for a, b in zip(edges, edges[1:])]
tick = os.sysconf("SC_CLK_TCK")
def cpu_a_file(column):
    return [1000 * (at(b, column) - at(a, column)) / tick / max(at(b, 1) - at(a, 1), 1) for a, b in zip(edges, edges[1:])]
wall, rss, user, system, blocks = open(f"{work}/time.first").read().split()
rerun = open(f"{work}/time.rerun").read().split()
print(f"scale: {files:,} files of 1 KiB, concurrency {concurrency}: upload phase {end - start:.1f} s "
      f"({files / (end - start):,.0f} files/s), whole run {float(wall):.1f} s")
print("files/s in ten windows of the upload phase: " + ", ".join(f"{r:,.0f}" for r in rates))
print(f"last window against the first: {100 * (rates[-1] / rates[0] - 1):+.1f}%")
print("CPU ms a file in the ten windows, client: " + ", ".join(f"{c:.3f}" for c in cpu_a_file(2))
      + "; sandbox: " + ", ".join(f"{c:.3f}" for c in cpu_a_file(3)))
print(f"client: peak RSS {int(rss) / 1024:.1f} MiB, CPU {float(user):.1f} s user + {float(system):.1f} s system "
      f"({1000 * (float(user) + float(system)) / files:.3f} ms a file), {int(blocks) * 512 / files:,.0f} bytes written to disk a file")
print(f"journal {journal / 1e6:.1f} MB ({journal / files:.0f} bytes a row), report {report / 1e6:.1f} MB")
print(f"rerun that finds every row uploaded (sends nothing): {float(rerun[0]):.1f} s, peak RSS {int(rerun[1]) / 1024:.1f} MiB")
print(shard)
EOF

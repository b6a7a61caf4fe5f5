#!/usr/bin/env bash
# Usage: scripts/overlap.sh [--files N] [--overlap N] [--latency-ms MS] [--concurrency N] [--kill-a-after SECS] [--state-dir] [--release] [--keep]
# Two real `voyc-import upload` processes sharing one journal, on overlapping manifests, against
# one spawned sandbox: A takes rows 1..(N+overlap)/2, B (started a second later) the rest and the
# last `overlap` rows of A. With --kill-a-after, A is killed with SIGKILL that long after B
# starts, and B must take its rows over. Prints one line of figures from the sandbox's
# /_sandbox/conversations and both reports, and fails unless every file's audio is in exactly
# one conversation, the runs that lived exit 0, and B's report has every row uploaded.
# With A killed, A's own rows may be left unfinished (a rerun of A finishes them) but never twice.
# With --state-dir, both runs use `--state-dir state` (the nightly recipe's way) instead of
# `--journal shared.journal`: the same journal, found by the destination.
# Defaults: 150 files, overlap 50, latency 150 ms, concurrency 8, the debug build. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

files=150 overlap=50 latency=150 concurrency=8 kill_after= profile=debug keep= state=(--journal shared.journal)
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files=$2; shift ;;
        --overlap) overlap=$2; shift ;;
        --latency-ms) latency=$2; shift ;;
        --concurrency) concurrency=$2; shift ;;
        --kill-a-after) kill_after=$2; shift ;;
        --state-dir) state=(--state-dir state) ;;
        --release) profile=release ;;
        --keep) keep=1 ;;
        *) sed -n 2p "$0" >&2; exit 2 ;;
    esac
    shift
done
command -v python3 >/dev/null || { echo "overlap: python3 is needed" >&2; exit 2; }

if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
bin=${CARGO_TARGET_DIR:-$PWD/target}/$profile/voyc-import
work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-overlap.XXXXXX")
sandbox_pid= a_pid= b_pid=
cleanup() {
    for pid in $a_pid $b_pid; do kill -9 "$pid" 2>/dev/null || true; done
    [ -z "$sandbox_pid" ] || { kill "$sandbox_pid" 2>/dev/null; wait "$sandbox_pid" 2>/dev/null; } || true
    if [ -z "$keep" ]; then rm -rf "$work"; else echo "overlap: kept $work" >&2; fi
}
trap cleanup EXIT

# The corpus: WAV files of 2-6 KB with distinct bytes, and the two manifests.
python3 - "$work" "$files" "$overlap" <<'EOF'
import os, random, struct, sys
work, files, overlap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{work}/calls")
rows = []
for i in range(files):
    data = random.Random(i).randbytes(2000 + 37 * i % 4000)
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(data))
    with open(f"{work}/calls/{i:05}.wav", "wb") as f:
        f.write(header + data)
    rows.append(f"calls/{i:05}.wav,support,2024-03-01,09:00:00,Agent {i}\n")
head = "file,channel_id,call_date,call_time,agent\n"
split = (files + overlap) // 2
with open(f"{work}/A.csv", "w") as f:
    f.write(head + "".join(rows[:split]))
with open(f"{work}/B.csv", "w") as f:
    f.write(head + "".join(rows[split - overlap:]))
EOF

"$bin" sandbox --listen 127.0.0.1:0 --latency-ms "$latency" >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$work/sandbox.out" ] && break; sleep 0.05; done
url=$(head -n 1 "$work/sandbox.out")

run() { # name; run as `run A &`, so that $! is the importer itself (exec)
    cd "$work" && VOYC_TOKEN=sandbox-token exec "$bin" upload "$1.csv" --org 118 --base-url "$url" \
        "${state[@]}" --report "r$1.csv" --concurrency "$concurrency" 2>"$1.err"
}
started=$(date +%s.%N)
run A & a_pid=$!
sleep 1
run B & b_pid=$!
if [ -n "$kill_after" ]; then
    sleep "$kill_after"
    kill -9 "$a_pid" 2>/dev/null || true
fi
a_exit=0 b_exit=0
wait "$a_pid" || a_exit=$?
a_pid=
wait "$b_pid" || b_exit=$?
b_pid=
elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")

python3 - "$work" "$url" "$files" "$overlap" "$a_exit" "$b_exit" "$elapsed" "${kill_after:-}" "${state[0]}" <<'EOF'
import csv, hashlib, json, os, sys, urllib.request
work, url, files, overlap, a_exit, b_exit, elapsed, killed, state = sys.argv[1:]
files, overlap, a_exit, b_exit = int(files), int(overlap), int(a_exit), int(b_exit)
conversations = json.load(urllib.request.urlopen(f"{url}/_sandbox/conversations"))
holders = {}
for c in conversations:
    if c["uploaded"]:
        holders.setdefault(c["sha256"], []).append(c["conversation_id"])
shas = []
for i in range(files):
    with open(f"{work}/calls/{i:05}.wav", "rb") as f:
        shas.append(hashlib.sha256(f.read()).hexdigest())
# With A killed, A's own rows may be unfinished (a rerun of A finishes them): only B's count.
split = (files + overlap) // 2
must = shas[split - overlap:] if killed else shas
lost = sum(1 for s in must if s not in holders)
double = sum(1 for s in shas if len(holders.get(s, [])) > 1)
orphans = sum(1 for c in conversations if not c["uploaded"])

def report(name):
    path = f"{work}/r{name}.csv"
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

def counts(rows):
    if rows is None:
        return "no report"
    by = {}
    for r in rows:
        by[r["status"]] = by.get(r["status"], 0) + 1
    noted = sum(1 for r in rows if "another run" in r["notes"])
    taken = sum(1 for r in rows if "an earlier run" in r["notes"])
    return ", ".join(f"{n} {s}" for s, n in sorted(by.items())) + (
        f" ({noted} noted as another run's, {taken} taken over from a run that stopped)")

ra, rb = report("A"), report("B")
ok = lost == 0 and double == 0 and b_exit == 0 and rb is not None and all(
    r["status"] in ("uploaded", "already_uploaded") for r in rb)
if not killed:
    ok = ok and a_exit == 0 and len(conversations) == files
kill = f", A killed with SIGKILL {killed}s after B started" if killed else ""
print(
    f"overlap: {files} files, {overlap} in both manifests, two runs sharing one journal ({state}){kill}, "
    f"{elapsed}s: exit A {a_exit}, B {b_exit}; "
    f"conversations {len(conversations)} ({orphans} without audio); rows lost {lost}; double uploads {double}; "
    f"report A: {counts(ra)}; report B: {counts(rb)}"
)
sys.exit(0 if ok else 1)
EOF

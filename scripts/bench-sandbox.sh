#!/usr/bin/env bash
# Usage: scripts/bench-sandbox.sh [SECONDS] [FILES] [MIB]  (defaults 10 4 1024)
# Measures the sandbox alone on loopback: call-1 requests/s with wrk (apt-get install wrk),
# then upload throughput of FILES real files of MIB MiB sent in parallel by curl, presigned
# POST and presigned PUT, stored on disk and (where /dev/shm exists) on tmpfs, which shows
# what the disk costs. Needs python3 (to read call 1's JSON) and about 2 x FILES x MIB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10}
files=${2:-4}
mib=${3:-1024}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-sandbox: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done

cargo build --release --quiet
bin=target/release/voyc-import
work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-bench-sandbox.XXXXXX")
data=$work/data
shm=
pid=
stop_sandbox() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap 'stop_sandbox; rm -rf "$work" $shm' EXIT

# Starts the sandbox with the given options; sets $pid and $url.
start_sandbox() {
    rm -rf "$data"
    "$bin" sandbox --listen 127.0.0.1:0 --data-dir "$data" "$@" >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 100); do [ -s "$work/out" ] && break; sleep 0.05; done
    url=$(head -1 "$work/out")
    [ -n "$url" ] || { cat "$work/err" >&2; exit 1; }
}

# CPU seconds (user + system) the sandbox has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"; }

call1_url() { echo "$url/api/v2/workspace/bench/conversation/upload_data/"; }
body='{"channel_id":"42","call_date":"2024-02-29","call_time":"09:05:00","agent":"Ann","direction":"inbound","team":"north"}'

echo "== call 1: wrk -t2 -c64 -d${duration}s, no latency"
cat >"$work/call1.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sandbox-token"
LUA
start_sandbox
wrk -t2 -c64 -d"${duration}s" --latency -s "$work/call1.lua" "$(call1_url)" | tee "$work/wrk.txt"
if grep -q "Non-2xx" "$work/wrk.txt"; then echo "bench-sandbox: some call-1 answers were not 201" >&2; exit 1; fi
rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$work/wrk.txt")
created=$(curl -s "$url/_sandbox/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["conversations"])')
echo "call 1: $rps requests/s, $created conversations created"
stop_sandbox

echo "== uploads: $files files of $mib MiB, sent in parallel by curl"
mkdir -p "$work/files"
for i in $(seq "$files"); do head -c "${mib}M" /dev/urandom >"$work/files/$i.bin"; done
(cd "$work/files" && sha256sum ./*.bin) >"$work/sums"

# Prints the curl command line (arguments, shell-quoted) for one call 1 + upload in STYLE.
upload_args() {
    curl -s -X POST "$(call1_url)" -H 'Authorization: Bearer sandbox-token' \
        -H 'Content-Type: application/json' -d "$body" |
    python3 -c '
import json, shlex, sys
answer, style, path = json.load(sys.stdin), sys.argv[1], sys.argv[2]
if style == "post":
    target = answer["upload"]
    args = [a for k, v in target["fields"].items() for a in ("--form-string", f"{k}={v}")]
    args += ["-F", f"file=@{path}", target["url"]]
else:
    args = ["-T", path, answer["upload_url"]]
print(" ".join(shlex.quote(a) for a in args))' "$1" "$2"
}

places=("disk:$work/data")
if [ -d /dev/shm ]; then shm=$(mktemp -d /dev/shm/voyc-bench-sandbox.XXXXXX); places+=("tmpfs:$shm/data"); fi
for place in "${places[@]}"; do
for style in post put; do
    data=${place#*:}
    start_sandbox --upload-style "$style"
    commands=()
    for i in $(seq "$files"); do commands+=("$(upload_args "$style" "$work/files/$i.bin")"); done
    cpu_before=$(cpu_seconds)
    started=$(date +%s.%N)
    for command in "${commands[@]}"; do
        eval "curl -s -o /dev/null -w '%{http_code}\n' $command" >>"$work/codes.$style.${place%%:*}" &
    done
    wait $(jobs -p | grep -v "^$pid\$") 2>/dev/null || true
    ended=$(date +%s.%N)
    cpu_after=$(cpu_seconds)
    curl -s "$url/_sandbox/conversations" >"$work/conversations.json"
    python3 - "$style" "$started" "$ended" "$cpu_before" "$cpu_after" "$work" "$files" "$mib" "${place%%:*}" <<'PY'
import json, sys
style, t0, t1, c0, c1, work, files, mib, place = sys.argv[1:]
seconds, total = float(t1) - float(t0), int(files) * int(mib) * 2**20
sums = sorted(line.split()[0] for line in open(f"{work}/sums"))
got = sorted(c["sha256"] or "-" for c in json.load(open(f"{work}/conversations.json")))
codes = open(f"{work}/codes.{style}.{place}").read().split()
if got != sums or any(code not in ("200", "204") for code in codes):
    sys.exit(f"bench-sandbox: {style} uploads incomplete or corrupted (answers {codes})")
print(f"{style}, stored on {place}: {total / 1e6:.0f} MB in {seconds:.2f} s = {total / seconds / 1e6:.0f} MB/s; "
      f"sandbox CPU {float(c1) - float(c0):.2f} s = {(float(c1) - float(c0)) / (total / 1e9):.2f} CPU-s/GB; "
      f"every SHA-256 checked")
PY
    stop_sandbox
done
done
rm -rf "$data"

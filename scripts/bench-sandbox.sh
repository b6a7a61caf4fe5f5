#!/usr/bin/env bash
# Usage: scripts/bench-sandbox.sh [SECONDS] [FILES] [MIB]  (defaults 10 4 1024)
# Measures the sandbox alone on loopback: call-1 requests/s with wrk (apt-get install wrk),
# then upload throughput of FILES real files of MIB MiB sent in parallel by curl, presigned
# POST and presigned PUT, every SHA-256 checked through the inspection endpoint. Needs python3
# (to read call 1's JSON) and about 2 x FILES x MIB of free disk.
# SANDBOX_DATA=DIR keeps the sandbox's uploads under DIR (e.g. /dev/shm) instead of $TMPDIR.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10}
files=${2:-4}
mib=${3:-1024}
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "bench-sandbox: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/voyc-import
work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-bench-sandbox.XXXXXX")
data=${SANDBOX_DATA:-$work}/voyc-bench-sandbox-data.$$
pid=
wrk_pid=
stop_sandbox() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap '[ -z "$wrk_pid" ] || kill "$wrk_pid" 2>/dev/null; stop_sandbox; rm -rf "$data"; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

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

small=5000
echo "== small uploads: $small presigned POSTs of 16 KiB, each to its own key, wrk -t2 -c64"
start_sandbox
mkdir -p "$work/small"
python3 - "$(call1_url)" "$body" "$work/small" "$small" <<'PY'
import http.client, json, os, sys, urllib.parse
url, body, folder, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
parsed = urllib.parse.urlsplit(url)
connection = http.client.HTTPConnection(parsed.netloc)
headers = {"Authorization": "Bearer sandbox-token", "Content-Type": "application/json"}
boundary = "voyc-bench-boundary"
for i in range(1, count + 1):
    connection.request("POST", parsed.path, body, headers)
    target = json.loads(connection.getresponse().read())["upload"]
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in target["fields"].items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
                 f'Content-Type: application/octet-stream\r\n\r\n'.encode() + os.urandom(16384) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    with open(f"{folder}/{i}.body", "wb") as out:
        out.write(b"".join(parts))
print(target["url"], file=open(f"{folder}/url", "w"))
PY
# Each wrk thread sends its share of the prepared uploads once. wrk always runs for its whole
# duration, so the time taken is read from the inspection endpoint instead: from just before
# wrk starts until the last upload is stored.
cat >"$work/small.lua" <<'LUA'
local next_id = 1
function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
end
function init(args)
    local count, threads, folder = tonumber(args[1]), tonumber(args[2]), args[3]
    local headers = {["Content-Type"] = "multipart/form-data; boundary=voyc-bench-boundary"}
    stats = wrk.format("GET", "/_sandbox/stats", {}, nil)
    -- wrk calls the first thread's request() once to check it, and sends nothing.
    requests, sent = id == 1 and {stats} or {}, 0
    for i = id, count, threads do
        local file = io.open(folder .. "/" .. i .. ".body", "rb")
        requests[#requests + 1] = wrk.format("POST", nil, headers, file:read("*a"))
        file:close()
    end
end
function request()
    sent = sent + 1
    -- Once every upload is sent, connections ask for the (cheap) stats instead.
    return requests[sent] or stats
end
LUA
cpu_before=$(cpu_seconds)
started=$(date +%s.%N)
wrk -t2 -c64 -d300s -s "$work/small.lua" "$(cat "$work/small/url")" -- "$small" 2 "$work/small" >"$work/wrk-small.txt" &
wrk_pid=$!
python3 - "$url" "$small" "$started" <<'PY'
import json, sys, time, urllib.request
url, count, started = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 300
while json.load(urllib.request.urlopen(url + "/_sandbox/stats"))["uploads"] < count:
    if time.time() > deadline:
        all = json.load(urllib.request.urlopen(url + "/_sandbox/conversations"))
        missing = [i + 1 for i, c in enumerate(all) if c["uploads"] != 1]
        sys.exit(f"bench-sandbox: the small uploads did not finish in time; not stored once: {missing[:10]}")
    time.sleep(0.005)
seconds = time.time() - started
print(f"small uploads: {count} in {seconds:.2f} s = {count / seconds:.0f} uploads/s", end="")
PY
cpu_after=$(cpu_seconds)
kill -INT "$wrk_pid"; wait "$wrk_pid" || true; wrk_pid=
curl -s "$url/_sandbox/conversations" >"$work/conversations.json"
python3 - "$work" "$small" "$cpu_before" "$cpu_after" <<'PY'
import json, sys
work, count, c0, c1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
stored = sum(1 for c in json.load(open(f"{work}/conversations.json")) if c["uploads"] == 1 and c["bytes"] == 16384)
if stored != count:
    sys.exit(f"\nbench-sandbox: {stored} of {count} small uploads stored exactly once")
print(f"; sandbox CPU {(c1 - c0) / count * 1e6:.0f} us per upload; each stored exactly once")
PY
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

for style in post put; do
    start_sandbox --upload-style "$style"
    commands=()
    for i in $(seq "$files"); do commands+=("$(upload_args "$style" "$work/files/$i.bin")"); done
    cpu_before=$(cpu_seconds)
    started=$(date +%s.%N)
    for command in "${commands[@]}"; do
        eval "curl -s -o /dev/null -w '%{http_code}\n' $command" >>"$work/codes.$style" &
    done
    wait $(jobs -p | grep -v "^$pid\$") 2>/dev/null || true
    ended=$(date +%s.%N)
    cpu_after=$(cpu_seconds)
    curl -s "$url/_sandbox/conversations" >"$work/conversations.json"
    python3 - "$style" "$started" "$ended" "$cpu_before" "$cpu_after" "$work" "$files" "$mib" <<'PY'
import json, sys
style, t0, t1, c0, c1, work, files, mib = sys.argv[1:]
seconds, total = float(t1) - float(t0), int(files) * int(mib) * 2**20
sums = sorted(line.split()[0] for line in open(f"{work}/sums"))
got = sorted(c["sha256"] or "-" for c in json.load(open(f"{work}/conversations.json")))
codes = open(f"{work}/codes.{style}").read().split()
if got != sums or any(code not in ("200", "204") for code in codes):
    sys.exit(f"bench-sandbox: {style} uploads incomplete or corrupted (answers {codes})")
print(f"{style}: {total / 1e6:.0f} MB in {seconds:.2f} s = {total / seconds / 1e6:.0f} MB/s; "
      f"sandbox CPU {float(c1) - float(c0):.2f} s = {(float(c1) - float(c0)) / (total / 1e9):.2f} CPU-s/GB; "
      f"every SHA-256 checked")
PY
    stop_sandbox
done

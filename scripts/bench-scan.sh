#!/usr/bin/env bash
# Usage: scripts/bench-scan.sh [FILES]   (default 1000000). Generates FILES empty files in a dated
# tree (YEAR/MM/DD/hhmmss_agent_direction.wav, about 2,740 a day) in a temporary folder under
# $BENCH_TMP (default /work/tmp, else /tmp), times the release binary's `scan` over it, warm (after
# one untimed run), 3 runs, and reports wall time, files/s and peak RSS (GNU time's "Maximum
# resident set size"), and for reference GNU find's time to list the same tree. The tree is
# removed at the end.
#
# Usage: scripts/bench-scan.sh --s3 [OBJECTS]   (default 20000). The same for `scan s3://...`:
# starts a SeaweedFS of its own (scripts/seaweedfs.sh) in a temporary folder, puts OBJECTS empty
# objects through its filer in Amazon Connect's layout (CallRecordings/YYYY/MM/DD/<contact
# id>_<YYYYMMDD>T<HH:MM>_UTC.wav, 200 a day), and times the release binary listing and matching
# them (3 runs after one untimed). SeaweedFS shares the machine's cores with the scan.
set -euo pipefail
cd "$(dirname "$0")/.."

# Times `$bin "${args[@]}"` three times: wall, CPU, $1 $2 a second, peak RSS.
three_runs() {
    for run in 1 2 3; do
        /usr/bin/time -v "$bin" "${args[@]}" 2> "$dir/time.txt"
        awk -F': ' -v files="$1" -v unit="$2" -v run="$run" '
            /Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
            /User time/ { user = $2 } /System time/ { sys = $2 }
            /Maximum resident set size/ { kib = $2 }
            END { printf "  run %d: %.2f s wall (%.2f s user, %.2f s system), %d %s/s, peak RSS %.1f MiB\n",
                  run, s, user, sys, files / s, unit, kib / 1024 }' "$dir/time.txt"
    done
}

if [ "${1:-}" = --s3 ]; then
    objects=${2:-20000}
    base=${BENCH_TMP:-/work/tmp}
    [ -d "$base" ] || base=/tmp
    [ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
    dir=$(mktemp -d "$base/voyc-bench-scan-s3.XXXXXX")
    trap 'scripts/seaweedfs.sh stop "$dir/weed" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
    scripts/seaweedfs.sh start "$dir/weed" >/dev/null 2>&1
    # shellcheck disable=SC1091
    . "$dir/weed/env"
    start=$(date +%s)
    python3 - "$VOYC_TEST_S3_FILER" "$objects" <<'PY'
import concurrent.futures, datetime, http.client, sys, threading, urllib.parse, uuid
filer, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
local = threading.local()
def put(i):
    day, nth = divmod(i, 200)
    date = datetime.date(2026, 1, 1) + datetime.timedelta(days=day)
    seconds = nth * 397 % 86400
    key = "connect/acme/CallRecordings/%s/%s_%sT%02d:%02d_UTC.wav" % (
        date.strftime("%Y/%m/%d"), uuid.UUID(int=i), date.strftime("%Y%m%d"),
        seconds // 3600, seconds // 60 % 60)
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(filer.hostname, filer.port)
    local.conn.request("PUT", "/buckets/voyc-bench/" + urllib.parse.quote(key), body=b"")
    answer = local.conn.getresponse()
    answer.read()
    assert answer.status < 300, answer.status
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(put, range(n), chunksize=256))
PY
    echo "put $objects empty objects into SeaweedFS in $(( $(date +%s) - start )) s"
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-target}/release/voyc-import
    pattern='{call_date:%Y/%m/%d}/{contact_id}_{*}T{call_time:%H:%M}_UTC.wav'
    args=(scan s3://voyc-bench/connect/acme/CallRecordings/ --pattern "$pattern"
        --set channel_id=42 --set agent=connect --out "$dir/manifest.csv"
        --source-endpoint "$VOYC_TEST_S3_ENDPOINT")
    "$bin" "${args[@]}" 2> /dev/null
    echo "voyc-import scan s3://voyc-bench/connect/acme/CallRecordings/ --pattern '$pattern' ($objects objects in $(( (objects + 199) / 200 )) day folders, $(nproc) cores)"
    three_runs "$objects" objects
    grep '^scanned' "$dir/time.txt" | sed 's/^/  /'
    echo "  manifest: $(wc -l < "$dir/manifest.csv") lines, $(du -h "$dir/manifest.csv" | cut -f1)"
    exit 0
fi

files=${1:-1000000}
base=${BENCH_TMP:-/work/tmp}
[ -d "$base" ] || base=/tmp
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
dir=$(mktemp -d "$base/voyc-bench-scan.XXXXXX")
trap 'rm -rf "$dir"' EXIT

start=$(date +%s)
python3 - "$dir/tree" "$files" <<'PY'
import datetime, os, sys
root, n = sys.argv[1], int(sys.argv[2])
agents = ["ann", "ben", "cara", "dev", "eli", "fay", "gus"]
directions = ["inbound", "outbound", "internal"]
per_day = 2740
day0 = datetime.date(2024, 1, 1)
folder = None
for i in range(n):
    day, nth = divmod(i, per_day)
    if nth == 0:
        folder = os.path.join(root, (day0 + datetime.timedelta(days=day)).strftime("%Y/%m/%d"))
        os.makedirs(folder)
    seconds = nth * 31 % 86400
    name = "%02d%02d%02d_%s_%s.wav" % (seconds // 3600, seconds // 60 % 60, seconds % 60,
                                        agents[nth % 7], directions[nth % 3])
    os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_WRONLY, 0o644))
PY
echo "generated $files empty files in $dir/tree in $(( $(date +%s) - start )) s"

cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/voyc-import
pattern='{call_date:%Y/%m/%d}/{call_time:%H%M%S}_{agent}_{direction}.wav'
args=(scan "$dir/tree" --pattern "$pattern" --set channel_id=42 --out "$dir/manifest.csv")
"$bin" "${args[@]}" 2> /dev/null # warm the page cache
echo "voyc-import scan TREE --pattern '$pattern' --set channel_id=42 --out manifest.csv ($files files, $(nproc) cores)"
three_runs "$files" files
grep '^scanned' "$dir/time.txt" | sed 's/^/  /'
# For reference: GNU find listing the same tree with sizes, on one core.
/usr/bin/time -f "%e s wall, peak RSS %M KiB" find "$dir/tree" -type f -printf '%s %P\n' > /dev/null 2> "$dir/find.txt" \
    || true
/usr/bin/time -f "%e s wall, peak RSS %M KiB" find "$dir/tree" -type f -printf '%s %P\n' 2> "$dir/find.txt" > /dev/null
echo "  find TREE -type f -printf '%s %P\n' (one core, warm): $(tail -n 1 "$dir/find.txt")"
echo "  manifest: $(wc -l < "$dir/manifest.csv") lines, $(du -h "$dir/manifest.csv" | cut -f1)"

#!/usr/bin/env bash
# Usage: scripts/bench-scan.sh [FILES]   (default 1000000). Generates FILES empty files in a dated
# tree (YEAR/MM/DD/hhmmss_agent_direction.wav, about 2,740 a day) in a temporary folder under
# $BENCH_TMP (default /work/tmp, else /tmp), times the release binary's `scan` over it, warm (after
# one untimed run), 3 runs, and reports wall time, files/s and peak RSS (GNU time's "Maximum
# resident set size"), and for reference GNU find's time to list the same tree. The tree is
# removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

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
for run in 1 2 3; do
    /usr/bin/time -v "$bin" "${args[@]}" 2> "$dir/time.txt"
    awk -F': ' -v files="$files" -v run="$run" '
        /Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
        /User time/ { user = $2 } /System time/ { sys = $2 }
        /Maximum resident set size/ { kib = $2 }
        END { printf "  run %d: %.2f s wall (%.2f s user, %.2f s system), %d files/s, peak RSS %.1f MiB\n",
              run, s, user, sys, files / s, kib / 1024 }' "$dir/time.txt"
done
grep '^scanned' "$dir/time.txt" | sed 's/^/  /'
# For reference: GNU find listing the same tree with sizes, on one core.
/usr/bin/time -f "%e s wall, peak RSS %M KiB" find "$dir/tree" -type f -printf '%s %P\n' > /dev/null 2> "$dir/find.txt" \
    || true
/usr/bin/time -f "%e s wall, peak RSS %M KiB" find "$dir/tree" -type f -printf '%s %P\n' 2> "$dir/find.txt" > /dev/null
echo "  find TREE -type f -printf '%s %P\n' (one core, warm): $(tail -n 1 "$dir/find.txt")"
echo "  manifest: $(wc -l < "$dir/manifest.csv") lines, $(du -h "$dir/manifest.csv" | cut -f1)"

#!/bin/sh
# Usage: scripts/cron-rehearsal.sh [VOYC_IMPORT_BINARY]   (default: $CARGO_TARGET_DIR or target, /debug/voyc-import; cargo build first)
#
# Rehearses the cron recipe of docs/operations.md as written: the script is taken from the page
# (its first ```sh block after "## Running it nightly (cron)"), not copied, and run on two
# "nights" against `voyc-import sandbox` (an external process on a free port), with its settings
# given in the environment as the recipe allows. Night 2's export lists two of night 1's
# recordings again, one of them with a corrected agent. Prints both nights' summaries and the
# state folder, then checks through /_sandbox/conversations that each recording was uploaded
# exactly once. Needs curl and python3. Exit 0 when it holds, 1 when not.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/voyc-import}
case $bin in /*) ;; *) bin=$(pwd)/$bin ;; esac
[ -x "$bin" ] || { echo "cron-rehearsal: no binary at $bin (cargo build first)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-cron-rehearsal.XXXXXX")
sandbox_pid=
cleanup() {
    [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# The recipe, exactly as the page shows it.
awk '/^## Running it nightly \(cron\)/ { section = 1 }
     section && /^```sh$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$root/docs/operations.md" >"$work/voyc-nightly"
grep -q 'voyc-import upload' "$work/voyc-nightly" ||
    { echo "cron-rehearsal: no recipe found in docs/operations.md" >&2; exit 2; }

# The recipe calls `voyc-import`: this binary, first on PATH.
mkdir -p "$work/bin" "$work/exports"
ln -s "$bin" "$work/bin/voyc-import"
cp -R "$root/samples/calls" "$work/exports/calls"
header=$(head -n 1 "$root/samples/manifest.csv")
# Night 1: recordings 1-4. Night 2: 3 (agent corrected) and 4 (as it was) again, and 5-7.
{ echo "$header"; sed -n '2,5p' "$root/samples/manifest.csv"; } >"$work/exports/calls-2026-12-01.csv"
{ echo "$header"; sed -n '4p' "$root/samples/manifest.csv" | sed 's/Ben Okafor/Ben Okafor-Reid/'
  sed -n '5,8p' "$root/samples/manifest.csv"; } >"$work/exports/calls-2026-12-02.csv"
printf 'sandbox-token\n' >"$work/token"

"$bin" sandbox --listen 127.0.0.1:0 >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
tries=0
until [ -s "$work/sandbox.out" ]; do
    tries=$((tries + 1))
    [ $tries -lt 100 ] || { echo "cron-rehearsal: the sandbox did not start" >&2; cat "$work/sandbox.err" >&2; exit 2; }
    sleep 0.1
done
url=$(head -n 1 "$work/sandbox.out")
echo "sandbox at $url; recipe from docs/operations.md in $work/voyc-nightly"

for day in 2026-12-01 2026-12-02; do
    PATH="$work/bin:$PATH" DAY=$day EXPORTS="$work/exports" LOGS="$work/logs" \
        VOYC_STATE_DIR="$work/state" TOKEN_FILE="$work/token" VOYC_BASE_URL="$url" \
        VOYC_ORG_ID=118 sh "$work/voyc-nightly"
    echo "night $day: $(tail -n 1 "$work/logs/cron.log")"
    python3 -c '
import csv, sys
for row in csv.DictReader(open(sys.argv[1], newline="")):
    notes = "  (%s)" % row["notes"] if row["notes"] else ""
    print("    %s %s: %s %s%s" % (row["line"], row["file"], row["status"], row["conversation_id"], notes))
' "$work/logs/$day.report.csv"
done
echo "state folder ($work/state):"
ls -l "$work/state" | sed 's/^/    /'

curl -fsS "$url/_sandbox/conversations" | python3 -c '
import collections, json, sys
conversations = json.load(sys.stdin)
uploads = collections.Counter(c["sha256"] for c in conversations if c["uploaded"])
twice = {sha: n for sha, n in uploads.items() if n > 1}
without = sum(1 for c in conversations if not c["uploaded"])
print(f"sandbox: {len(conversations)} conversations, {len(uploads)} recordings uploaded, "
      f"{without} without audio, {len(twice)} uploaded more than once")
sys.exit(0 if len(uploads) == 7 and not twice and len(conversations) == 7 else 1)
' && echo "cron-rehearsal: each recording uploaded exactly once" || {
    echo "cron-rehearsal: FAILED: a recording is missing or was uploaded twice" >&2
    exit 1
}

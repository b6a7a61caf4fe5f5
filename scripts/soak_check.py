#!/usr/bin/env python3
"""Usage: scripts/soak_check.py --label L --url SANDBOX_URL --org ORG --corpus DIR --report CSV
       --journal PATH [--kills-file JSONL] [--kills N] [--runs N] [--seconds S]

Checks a finished soak or kill -9 torture of `voyc-import upload` against what the sandbox
holds (GET /_sandbox/conversations and /_sandbox/stats), the final report and the journal
(SQLite), and prints one line of figures. Exits 1 if a guarantee did not hold:

- every manifest row's audio is in exactly one conversation, with the row's bytes and SHA-256
  (a row with none is lost; one whose audio is in two conversations, or a conversation holding
  other bytes, is a double upload);
- the report has every row once, in order, uploaded, with that conversation, size and SHA-256,
  and the journal says the same;
- every conversation without audio is accounted for by the journal: its id in `conversations`
  (a renewed target), or an `unknown_conversations` line for its row (an ambiguous call 1, an
  unusable answer, a run stopped during call 1); a soak without kills also checks them against
  the report's notes;
- a second upload to the same conversation (the same key, the same bytes) happens only to a row
  whose upload was under way when the importer was killed (no client can tell whether S3 stored
  a file it sent just before dying); without kills there is none.
"""

import argparse
import collections
import csv
import json
import sqlite3
import sys
import urllib.request


def get(url: str):
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def human_bytes(n: int) -> str:
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return str(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--kills-file")
    parser.add_argument("--kills", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--concurrency", default="?")
    parser.add_argument(
        "--allow-doubles-after-kills",
        action="store_true",
        help="a row killed mid-upload whose target expired before the rerun may be in two "
        "conversations (targets shorter-lived than a restart); count those, do not fail on them",
    )
    args = parser.parse_args()
    problems = []

    def problem(text: str) -> None:
        if len(problems) < 20:
            print(f"{args.label}: FAIL: {text}", file=sys.stderr)
        problems.append(text)

    with open(f"{args.corpus}/expected.csv", newline="") as f:
        expected = [dict(r) for r in csv.DictReader(f)]
    by_row = {int(e["row"]): e for e in expected}
    conversations = get(f"{args.url}/_sandbox/conversations")
    stats = get(f"{args.url}/_sandbox/stats")

    # The sandbox: each row's conversations, with and without audio.
    holders = collections.defaultdict(list)
    orphans = []
    for c in conversations:
        row = int(c["metadata"]["soak_row"])
        if row not in by_row:
            problem(f"conversation {c['conversation_id']} belongs to no manifest row ({row})")
            continue
        if str(c["organisation_id"]) != args.org:
            problem(f"conversation {c['conversation_id']} went to organisation {c['organisation_id']}")
        if c["uploaded"]:
            holders[row].append(c)
        else:
            orphans.append((row, c))
    lost = double = resent = 0
    resent_rows = []
    doubled_rows = []
    for row, e in by_row.items():
        held = holders.get(row, [])
        if not held:
            lost += 1
            problem(f"row {row} ({e['file']}): no conversation holds its audio")
            continue
        for c in held:
            if c["sha256"] != e["sha256"] or int(c["bytes"]) != int(e["bytes"]):
                double += 1
                problem(f"row {row}: conversation {c['conversation_id']} holds other bytes")
            if c["uploads"] > 1:
                resent += c["uploads"] - 1
                resent_rows.append(row)
        if len(held) > 1:
            double += len(held) - 1
            doubled_rows.append(row)

    # The report: every row once, in manifest order, with what the sandbox holds.
    with open(args.report, newline="") as f:
        report = list(csv.DictReader(f))
    if len(report) != len(expected):
        problem(f"the report has {len(report)} rows, the manifest {len(expected)}")
    statuses = collections.Counter(r["status"] for r in report)
    for r, e in zip(report, expected):
        row = int(e["row"])
        held_ids = [str(c["conversation_id"]) for c in holders.get(row, [])]
        want = r["conversation_id"] if r["conversation_id"] in held_ids else held_ids
        if r["line"] != e["line"] or r["file"] != e["file"]:
            problem(f"report line {r['line']} {r['file']}: expected line {e['line']} {e['file']}")
        elif r["status"] not in ("uploaded", "already_uploaded"):
            problem(f"report line {r['line']}: status {r['status']}: {r['error']}")
        elif (r["conversation_id"], r["sha256"], r["bytes"]) != (want, e["sha256"], e["bytes"]):
            problem(f"report line {r['line']}: {r['conversation_id']} {r['sha256']} {r['bytes']} "
                    f"is not what the sandbox holds ({want})")

    # The journal: every row uploaded, with the same conversation, size and SHA-256.
    journal = sqlite3.connect(f"file:{args.journal}?mode=ro", uri=True)
    destination = journal.execute(
        "SELECT id FROM destinations WHERE base_url = ? AND organisation = ?",
        (args.url.rstrip("/"), args.org),
    ).fetchone()[0]
    states = collections.Counter()
    identity_of = {}
    for file, line, state, conversation, size, sha, identity in journal.execute(
        "SELECT file, line, state, conversation_id, bytes, sha256, identity FROM rows WHERE destination = ?",
        (destination,),
    ):
        states[state] += 1
        row = int(line) - 2
        identity_of[identity] = row
        e = by_row.get(row)
        held_ids = [str(c["conversation_id"]) for c in holders.get(row, [])]
        if e is None or e["file"] != file:
            problem(f"journal row {file} line {line} is not in the manifest")
        elif state != "uploaded" or conversation not in held_ids \
                or sha != e["sha256"] or str(size) != e["bytes"]:
            problem(f"journal row {file}: {state} {conversation} {sha} does not match the sandbox")
    if sum(states.values()) != len(expected):
        problem(f"the journal has {sum(states.values())} rows, the manifest {len(expected)}")
    known = {
        c for (c,) in journal.execute(
            "SELECT conversation_id FROM conversations WHERE destination = ?", (destination,)
        )
    }
    unknown = collections.Counter()
    for (identity,) in journal.execute(
        "SELECT identity FROM unknown_conversations WHERE destination = ?", (destination,)
    ):
        unknown[identity_of.get(identity)] += 1

    # Conversations without audio: each accounted for by the journal.
    renewed = by_unknown = unexplained = 0
    spare = dict(unknown)
    for row, c in orphans:
        if str(c["conversation_id"]) in known:
            renewed += 1
        elif spare.get(row, 0) > 0:
            spare[row] -= 1
            by_unknown += 1
        else:
            unexplained += 1
            problem(f"row {row}: conversation {c['conversation_id']} has no audio and nothing explains it")
    if args.kills == 0 and args.runs == 1:
        # One run without kills: its report's notes must own up to them as well.
        noted = sum(
            r["notes"].count("keeps no audio")
            + (1 if "retried after an ambiguous failure" in r["notes"] else 0)
            + sum(int(n) for n in _counts_after(r["notes"], "retried after ", " ambiguous failures"))
            + r["notes"].count("failed after it was sent")
            + r["notes"].count("answer could not be used")
            for r in report
        )
        if noted < len(orphans):
            problem(f"{len(orphans)} conversations without audio, the report's notes explain {noted}")

    # Second uploads to the same conversation: only where a kill caught the upload under way.
    uploading_at_a_kill = collections.Counter()
    snapshots = []
    if args.kills_file:
        with open(args.kills_file) as f:
            snapshots = [json.loads(line) for line in f if line.strip()]
        for snapshot in snapshots:
            for identity in snapshot["call1_done"]:
                uploading_at_a_kill[identity_of.get(identity)] += 1
    resent_explained = 0
    for row in resent_rows:
        if uploading_at_a_kill.get(row, 0) > 0:
            resent_explained += 1
        else:
            problem(f"row {row}: uploaded twice to its conversation, and no kill caught its upload")
    started_at_kills = sum(len(s["call1_started"]) for s in snapshots)
    # Audio in two conversations: only where a kill caught the upload to the first one and its
    # target expired before the rerun (the window docs/journal.md describes), and only when allowed.
    doubles_after_kills = 0
    for row in doubled_rows:
        ids = [str(c["conversation_id"]) for c in holders[row]]
        caught = uploading_at_a_kill.get(row, 0) > 0 and all(i in known for i in ids)
        if caught:
            doubles_after_kills += len(ids) - 1
        if not (caught and args.allow_doubles_after_kills):
            problem(f"row {row}: audio in {len(ids)} conversations: {', '.join(ids)}"
                    + (" (a kill caught its upload and the target expired)" if caught else ""))

    faults = stats["faults"]
    total_bytes = sum(int(e["bytes"]) for e in expected)
    sizes = sorted(int(e["bytes"]) for e in expected)
    minutes, seconds = divmod(int(args.seconds), 60)
    print(
        f"{args.label}: {len(expected):,} files ({human_bytes(total_bytes)}, "
        f"{human_bytes(sizes[0])}–{human_bytes(sizes[-1])}), concurrency {args.concurrency}, "
        f"{args.runs} run{'s' if args.runs != 1 else ''} in {minutes}m{seconds:02}s; "
        f"faults injected: fail {faults['fail']}, ambiguous {faults['ambiguous']}, "
        f"throttle {faults['throttle']}, s3_fail {faults['s3_fail']}, s3_drop {faults['s3_drop']}; "
        f"api requests {stats['api_requests']}, s3 requests {stats['s3_requests']}; "
        f"kills survived {args.kills}; rows lost {lost}; double uploads {double}"
        f"{f' ({doubles_after_kills} after a kill whose target expired before the rerun)' if double else ''}; "
        f"same-target re-sends {resent} on {len(resent_rows)} rows ({resent_explained} caught uploading by a kill); "
        f"orphan conversations {len(orphans)} (explained {renewed + by_unknown} / unexplained {unexplained}: "
        f"{renewed} renewed targets, {by_unknown} unknown ids; {started_at_kills} rows in call 1 at the kills); "
        f"report {statuses.get('uploaded', 0)} uploaded + {statuses.get('already_uploaded', 0)} already uploaded"
    )
    return 1 if problems else 0


def _counts_after(text: str, before: str, after: str):
    """The numbers in `before N after` phrases of a note."""
    at = 0
    while True:
        at = text.find(before, at)
        if at < 0:
            return
        at += len(before)
        word = text[at:].split(" ", 1)[0]
        if word.isdigit() and text[at + len(word):].startswith(after):
            yield int(word)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Usage: scripts/soak_gen.py DIR --files N [--min BYTES] [--max BYTES] [--seed S]

Writes the soak's corpus: N WAV files under DIR/calls/ whose sizes are log-uniform between
--min and --max and whose audio is random bytes (nothing compresses or repeats), the manifest
DIR/manifest.csv listing them (a `soak_row` column ties each conversation back to its row),
and DIR/expected.csv with each row's line, file, size and SHA-256, for scripts/soak_check.py.
"""

import argparse
import csv
import hashlib
import math
import os
import random

# scripts/ is on the path when this runs as scripts/soak_gen.py.
from gen_corpus import wav_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--min", type=int, default=1 << 10)
    parser.add_argument("--max", type=int, default=8 << 20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    calls = os.path.join(args.dir, "calls")
    os.makedirs(calls, exist_ok=True)
    total = 0
    with open(os.path.join(args.dir, "manifest.csv"), "w", newline="") as manifest_file, open(
        os.path.join(args.dir, "expected.csv"), "w", newline=""
    ) as expected_file:
        manifest = csv.writer(manifest_file, lineterminator="\n")
        expected = csv.writer(expected_file, lineterminator="\n")
        manifest.writerow(["file", "channel_id", "call_date", "call_time", "agent", "direction", "soak_row"])
        expected.writerow(["row", "line", "file", "bytes", "sha256"])
        low, high = math.log(args.min), math.log(args.max)
        for row in range(args.files):
            size = max(64, int(math.exp(rng.uniform(low, high))))
            name = f"calls/{row // 1000:03}/{row:06}.wav"
            os.makedirs(os.path.join(args.dir, os.path.dirname(name)), exist_ok=True)
            body = wav_header(size - 44) + os.urandom(size - 44)
            with open(os.path.join(args.dir, name), "wb") as audio:
                audio.write(body)
            total += size
            day = 1 + row % 28
            manifest.writerow(
                [
                    name,
                    f"line-{row % 7}",
                    f"2024-{1 + row % 12:02}-{day:02}",
                    f"{row % 24:02}:{row % 60:02}:{(row * 7) % 60:02}",
                    f"Agent {row % 97}",
                    ["inbound", "outbound", "internal"][row % 3],
                    row,
                ]
            )
            expected.writerow([row, row + 2, name, size, hashlib.sha256(body).hexdigest()])
    print(f"{args.files} files, {total} bytes")


if __name__ == "__main__":
    main()

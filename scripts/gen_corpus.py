#!/usr/bin/env python3
"""Usage: scripts/gen_corpus.py DIR [--rows N] [--bytes B]

Writes a benchmark corpus: N valid, all-different WAV files (8 kHz mono, B bytes of audio
each) under DIR/calls/, and DIR/manifest.csv and DIR/manifest.jsonl listing them (the same
rows) with realistic metadata, every date in the past. Files up to 1 MiB share one block of
seeded noise behind a unique prefix; larger ones are written in chunks of fresh random bytes
(real bytes, never sparse), so memory stays flat. Reused by the validate and upload benchmarks.
"""

import argparse
import json
import os
import random
import struct

# Audio larger than this is streamed from os.urandom instead of repeating one block of noise.
BLOCK = 1 << 20


def wav_header(size: int) -> bytes:
    """The header of a 16-bit, 8 kHz, mono PCM WAV holding `size` bytes of audio."""
    rate, bits, channels = 8000, 16, 1
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
    header += b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits
    )
    return header + b"data" + struct.pack("<I", size)


def write_audio(path: str, row: int, size: int, noise: bytes) -> None:
    """A WAV of `size` audio bytes whose content (and hash) is unique to `row`."""
    with open(path, "wb") as audio:
        audio.write(wav_header(size))
        # The row number in the first bytes makes every file's content unique.
        prefix = struct.pack("<Q", row)[: size]
        if size <= BLOCK:
            audio.write(prefix + noise[len(prefix) : size])
            return
        audio.write(prefix)
        left = size - len(prefix)
        while left > 0:
            chunk = os.urandom(min(left, BLOCK))
            audio.write(chunk)
            left -= len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bytes", type=int, default=1024, help="audio bytes per file")
    args = parser.parse_args()

    rng = random.Random(42)
    agents = ["Ann Lee", "Ben Okafor", "Cara Diaz", "Dan Moss", "Eve Novak", "Fay Chen"]
    teams = ["north", "south", "east", "west"]
    directions = ["inbound", "outbound", "internal"]
    noise = rng.randbytes(min(args.bytes, BLOCK))
    columns = [
        "file", "channel_id", "call_date", "call_time", "agent", "direction",
        "language", "speakers", "team", "crm_ticket", "notes",
    ]

    os.makedirs(os.path.join(args.dir, "calls"), exist_ok=True)
    with open(os.path.join(args.dir, "manifest.csv"), "w", newline="") as csv, open(
        os.path.join(args.dir, "manifest.jsonl"), "w"
    ) as jsonl:
        csv.write(",".join(columns) + "\n")
        for i in range(args.rows):
            folder = f"calls/{i // 1000:04d}"
            if i % 1000 == 0:
                os.makedirs(os.path.join(args.dir, folder), exist_ok=True)
            file = f"{folder}/{i:07d}.wav"
            write_audio(os.path.join(args.dir, file), i, args.bytes, noise)
            day = 1 + i % 28
            row = [
                file,
                f"line-{i % 17}",
                f"2025-{1 + i % 12:02d}-{day:02d}",
                f"{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}",
                agents[i % len(agents)],
                directions[i % len(directions)],
                "en",
                str(2 + i % 3),
                teams[i % len(teams)],
                f"T-{100000 + i}",
                "follow-up, priority" if i % 5 == 0 else "",
            ]
            csv.write(",".join(f'"{v}"' if "," in v else v for v in row) + "\n")
            record = dict(zip(columns, row))
            record["speakers"] = int(record["speakers"])
            record["crm"] = {"ticket": record.pop("crm_ticket"), "priority": 1 + i % 3}
            jsonl.write(json.dumps(record) + "\n")
    print(f"{args.rows} files, manifest.csv and manifest.jsonl written to {args.dir}")


if __name__ == "__main__":
    main()

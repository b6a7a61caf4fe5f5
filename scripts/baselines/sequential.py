#!/usr/bin/env python3
"""Usage: VOYC_TOKEN=... scripts/baselines/sequential.py MANIFEST.csv --base-url URL --org ORG

Contender (a) of scripts/bench.sh: the script a Voyc user writes from Voyc's own upload
document (../shared/voyc-upload-api.txt): one `requests.Session` for call 1, then the file to
S3 with `requests.post(url, data=fields, files=...)` (or `requests.put` for a presigned PUT),
one row after the other. No validation, retries, journal or report beyond a CSV of ids.
"""

import argparse
import csv
import os
import sys

import requests


def rows(manifest):
    """(audio path, metadata) for each manifest row; empty cells are left out."""
    folder = os.path.dirname(os.path.abspath(manifest))
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            path = os.path.join(folder, row.pop("file"))
            yield path, {key: value for key, value in row.items() if value != ""}


def session(token):
    s = requests.Session()
    s.headers.update({"Content-type": "application/json", "Authorization": f"Bearer {token}"})
    return s


def upload(s, call1_url, path, metadata):
    """Call 1, then the upload; returns the conversation id."""
    answer = s.post(call1_url, json=metadata)
    answer.raise_for_status()
    answer = answer.json()
    if "upload" in answer:  # presigned POST: send the fields, then the file
        target = answer["upload"]
        with open(path, "rb") as audio:
            sent = requests.post(target["url"], data=target["fields"], files={"file": audio})
    else:  # presigned PUT
        with open(path, "rb") as audio:
            sent = requests.put(answer["upload_url"], data=audio)
    sent.raise_for_status()
    return answer["conversation_id"]


def parser(doc=__doc__):
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--base-url", required=True)
    p.add_argument("--org", required=True)
    p.add_argument("--out", default="ids.csv", help="where to write file,conversation_id")
    return p


def call1_url(args):
    return f"{args.base_url.rstrip('/')}/api/v2/workspace/{args.org}/conversation/upload_data/"


def main():
    args = parser().parse_args()
    s = session(os.environ["VOYC_TOKEN"])
    url = call1_url(args)
    with open(args.out, "w", newline="") as out:
        ids = csv.writer(out)
        for path, metadata in rows(args.manifest):
            ids.writerow([path, upload(s, url, path, metadata)])


if __name__ == "__main__":
    sys.exit(main())

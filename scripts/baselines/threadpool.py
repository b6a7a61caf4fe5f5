#!/usr/bin/env python3
"""Usage: VOYC_TOKEN=... scripts/baselines/threadpool.py MANIFEST.csv --base-url URL --org ORG --concurrency N

Contender (b) of scripts/bench.sh: the sequential script's obvious improvement, the same
`upload` for each row run by a `concurrent.futures.ThreadPoolExecutor` of N threads sharing
one `requests.Session` (its connection pool widened to N, as a careful user would).
"""

import csv
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sequential import call1_url, parser, rows, session, upload  # noqa: E402


def main():
    p = parser(__doc__)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    concurrency = args.concurrency
    s = session(os.environ["VOYC_TOKEN"])
    s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))
    s.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))
    url = call1_url(args)
    with ThreadPoolExecutor(max_workers=concurrency) as pool, open(args.out, "w", newline="") as out:
        ids = csv.writer(out)
        jobs = [(path, pool.submit(upload, s, url, path, metadata)) for path, metadata in rows(args.manifest)]
        for path, job in jobs:
            ids.writerow([path, job.result()])


if __name__ == "__main__":
    sys.exit(main())

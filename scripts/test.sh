#!/usr/bin/env bash
# Usage: scripts/test.sh
# The whole test suite, the real-store tests included: installs SeaweedFS, fake-gcs-server and
# Azurite (pinned, into .cache/, once), starts them on loopback with free ports in a temporary
# folder, runs `cargo test`, then the real-store tests (ignored by plain `cargo test`) against
# them: real_s3:: (SeaweedFS), real_gcs:: (fake-gcs-server as the gs:// source) and real_azure::
# (Azurite as the az:// source; both upload to SeaweedFS). Always stops them. Exits with cargo's
# status. Needs python3 with venv (Debian: apt-get install python3-venv); without npm (Node.js) the
# real_azure:: tests are skipped, with a message that says so.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/voyc-stores.XXXXXX") || exit 1
cleanup() {
    scripts/seaweedfs.sh stop "$work/seaweedfs"
    scripts/fake-gcs.sh stop "$work/fake-gcs"
    scripts/azurite.sh stop "$work/azurite"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/seaweedfs.sh start "$work/seaweedfs" || exit 1
scripts/fake-gcs.sh start "$work/fake-gcs" || exit 1
# shellcheck disable=SC1091
. "$work/seaweedfs/env"
# shellcheck disable=SC1091
. "$work/fake-gcs/env"
# Azurite needs Node.js's npm; a machine with only Rust and Python skips its tests, loudly (CI
# installs npm, so they run there).
stores=(real_s3:: real_gcs::)
if command -v npm >/dev/null; then
    scripts/azurite.sh start "$work/azurite" || exit 1
    # shellcheck disable=SC1091
    . "$work/azurite/env"
    stores+=(real_azure::)
    azurite="Azurite $VOYC_TEST_AZURITE_VERSION at $VOYC_TEST_AZURITE_ENDPOINT"
else
    azurite="no Azurite: npm is not installed, so the real_azure:: tests are SKIPPED (apt-get install npm)"
fi

cargo test
status=$?
echo "== real-store tests: SeaweedFS $VOYC_TEST_SEAWEEDFS_VERSION at $VOYC_TEST_S3_ENDPOINT, fake-gcs-server (PyPI wrapper $VOYC_TEST_FAKE_GCS_VERSION) at $VOYC_TEST_GCS_ENDPOINT, $azurite"
cargo test --test cli -- --ignored "${stores[@]}"
real_status=$?
[ "$status" -ne 0 ] || status=$real_status
exit "$status"

#!/usr/bin/env bash
# Sets up what the tests need (system packages, build) and runs the whole test suite in
# release mode (numeric code is 10-50x slower in debug builds). No Python is needed: the
# PyTorch parity data is committed under Tests/SubspaceTests/Fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-data
swift build -c release --build-tests -Xswiftc -enable-testing 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
swift test -c release -Xswiftc -enable-testing --skip-build

#!/usr/bin/env bash
# Runs the decode_message fuzz target for a bounded time.
# Usage: bgp/fuzz/run.sh [SECONDS]   (default 60)
# Exits non-zero if libFuzzer finds a crash; the reproducer is left in
# bgp/fuzz/artifacts/decode_message/.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2
    exit 2
fi
mkdir -p corpus/decode_message
# Seed the corpus with valid messages so the fuzzer starts past the header.
if [ -d seeds ]; then
    cp -n seeds/* corpus/decode_message/ 2>/dev/null || true
fi
exec cargo +nightly fuzz run decode_message corpus/decode_message -- \
    -max_total_time="${seconds}" -max_len=4200 -timeout=10

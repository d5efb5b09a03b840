#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time in all, split between them:
# decode_message (whole messages under several negotiated contexts) and
# split_stream (the TCP reader's framing over chunked byte streams).
# Usage: bgp/fuzz/run.sh [SECONDS]   (default 60)
# Exits non-zero if libFuzzer finds a crash; the reproducer is left in
# bgp/fuzz/artifacts/<target>/.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2
    exit 2
fi
split_seconds=$((seconds / 3))
((split_seconds > 0)) || split_seconds=1
decode_seconds=$((seconds - split_seconds))
((decode_seconds > 0)) || decode_seconds=1
run() { # TARGET SECONDS
    mkdir -p "corpus/$1"
    # Seed the corpus with valid messages so the fuzzer starts past the header.
    if [ -d seeds ]; then
        cp -n seeds/* "corpus/$1/" 2>/dev/null || true
    fi
    cargo +nightly fuzz run "$1" "corpus/$1" -- \
        -max_total_time="$2" -max_len=4200 -timeout=10
}
run decode_message "${decode_seconds}"
run split_stream "${split_seconds}"

#!/usr/bin/env bash
# Durable trail appends: events/s and p50/p99 append latency with 1 and 8 appenders.
# TRAIL_BENCH_DIR=/some/dir measures on that filesystem (default: the temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -p kmsd --test trail_bench -- --ignored --nocapture bench_append

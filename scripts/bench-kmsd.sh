#!/usr/bin/env bash
# Benchmarks kmsd: GenerateDataKey and Decrypt ops/s and p50/p99 latency with 1
# and 8 concurrent clients, against a release kmsd on a throwaway home.
# Usage: scripts/bench-kmsd.sh [SECONDS_PER_RUN] (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-3}"
cargo build --release -p kmsd --bins >&2
HOME_DIR="$(mktemp -d)"
RUST_LOG=warn target/release/kmsd --home "$HOME_DIR" 2>"$HOME_DIR/kmsd.log" &
KMSD_PID=$!
cleanup() { kill "$KMSD_PID" 2>/dev/null || true; wait "$KMSD_PID" 2>/dev/null || true; rm -rf "$HOME_DIR"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$HOME_DIR/kmsd.sock" ] && break; sleep 0.05; done
echo "kmsd $(target/release/kmsd --version | cut -d' ' -f2), $(nproc) CPUs, ${SECONDS_PER_RUN}s per run"
target/release/kmsd-bench --socket "$HOME_DIR/kmsd.sock" --seconds "$SECONDS_PER_RUN" --clients 1,8

#!/usr/bin/env bash
# EC2 over the AWS endpoint, issue 14's figure: start -> running -> the guest's console
# line for one stopped instance, started by the stock `aws` CLI over the endpoint
# (`aws ec2 start-instances`, `aws ec2 describe-instances --query
# Reservations[0].Instances[0].State.Name` every 100 ms until `running`, as `aws ec2 wait
# instance-running` polls but without its 15 s default delay, then `aws ec2
# get-console-output` polled) and by `atrest ec2` doing the same commands, next to qemu
# alone booting the same root image; interleaved rounds, medians, the ratio of the two
# paths. It also prints where the aws path's time goes: how many client invocations each
# path made, and one trivial DescribeInstances through each CLI (wall time) beside the
# endpoint's own service time for it (its debug log: signature and decoding, the
# ec2.sock call, the XML), so the client's fixed cost per invocation is told from ours;
# and the endpoint's service time per request over many DescribeVolumes in a row from one
# boto3 client (ATREST_BENCH_CALLS, default 200).
#
#   scripts/bench-ec2.sh [RUNS]      (default 5 of each)
#
# Environment: ATREST_GUEST_DIR (guest cache, default target/tmp/guest, as the tests),
# ATREST_VENV (the project venv, scripts/lib/venv.sh), ATREST_BENCH_MAX_RATIO (default
# 1.1). Exits non-zero if the target is missed. Prints one "BENCH {...}" JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/venv.sh
export ATREST_GUEST_DIR="${ATREST_GUEST_DIR:-$PWD/target/tmp/guest}"
export ATREST_BENCH_RUNS="${1:-5}"
scripts/make-guest.sh "$ATREST_GUEST_DIR" >/dev/null
echo "bench-ec2: host load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
cargo test --release -p atrest --test endpoint_ec2 -- --ignored --nocapture --test-threads=1 \
	bench_start_running_console bench_ec2_request_service_time 2>&1 |
	grep -E "(^|\.\.\. )(run |one DescribeInstances|EC2 request service time|aws path|qemu alone|atrest ec2|aws ec2|ratio|BENCH|thread|test result)" || {
	echo "bench-ec2: benchmark failed" >&2
	exit 1
}

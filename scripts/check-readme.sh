#!/usr/bin/env bash
# Keeps README.md honest:
#  1. every ```sh block runs for real, in order, in a fresh state directory, and shows
#     what the README says it shows (`shows` below);
#  2. every script the README names exists and is executable, and its --help works;
#  3. every `atrest SERVICE VERB` the README names is a real verb (`--help` succeeds).
# The two set-up commands (```text at the top) are what scripts/test.sh itself and the
# lab demo run, so they are exercised by the suite that calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin="${ATREST_BIN_DIR:-$repo/target/debug}"
export PATH="$bin:$PATH"
fail=0
# The README's `atrest up` must not depend on port 4566 being free.
export ATREST_LISTEN=127.0.0.1:0
problem() { echo "check-readme: $*" >&2; fail=1; }

# What a block's output must hold, as the README tells it: "TEXT IN THE BLOCK|OUTPUT LINE
# (a grep -E pattern)", for each block containing that text.
shows=(
  'aws s3 mb s3://my-aws-bucket|^make_bucket: my-aws-bucket$'
  'aws s3 mb s3://my-aws-bucket|^[0-9-]+ [0-9:]+ +6 hello.txt$'
  'aws s3 mb s3://my-aws-bucket|^1 keys$'
  'aws s3 mb s3://my-aws-bucket|"eventName":"Encrypt".*"userAgent":"aws-cli/'
  'alias/MyKMSKey|^[0-9a-f-]{36}[[:space:]]+Enabled[[:space:]]+CUSTOMER$'
  'alias/MyKMSKey|^aws:kms[[:space:]]+arn:aws:kms:[^ ]*:key/[0-9a-f-]{36}$'
  'alias/MyKMSKey|^\|  GenerateDataKey *\|  [a-z_][a-z0-9_-]* *\|  arn:aws:kms:'
  'alias/MyKMSKey|^\|  Decrypt *\|  [a-z_][a-z0-9_-]* *\|  arn:aws:kms:'
  'atrest attach --loop|^\|  Decrypt *\|  local *\|  arn:aws:kms:'
  'atrest attach --loop|"State": "available"'
)

# 1. runnable blocks
blocks=$(mktemp -d)
python3 - "$blocks" <<'PY'
import re, sys, pathlib
text = pathlib.Path("README.md").read_text()
for i, m in enumerate(re.finditer(r"^```sh\n(.*?)^```", text, re.S | re.M)):
    pathlib.Path(sys.argv[1], f"{i:02d}.sh").write_text(m.group(1))
PY
for b in "$blocks"/*.sh; do
  [ -e "$b" ] || continue
  echo "--- README block $(basename "$b")"
  cat "$b"
  home=$(mktemp -d /tmp/atrest-readme.XXXXXX)
  out="$home.out"
  if ! ATREST_HOME="$home" bash -euo pipefail "$b" 2>&1 | tee "$out"; then
    problem "README block $(basename "$b") failed"
  fi
  for s in "${shows[@]}"; do
    grep -qF -- "${s%%|*}" "$b" || continue
    want=${s#*|}
    grep -qE -- "$want" "$out" || problem "README block $(basename "$b") does not show /$want/"
  done
  rm -f "$out"
  ATREST_HOME="$home" atrest down >/dev/null 2>&1 || true
  rm -rf "$home"
done
rm -rf "$blocks"

# 2. scripts named in the README
for s in $(grep -o 'scripts/[a-z0-9-]*\.sh' README.md | sort -u); do
  [ -x "$s" ] || problem "$s is named in the README but is not an executable file"
  bash -n "$s" || problem "$s does not parse"
done

# 3. CLI verbs named in the README (the reference table and the examples)
python3 - <<'PY' >/tmp/atrest-readme-verbs.$$
import re, pathlib
text = pathlib.Path("README.md").read_text()
seen = set()
for line in text.splitlines():
    m = re.match(r"\|\s*`atrest (kms|ec2|s3api|s3|cloudtrail)`\s*\|(.*)\|", line)
    if m:
        for verb in re.findall(r"`([a-z][a-z0-9-]*)`", m.group(2)):
            seen.add((m.group(1), verb))
    for svc, verb in re.findall(r"atrest (kms|ec2|s3api|s3|cloudtrail) ([a-z][a-z0-9-]+)", line):
        seen.add((svc, verb))
    for verb in re.findall(r"`atrest (up|down|status|mount|attach|detach)\b", line):
        seen.add(("-", verb))
for svc, verb in sorted(seen):
    print(svc, verb)
PY
while read -r svc verb; do
  if [ "$svc" != - ]; then args=("$svc" "$verb"); else args=("$verb"); fi
  atrest "${args[@]}" --help >/dev/null 2>&1 || problem "'atrest ${args[*]}' is in the README but is not a verb"
done </tmp/atrest-readme-verbs.$$
rm -f /tmp/atrest-readme-verbs.$$

[ "$fail" = 0 ] && echo "check-readme: README blocks ran, every script and verb it names exists"
exit "$fail"

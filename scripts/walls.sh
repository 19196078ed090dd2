#!/usr/bin/env bash
# The architecture's walls (docs: README "Layout", /work GUIDE "Walls"), checked over `use`
# lines and paths in the sources. Exits non-zero naming every breach.
#
# - kmsd never depends on atrest (kmsd/Cargo.toml);
# - src/volume and src/mount never import kmsd; the mount never imports the object store;
# - src/ uses kmsd only through kmsd::client, kmsd::protocol, kmsd::api and
#   kmsd::trail::reader. KNOWN_DEBTS lists the breaches left today (issue 19: identity
#   through the protocol, configuration out of kmsd's internals); a new one fails, and a
#   listed one that is gone must be deleted from the list (so the list only shrinks);
# - the pure cores (kmsd's policy, the volume format and XTS math, the snapshot manifest)
#   do no file, socket or process I/O.
set -uo pipefail
cd "$(dirname "$0")/.."
bad=0
breach() { echo "wall breached: $*" >&2; bad=1; }

if grep -nE '^\s*atrest\s*=' kmsd/Cargo.toml; then breach "kmsd depends on atrest"; fi

hits=$(grep -rnE '\bkmsd::|use kmsd\b' src/volume src/mount || true)
[ -n "$hits" ] && breach "src/volume or src/mount imports kmsd:"$'\n'"$hits"
hits=$(grep -rnE '\bcrate::s3\b|\bsuper::super::s3\b|\batrest::s3\b' src/mount || true)
[ -n "$hits" ] && breach "src/mount imports the object store:"$'\n'"$hits"

# file:module pairs of kmsd internals src/ still uses (issue 19, to be removed).
KNOWN_DEBTS='src/cli/kms.rs:kmsd::policy
src/cli/serve.rs:kmsd::config
src/ec2/daemon.rs:kmsd::config
src/ec2/kms.rs:kmsd::config
src/ec2/kms.rs:kmsd::service
src/endpoint/mod.rs:kmsd::config'
found=$(grep -rnoE '\bkmsd::[a-z_]+(::[a-z_]+)?' src |
  grep -vE ':kmsd::(client|protocol|api|trail::reader)\b' |
  sed -E 's/^([^:]+):[0-9]+:(kmsd::[a-z_]+).*/\1:\2/' | sort -u)
while IFS= read -r f; do
  [ -z "$f" ] && continue
  grep -qxF "$f" <<<"$KNOWN_DEBTS" || breach "src/ uses a kmsd internal: $f"
done <<<"$found"
while IFS= read -r d; do
  grep -qxF "$d" <<<"$found" || breach "gone from the code, delete from KNOWN_DEBTS: $d"
done <<<"$KNOWN_DEBTS"

pure=(kmsd/src/policy src/volume/format.rs src/volume/xts src/volume/snapshot/manifest.rs)
hits=$(grep -rnE 'std::(fs|net|process)\b|\b(File|OpenOptions|TcpStream|UnixStream|Command)::' \
  "${pure[@]}" || true)
[ -n "$hits" ] && breach "a pure core does I/O:"$'\n'"$hits"

[ "$bad" = 0 ] && echo "walls hold (kmsd internals still used by src/: $(wc -l <<<"$KNOWN_DEBTS") known debts, issue 19)"
exit $bad

#!/usr/bin/env bash
# The architecture's walls (docs: README "Layout", /work GUIDE "Walls"), checked over `use`
# lines and paths in the sources. Exits non-zero naming every breach.
#
# - kmsd never depends on atrest (kmsd/Cargo.toml);
# - src/volume and src/mount never import kmsd; the mount never imports the object store;
# - src/ uses kmsd only through kmsd::client, kmsd::protocol, kmsd::api and
#   kmsd::trail::reader (the rest of kmsd is pub(crate), so the compiler refuses most
#   breaches too; this names them, and catches a module made public again);
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

hits=$(grep -rnoE '\bkmsd::[a-z_]+(::[a-z_]+)?|use kmsd::\{' src |
  grep -vE ':kmsd::(client|protocol|api|trail::reader)\b' || true)
[ -n "$hits" ] && breach "src/ uses a kmsd internal:"$'\n'"$hits"

pure=(kmsd/src/policy src/volume/format.rs src/volume/xts src/volume/snapshot/manifest.rs)
hits=$(grep -rnE 'std::(fs|net|process)\b|\b(File|OpenOptions|TcpStream|UnixStream|Command)::' \
  "${pure[@]}" || true)
[ -n "$hits" ] && breach "a pure core does I/O:"$'\n'"$hits"

[ "$bad" = 0 ] && echo "walls hold"
exit $bad

#!/usr/bin/env bash
# Drill: someone edits one byte of a trail event.
#
# The trail is a hash chain: `atrest cloudtrail validate-logs` must exit non-zero and
# name the segment file and line that was edited; with the byte put back, the trail
# validates again.
#
# Usage: scripts/drill-tampered-trail.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons

step "Make some events: a key, an encryption, a description"
ok at kms create-key --description "drill-tampered-trail"
KEY=$(json 'd["KeyMetadata"]["KeyId"]')
ok at kms encrypt --key-id "$KEY" --plaintext "$(printf hello | base64)" --query CiphertextBlob --output text
ok at kms describe-key --key-id "$KEY"
saw "key $KEY, three events recorded"

step "The trail validates as it is"
ok at cloudtrail validate-logs
saw "$(tail -n1 <<<"$OUT")"

step "Edit one byte of the CreateKey event (in the trail segment holding it)"
SEG=$(grep -rl "CreateKey" "$H/trail" | xargs grep -l "$KEY" | head -n1)
[[ -n "$SEG" ]] || fail "no trail segment under $H/trail mentions $KEY"
LINE=$(grep -n "CreateKey" "$SEG" | grep "$KEY" | head -n1 | cut -d: -f1)
[[ -n "$LINE" ]] || fail "no CreateKey line for $KEY in $SEG"
BACKUP=$(mktemp)
cp -p "$SEG" "$BACKUP"
cleanup_push "[[ -s '$BACKUP' ]] && cp -p '$BACKUP' '$SEG'; rm -f '$BACKUP'"
# The key ID's first character, flipped to another hex digit: same length, same JSON.
python3 - "$SEG" "$LINE" "$KEY" <<'EOF'
import sys
path, line, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path, 'rb').read().split(b'\n')
i = lines[line - 1].index(key.encode())
b = lines[line - 1]
lines[line - 1] = b[:i] + (b'0' if b[i:i+1] != b'0' else b'1') + b[i+1:]
open(path, 'wb').write(b'\n'.join(lines))
EOF
say "$(cmp -l "$BACKUP" "$SEG" | wc -l) byte differs: $SEG line $LINE"

step "validate-logs must refuse it and point at that file and line"
run at cloudtrail validate-logs
[[ $RC -ne 0 ]] || fail "validate-logs exited 0 on a trail with an edited event"
grep -qF "$SEG line $LINE" <<<"$ERR" ||
    fail "validate-logs failed but did not name '$SEG line $LINE': $ERR"
saw "exit $RC: $(grep INVALID <<<"$ERR")"

step "Put the byte back: the trail validates again"
cp -p "$BACKUP" "$SEG"
ok at cloudtrail validate-logs
saw "$(tail -n1 <<<"$OUT")"

passed

#!/usr/bin/env bash
# Drill: a key scheduled for deletion, then the deletion cancelled; then one that is
# really deleted.
#
# While PendingDeletion, everything that needs the key refuses with
# KMSInvalidStateException: Encrypt, Decrypt, attaching a volume it protects, reading
# an object stored under it (KMS.KMSInvalidStateException). CancelKeyDeletion
# brings it back Disabled (DisabledException), EnableKey makes it work again. With
# kmsd's clock moved past the 7-day window, the key is gone (NotFoundException) and
# so is its alias.
#
# Usage: scripts/drill-key-deletion.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
DRILL_KMSD_ARGS=(--allow-clock-control)
drill_init "$@"
drill_daemons mount s3
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"
BUCKET=drill-deletion-$RANDOM$RANDOM
ALIAS=alias/drill-deletion-$RANDOM$RANDOM

step "A key, its alias, a ciphertext, a volume and an object under it"
ok at kms create-key --description "drill-key-deletion" --query KeyMetadata.KeyId --output text
KEY=$OUT
ok at kms create-alias --alias-name "$ALIAS" --target-key-id "$KEY"
ok at kms encrypt --key-id "$ALIAS" --plaintext "$(printf 'keep me' | base64)" --query CiphertextBlob --output text
CT=$OUT
ok at ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$ALIAS"
VOL=$(grep -o 'vol-[0-9a-f]*' <<<"$OUT" | head -n1)
[[ -n "$VOL" ]] || fail "create-volume printed no volume ID: $OUT"
cleanup_push "at detach --force $VOL; at ec2 delete-volume --volume-id $VOL"
ok at s3api create-bucket --bucket "$BUCKET"
head -c 4096 /dev/urandom >"$W/object"
ok at s3 cp "$W/object" "s3://$BUCKET/object" --sse aws:kms --sse-kms-key-id "$ALIAS"
saw "key $KEY ($ALIAS), volume $VOL, object s3://$BUCKET/object"

step "Schedule the key's deletion (7 days)"
ok at kms schedule-key-deletion --key-id "$KEY" --pending-window-in-days 7
saw "$(tr -d '\n ' <<<"$OUT")"
ok at kms describe-key --key-id "$KEY" --query KeyMetadata.KeyState --output text
expect_eq "KeyState" "$OUT" PendingDeletion

step "Everything that needs the key refuses with KMSInvalidStateException"
refused KMSInvalidStateException at kms encrypt --key-id "$KEY" --plaintext "$(printf x | base64)"
refused KMSInvalidStateException at kms decrypt --ciphertext-blob "$CT"
refused KMSInvalidStateException at attach "$VOL"
[[ -z "$(ls "$H/mnt/local" 2>/dev/null)" ]] || fail "a refused attach left a file under $H/mnt/local"
refused KMS.KMSInvalidStateException at s3 cp "s3://$BUCKET/object" "$W/back"

step "Cancel the deletion: the key comes back Disabled"
ok at kms cancel-key-deletion --key-id "$KEY"
ok at kms describe-key --key-id "$KEY" --query KeyMetadata.KeyState --output text
expect_eq "KeyState" "$OUT" Disabled
refused DisabledException at kms decrypt --ciphertext-blob "$CT"
refused KMS.DisabledException at s3 cp "s3://$BUCKET/object" "$W/back"

step "Enable it: everything works again"
ok at kms enable-key --key-id "$KEY"
ok at kms decrypt --ciphertext-blob "$CT" --query Plaintext --output text
expect_eq "decrypted" "$(base64 -d <<<"$OUT")" "keep me"
ok at attach "$VOL"
saw "attached at $OUT"
ok at detach "$VOL"
ok at s3 cp "s3://$BUCKET/object" "$W/back"
cmp -s "$W/object" "$W/back" || fail "the object read back differs from what was uploaded"
saw "object read back byte-identical"

step "Schedule the deletion again and move kmsd's clock past the window"
ok at kms schedule-key-deletion --key-id "$KEY" --pending-window-in-days 7
run at kms advance-clock --seconds $((7 * 86400 + 60))
if [[ $RC -ne 0 ]]; then
    grep -q allow-clock-control <<<"$ERR" || fail "advance-clock failed: $ERR"
    say "NOT CHECKED: this kmsd runs without --allow-clock-control, so its clock cannot move;"
    say "run with --fresh to see the key really deleted. The key stays PendingDeletion."
    passed
    exit 0
fi
saw "kmsd's clock is now $(json 'd["Now"]')"
refused NotFoundException at kms describe-key --key-id "$KEY"
refused NotFoundException at kms encrypt --key-id "$ALIAS" --plaintext "$(printf x | base64)"
ok at kms list-aliases --query 'Aliases[].AliasName' --output text
grep -qF "$ALIAS" <<<"$OUT" && fail "$ALIAS is still listed after its key was deleted"
saw "$ALIAS is no longer listed"
run at kms decrypt --ciphertext-blob "$CT"
[[ $RC -ne 0 ]] || fail "a ciphertext of the deleted key still decrypts"
saw "the old ciphertext is unrecoverable: $(first_line "$ERR")"

passed

#!/usr/bin/env bash
# Drill: the lab's key and its key administrator (issue 3, scenario 1).
#
# The voclabs role creates a symmetric key with alias MyKMSKey, naming itself and
# the user KeyAdminOnly as key administrators and itself as key user (the
# console's policy). KeyAdminOnly can disable and re-enable the key, but cannot
# encrypt or decrypt with it: AccessDeniedException, as AWS says. The trail shows
# who did what.
#
# Usage: scripts/drill-key-admin.sh [--fresh]
#   --fresh  start a private kmsd on a temporary home (removed on exit);
#            otherwise use the running kmsd of $ATREST_HOME.
source "$(dirname "$0")/drill-lib.sh"

ROLE="arn:aws:iam::$LAB:role/voclabs"
ADMIN_ONLY="arn:aws:iam::$LAB:user/KeyAdminOnly"
ALIAS="alias/MyKMSKey"
[ "$FRESH" = 1 ] || ALIAS="alias/MyKMSKey-drill-$RUN_ID"

step "The voclabs role creates the key: administrators voclabs + KeyAdminOnly, user voclabs"
at "$ROLE" kms create-key --description "Lab key (drill)" \
  --key-administrators "$ROLE" "$ADMIN_ONLY" --key-users "$ROLE"
expect_ok
KEY_ID="$(json 'd["KeyMetadata"]["KeyId"]')"
KEY_ARN="$(json 'd["KeyMetadata"]["Arn"]')"
say "key $KEY_ARN"
at "$ROLE" kms create-alias --alias-name "$ALIAS" --target-key-id "$KEY_ID"
expect_ok

step "Its key policy has the console's statements"
at "$ROLE" kms get-key-policy --key-id "$ALIAS" --policy-name default --output text
expect_ok
SIDS="$(json '", ".join(s["Sid"] for s in d["Statement"])')"
say "statements: $SIDS"
[ "$SIDS" = "Enable IAM User Permissions, Allow access for Key Administrators, Allow use of the key, Allow attachment of persistent resources" ] \
  || surprise "unexpected statements: $SIDS"

step "The role (key user) encrypts and decrypts"
at "$ROLE" kms encrypt --key-id "$ALIAS" --plaintext "$(printf 'lab secret' | base64)" --query CiphertextBlob --output text
expect_ok
BLOB="$OUT"
at "$ROLE" kms decrypt --ciphertext-blob "$BLOB" --query Plaintext --output text
expect_ok
[ "$(printf '%s' "$OUT" | base64 -d)" = "lab secret" ] || surprise "decrypted to something else"
say "decrypted: lab secret"

step "KeyAdminOnly disables the key, then enables it again"
at "$ADMIN_ONLY" kms disable-key --key-id "$KEY_ARN"
expect_ok
at "$ADMIN_ONLY" kms describe-key --key-id "$KEY_ARN" --query KeyMetadata.KeyState --output text
expect_ok
[ "$OUT" = "Disabled" ] || surprise "state is $OUT, not Disabled"
say "KeyState: Disabled"
at "$ROLE" kms decrypt --ciphertext-blob "$BLOB"
expect_error DisabledException
at "$ADMIN_ONLY" kms enable-key --key-id "$KEY_ARN"
expect_ok

step "KeyAdminOnly cannot decrypt or encrypt with it"
at "$ADMIN_ONLY" kms decrypt --ciphertext-blob "$BLOB"
expect_error AccessDeniedException "User: $ADMIN_ONLY is not authorized to perform: kms:Decrypt on resource: $KEY_ARN because no"
at "$ADMIN_ONLY" kms encrypt --key-id "$KEY_ARN" --plaintext "$(printf x | base64)"
expect_error AccessDeniedException "kms:Encrypt on resource: $KEY_ARN"

step "The trail shows KeyAdminOnly's DisableKey and its refused Decrypt"
trail_event DisableKey
[ "$(json 'd["userIdentity"]["arn"]')" = "$ADMIN_ONLY" ] || surprise "DisableKey not by KeyAdminOnly: $OUT"
say "DisableKey by $(json 'd["userIdentity"]["arn"]') (unix uid $(json 'd["additionalEventData"]["unixUid"]'))"
trail_event Decrypt
[ "$(json 'd.get("errorCode")')" = "AccessDeniedException" ] || surprise "newest Decrypt is not the refused one: $OUT"
[ "$(json 'd["requestParameters"]["encryptionAlgorithm"]')" = "SYMMETRIC_DEFAULT" ] || surprise "Decrypt did not log encryptionAlgorithm"
say "Decrypt by $(json 'd["userIdentity"]["arn"]'): $(json 'd["errorCode"]')"

printf '\nDrill passed: the key administrator manages the key but cannot use it.\n'

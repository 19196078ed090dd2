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
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons

LAB=111122223333
ROLE="arn:aws:iam::$LAB:role/voclabs"
ADMIN_ONLY="arn:aws:iam::$LAB:user/KeyAdminOnly"
ALIAS="alias/MyKMSKey"
((FRESH)) || ALIAS="alias/MyKMSKey-drill-$(date +%s)-$$"
as() { local who=$1; shift; at --as "$who" "$@"; }
# The newest trail event named $1, as JSON in $OUT.
trail_event() {
    ok at cloudtrail lookup-events --lookup-attributes "AttributeKey=EventName,AttributeValue=$1" --max-results 1
    OUT=$(json 'd["Events"][0]["CloudTrailEvent"]')
}

step "The voclabs role creates the key: administrators voclabs + KeyAdminOnly, user voclabs"
ok as "$ROLE" kms create-key --description "Lab key (drill)" \
    --key-administrators "$ROLE" "$ADMIN_ONLY" --key-users "$ROLE"
KEY_ID=$(json 'd["KeyMetadata"]["KeyId"]')
KEY_ARN=$(json 'd["KeyMetadata"]["Arn"]')
cleanup_push "at --as '$ROLE' kms schedule-key-deletion --key-id '$KEY_ARN' --pending-window-in-days 7"
saw "key $KEY_ARN"
ok as "$ROLE" kms create-alias --alias-name "$ALIAS" --target-key-id "$KEY_ID"

step "Its key policy has the console's statements"
ok as "$ROLE" kms get-key-policy --key-id "$ALIAS" --policy-name default --output text
expect_eq "statements" "$(json '", ".join(s["Sid"] for s in d["Statement"])')" \
    "Enable IAM User Permissions, Allow access for Key Administrators, Allow use of the key, Allow attachment of persistent resources"

step "The role (key user) encrypts and decrypts"
ok as "$ROLE" kms encrypt --key-id "$ALIAS" --plaintext "$(printf 'lab secret' | base64)" --query CiphertextBlob --output text
BLOB=$OUT
ok as "$ROLE" kms decrypt --ciphertext-blob "$BLOB" --query Plaintext --output text
expect_eq "plaintext" "$(printf '%s' "$OUT" | base64 -d)" "lab secret"

step "KeyAdminOnly disables the key, then enables it again"
ok as "$ADMIN_ONLY" kms disable-key --key-id "$KEY_ARN"
ok as "$ADMIN_ONLY" kms describe-key --key-id "$KEY_ARN" --query KeyMetadata.KeyState --output text
expect_eq "KeyState" "$OUT" Disabled
refused DisabledException as "$ROLE" kms decrypt --ciphertext-blob "$BLOB"
ok as "$ADMIN_ONLY" kms enable-key --key-id "$KEY_ARN"

step "KeyAdminOnly cannot decrypt or encrypt with it"
refused AccessDeniedException as "$ADMIN_ONLY" kms decrypt --ciphertext-blob "$BLOB"
[[ "$ERR" == *"User: $ADMIN_ONLY is not authorized to perform: kms:Decrypt on resource: $KEY_ARN because no"* ]] ||
    fail "unexpected message: $ERR"
refused AccessDeniedException as "$ADMIN_ONLY" kms encrypt --key-id "$KEY_ARN" --plaintext "$(printf x | base64)"

step "The trail shows KeyAdminOnly's DisableKey and its refused Decrypt"
trail_event DisableKey
expect_eq "DisableKey by" "$(json 'd["userIdentity"]["arn"]')" "$ADMIN_ONLY"
saw "unix uid $(json 'd["additionalEventData"]["unixUid"]')"
trail_event Decrypt
expect_eq "newest Decrypt errorCode" "$(json 'd.get("errorCode")')" AccessDeniedException
expect_eq "encryptionAlgorithm" "$(json 'd["requestParameters"]["encryptionAlgorithm"]')" SYMMETRIC_DEFAULT
passed

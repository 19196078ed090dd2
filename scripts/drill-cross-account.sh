#!/usr/bin/env bash
# Drill: a copied image's encrypted volume used from another account (issue 3,
# scenario 3).
#
# The volume's key lives in account 111122223333. UserA of account 444455556666
# is refused until (1) the key policy names account 444455556666 and (2) account
# 444455556666's own IAM policy allows UserA kms:Decrypt, kms:GenerateDataKey*,
# kms:ReEncrypt*, kms:DescribeKey and kms:CreateGrant (for AWS resources). Each
# half alone is not enough, as in AWS.
#
# Usage: scripts/drill-cross-account.sh [--fresh]
source "$(dirname "$0")/drill-lib.sh"

ROLE="arn:aws:iam::$LAB:role/voclabs"
USER_A="arn:aws:iam::$OTHER:user/UserA"
VOLUME="vol-0c0p1ed00000000aa"
INSTANCE="i-0fedcba9876543210"
GRANTEE="$OTHER:aws:ec2-infrastructure:$INSTANCE"

rm -f "$DRILL_HOME/iam/$OTHER/users/UserA/UseLabKeyFromOtherAccount.json"
at - kms reload-config
expect_ok

step "In account $LAB: the key, and the copied image's volume key under it"
at "$ROLE" kms create-key --description "Image key (drill)" --key-administrators "$ROLE" --key-users "$ROLE" \
  --query KeyMetadata.Arn --output text
expect_ok
KEY_ARN="$OUT"
say "key $KEY_ARN"
at "$ROLE" kms generate-data-key-without-plaintext --key-id "$KEY_ARN" --number-of-bytes 64 \
  --encryption-context "aws:ebs:id=$VOLUME" --query CiphertextBlob --output text
expect_ok
WRAPPED="$OUT"

user_a_decrypt() {
  at "$USER_A" kms decrypt --key-id "$KEY_ARN" --ciphertext-blob "$WRAPPED" \
    --encryption-context "aws:ebs:id=$VOLUME" --query Plaintext --output text
}

step "UserA ($OTHER) uses the volume: the key policy does not name account $OTHER"
user_a_decrypt
expect_error AccessDeniedException "User: $USER_A is not authorized to perform: kms:Decrypt on resource: $KEY_ARN because no resource-based policy allows the kms:Decrypt action"
at "$USER_A" kms describe-key --key-id "$KEY_ARN"
expect_error AccessDeniedException "kms:DescribeKey"

step "A key policy that would lock its administrator out is refused"
at "$ROLE" kms put-key-policy --key-id "$KEY_ARN" --policy-name default --policy \
  "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::$OTHER:root\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}]}"
expect_error MalformedPolicyDocumentException "will not allow you to update the key policy"

step "The key administrator adds account $OTHER to the key policy"
at "$ROLE" kms get-key-policy --key-id "$KEY_ARN" --policy-name default --output text
expect_ok
POLICY_FILE="$DRILL_HOME/.drill-policy-$RUN_ID.json"
CLEANUP_FILES+=("$POLICY_FILE")
printf '%s' "$OUT" | python3 -c '
import json, sys
other = sys.argv[1]
p = json.load(sys.stdin)
p["Statement"].append({
  "Sid": "Allow use of the key by account " + other,
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::%s:root" % other},
  "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
  "Resource": "*"})
p["Statement"].append({
  "Sid": "Allow attachment of persistent resources by account " + other,
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::%s:root" % other},
  "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
  "Resource": "*",
  "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}})
json.dump(p, sys.stdout, indent=2)' "$OTHER" >"$POLICY_FILE"
at "$ROLE" kms put-key-policy --key-id "$KEY_ARN" --policy-name default --policy "file://$POLICY_FILE"
expect_ok

step "UserA tries again: account $OTHER has not given UserA any KMS permission"
user_a_decrypt
expect_error AccessDeniedException "because no identity-based policy allows the kms:Decrypt action"

step "Account $OTHER allows UserA to use the key"
attach_policy "$OTHER" UserA UseLabKeyFromOtherAccount "{
  \"Version\": \"2012-10-17\",
  \"Statement\": [
    {\"Effect\": \"Allow\",
     \"Action\": [\"kms:Decrypt\", \"kms:GenerateDataKey*\", \"kms:ReEncrypt*\", \"kms:DescribeKey\"],
     \"Resource\": \"$KEY_ARN\"},
    {\"Effect\": \"Allow\", \"Action\": \"kms:CreateGrant\", \"Resource\": \"$KEY_ARN\",
     \"Condition\": {\"Bool\": {\"kms:GrantIsForAWSResource\": \"true\"}}}
  ]
}"

step "UserA decrypts the volume key and describes the key"
user_a_decrypt
expect_ok
[ "$(printf '%s' "$OUT" | base64 -d | wc -c)" = 64 ] || surprise "the volume key is not 64 bytes"
say "decrypted the 64-byte volume key"
at "$USER_A" kms describe-key --key-id "$KEY_ARN" --query KeyMetadata.AWSAccountId --output text
expect_ok
[ "$OUT" = "$LAB" ] || surprise "key account is $OUT"

step "UserA starts an instance from the copied image: EC2 creates the grant in $OTHER's name"
at - kms create-grant --via-service ec2.amazonaws.com --on-behalf-of "$USER_A" --grant-is-for-aws-resource \
  --key-id "$KEY_ARN" --grantee-principal "$GRANTEE" --operations Decrypt \
  --constraints "EncryptionContextSubset={aws:ebs:id=$VOLUME}"
expect_ok
at - kms decrypt --via-service ec2.amazonaws.com --on-behalf-of "$GRANTEE" \
  --ciphertext-blob "$WRAPPED" --encryption-context "aws:ebs:id=$VOLUME"
expect_ok
say "the instance in $OTHER decrypted its volume key"

step "Only what was allowed: no grants for other purposes, no key management"
at "$USER_A" kms create-grant --key-id "$KEY_ARN" --grantee-principal "$USER_A" --operations Decrypt
expect_error AccessDeniedException "kms:CreateGrant"
at "$USER_A" kms disable-key --key-id "$KEY_ARN"
expect_error AccessDeniedException "kms:DisableKey"

printf '\nDrill passed: cross-account use needs both the key policy and the caller'"'"'s IAM policy.\n'

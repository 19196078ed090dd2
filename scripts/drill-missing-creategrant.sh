#!/usr/bin/env bash
# Drill: an instance's encrypted root volume and a user without kms:CreateGrant
# (issue 3, scenario 2).
#
# Starting an instance whose root volume is encrypted makes EC2 create a grant on
# the caller's behalf: CreateGrant via ec2.amazonaws.com, kms:GrantIsForAWSResource
# true, grantee ACCOUNT:aws:ec2-infrastructure:INSTANCE, constraint
# EncryptionContextSubset aws:ebs:id=VOLUME. This drill sends exactly that request
# (as the volume service does) for Ec2Operator, a user with full EC2 rights and no
# KMS rights: AccessDeniedException, in the trail; then attaches an IAM policy
# allowing kms:CreateGrant when kms:GrantIsForAWSResource is true, and the same
# request works; the instance can then decrypt its volume key, until the grant is
# retired.
#
# Usage: scripts/drill-missing-creategrant.sh [--fresh]
source "$(dirname "$0")/drill-lib.sh"

ROLE="arn:aws:iam::$LAB:role/voclabs"
OPERATOR="arn:aws:iam::$LAB:user/Ec2Operator"
INSTANCE="i-0123456789abcdef0"
VOLUME="vol-0a1b2c3d4e5f60718"
GRANTEE="$LAB:aws:ec2-infrastructure:$INSTANCE"
VIA_EC2=(--via-service ec2.amazonaws.com)
ALIAS="alias/MyKMSKey"
[ "$FRESH" = 1 ] || ALIAS="alias/MyKMSKey-drill-$RUN_ID"

# No policy left over from an earlier run.
rm -f "$DRILL_HOME/iam/$LAB/users/Ec2Operator/AllowCreateGrantForAWSResources.json"
at - kms reload-config
expect_ok

step "The lab's key (voclabs is key administrator and key user)"
at "$ROLE" kms create-key --description "Lab key (drill)" --key-administrators "$ROLE" --key-users "$ROLE" \
  --query KeyMetadata.Arn --output text
expect_ok
KEY_ARN="$OUT"
at "$ROLE" kms create-alias --alias-name "$ALIAS" --target-key-id "$KEY_ARN"
expect_ok

step "EBS creates the encrypted volume $VOLUME: a 64-byte data key bound to aws:ebs:id"
at - kms generate-data-key-without-plaintext "${VIA_EC2[@]}" --on-behalf-of "$ROLE" \
  --key-id "$ALIAS" --number-of-bytes 64 --encryption-context "aws:ebs:id=$VOLUME" \
  --query CiphertextBlob --output text
expect_ok
WRAPPED="$OUT"
say "wrapped volume key: ${#WRAPPED} base64 characters in the volume header"

grant_as_ec2() {
  at - kms create-grant "${VIA_EC2[@]}" --on-behalf-of "$OPERATOR" --grant-is-for-aws-resource \
    --key-id "$KEY_ARN" --grantee-principal "$GRANTEE" --operations Decrypt \
    --retiring-principal ec2.us-east-1.amazonaws.com \
    --constraints "EncryptionContextSubset={aws:ebs:id=$VOLUME}"
}
instance_decrypt() {
  at - kms decrypt "${VIA_EC2[@]}" --on-behalf-of "$GRANTEE" \
    --ciphertext-blob "$WRAPPED" --encryption-context "aws:ebs:id=$VOLUME" --query Plaintext --output text
}

step "Ec2Operator starts $INSTANCE: EC2 asks KMS for a grant on its behalf"
grant_as_ec2
expect_error AccessDeniedException "User: $OPERATOR is not authorized to perform: kms:CreateGrant on resource: $KEY_ARN because no"
say "(EC2 now stops the instance: pending -> stopped, Client.InternalError)"
instance_decrypt
expect_error AccessDeniedException

step "The trail shows the refused CreateGrant, made by EC2 for Ec2Operator"
trail_event CreateGrant
[ "$(json 'd.get("errorCode")')" = "AccessDeniedException" ] || surprise "no failed CreateGrant: $OUT"
[ "$(json 'd["userIdentity"]["arn"]')" = "$OPERATOR" ] || surprise "wrong principal: $OUT"
[ "$(json 'd["userIdentity"]["invokedBy"]')" = "ec2.amazonaws.com" ] || surprise "not invoked by EC2: $OUT"
[ "$(json 'd["requestParameters"]["granteePrincipal"]')" = "$GRANTEE" ] || surprise "wrong grantee: $OUT"
say "CreateGrant by $OPERATOR, invokedBy ec2.amazonaws.com, grantee $GRANTEE"
say "errorMessage: $(json 'd["errorMessage"]')"

step "The fix: allow kms:CreateGrant for AWS resources"
attach_policy "$LAB" Ec2Operator AllowCreateGrantForAWSResources '{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": "kms:CreateGrant",
    "Resource": "*",
    "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
  }]
}'

step "Ec2Operator starts $INSTANCE again"
grant_as_ec2
expect_ok
GRANT_ID="$(json 'd["GrantId"]')"
say "GrantId $GRANT_ID"
[ "${#GRANT_ID}" = 64 ] || surprise "GrantId is not 64 hex characters"
instance_decrypt
expect_ok
[ "$(printf '%s' "$OUT" | base64 -d | wc -c)" = 64 ] || surprise "the volume key is not 64 bytes"
say "the instance decrypted its 64-byte volume key through the grant"
at - kms list-grants --key-id "$KEY_ARN" --grant-id "$GRANT_ID"
expect_ok
say "grant: grantee $(json 'd["Grants"][0]["GranteePrincipal"]'), operations $(json 'd["Grants"][0]["Operations"]'), constraints $(json 'd["Grants"][0]["Constraints"]')"

step "The policy only covers AWS resources: Ec2Operator itself still cannot create grants"
at "$OPERATOR" kms create-grant --key-id "$KEY_ARN" --grantee-principal "$OPERATOR" --operations Decrypt
expect_error AccessDeniedException "kms:CreateGrant on resource: $KEY_ARN"

step "Stopping $INSTANCE: EC2 retires the grant and the instance loses the key at once"
at - kms retire-grant "${VIA_EC2[@]}" --on-behalf-of ec2.amazonaws.com --key-id "$KEY_ARN" --grant-id "$GRANT_ID"
expect_ok
instance_decrypt
expect_error AccessDeniedException

printf '\nDrill passed: without kms:CreateGrant the instance cannot start; with it (for AWS resources) it can.\n'

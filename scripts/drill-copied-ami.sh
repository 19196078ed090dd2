#!/usr/bin/env bash
# Drill: the copied AMI (issue 14). Account 111122223333 shares an AMI whose snapshot is
# encrypted with its customer managed key; UserA of account 444455556666 launches it.
#
# The lab's guest becomes an AMI on first use; 111122223333 copies it encrypted under its
# key (copy-image --encrypted --kms-key-id: the data key made with
# GenerateDataKeyWithoutPlaintext by EC2 on the caller's behalf) and shares the copy
# (modify-image-attribute launchPermission, modify-snapshot-attribute
# createVolumePermission). UserA's instance goes pending -> terminated with
# Client.InternalError, the refused KMS call in the trail, until the key policy names
# 444455556666 and that account's IAM policy lets UserA use the key; then it boots.
# The article's own fix: UserA copies the AMI into 444455556666 re-encrypted under its
# own key; with every permission on 111122223333's key withdrawn, the copy still boots.
#
# Every EC2, KMS, IAM and CloudTrail call is the stock `aws` CLI's (the article's own
# commands) against atrest's AWS endpoint, as each principal (`atrest --as ARN env`):
# the key is `aws kms create-key --policy` with the policy the console writes for its key
# administrators and users, UserA's policies are `aws iam put-user-policy` and
# `delete-user-policy` by 444455556666's Admin role. One step stays atrest's: the lab's
# guest directory (scripts/make-guest.sh) becomes an AMI on its first use by `atrest ec2
# run-instances --image-id DIR` (EC2 has no import the stock CLI could use for a local
# directory). Any surprise exits non-zero.
#
# Usage: scripts/drill-copied-ami.sh [--fresh]   (--aws is accepted: always on)
source "$(dirname "$0")/lib/drill-common.sh"
AWS_MODE=1
drill_init "$@"
drill_daemons mount

LAB=111122223333
OTHER=444455556666
ROLE="arn:aws:iam::$LAB:role/voclabs"
USER_A="arn:aws:iam::$OTHER:user/UserA"
# Account 444455556666's administrator (the IAM calls of --aws are made as this role).
OTHER_ADMIN="arn:aws:iam::$OTHER:role/Admin"
POLICY_DIR="$H/iam/$OTHER/users/UserA"
GUEST=${ATREST_GUEST_DIR:-$DRILL_ROOT/target/guest}
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"
# Policies a previous run on this home left (kmsd keeps what IAM calls write; older runs
# of this drill dropped files), and this run's.
if ((!FRESH)); then
    rm -f "$POLICY_DIR/UseSharedAmiKey.json" "$POLICY_DIR/OwnKeys.json"
    ok at kms reload-config
fi
for p in UseSharedAmiKey OwnKeys; do
    run call --as "$OTHER_ADMIN" iam delete-user-policy --user-name UserA --policy-name "$p"
    cleanup_push "call --as '$OTHER_ADMIN' iam delete-user-policy --user-name UserA --policy-name $p"
done

as_lab() { call --as "$ROLE" "$@"; }
as_user_a() { call --as "$USER_A" "$@"; }
state_is() {
    [[ "$(call ec2 describe-instances --instance-ids "$1" --query 'Reservations[0].Instances[0].State.Name' --output text)" == "$2" ]]
}
# The last trail event named $1, as JSON in $OUT.
last_event() {
    ok call cloudtrail lookup-events --lookup-attributes "AttributeKey=EventName,AttributeValue=$1" --max-results 1
    [[ "$OUT" == "{"* ]] || fail "lookup-events printed no JSON: '$OUT' (stderr: $ERR)"
    OUT=$(json 'd["Events"][0]["CloudTrailEvent"]')
}
# Launches $1 as UserA; the instance ID in $INST.
launch() {
    ok as_user_a ec2 run-instances --image-id "$1" --placement AvailabilityZone=us-east-1a
    INST=$(json 'd["Instances"][0]["InstanceId"]')
    expect_eq "State (answer)" "$(json 'd["Instances"][0]["State"]["Name"]')" pending
    cleanup_push "at ec2 terminate-instances --instance-ids $INST"
}
# The instance $INST ends terminated with Client.InternalError; the last
# GenerateDataKeyWithoutPlaintext is UserA's, refused because $1.
refused_launch() {
    wait_until 120 "$INST to terminate" state_is "$INST" terminated
    ok call ec2 describe-instances --instance-ids "$INST" --query 'Reservations[0].Instances[0].StateReason'
    expect_eq "StateReason.Code" "$(json 'd["Code"]')" Client.InternalError
    last_event GenerateDataKeyWithoutPlaintext
    expect_eq "errorCode" "$(json 'd.get("errorCode")')" AccessDeniedException
    expect_eq "userIdentity.arn" "$(json 'd["userIdentity"]["arn"]')" "$USER_A"
    expect_eq "invokedBy" "$(json 'd["userIdentity"]["invokedBy"]')" ec2.amazonaws.com
    local msg
    msg=$(json 'd["errorMessage"]')
    [[ "$msg" == *"because $1"* ]] || fail "unexpected errorMessage: $msg"
    saw "errorMessage: $msg"
}
# The instance $INST runs and its guest prints its line on the console.
boots() {
    wait_until 180 "$INST to run" state_is "$INST" running
    local vol
    vol=$(call ec2 describe-instances --instance-ids "$INST" \
        --query 'Reservations[0].Instances[0].BlockDeviceMappings[0].Ebs.VolumeId' --output text)
    console_has() { call ec2 get-console-output --instance-id "$INST" --query Output --output text | grep -q "$1"; }
    wait_until 120 "the guest's console line" console_has "booted from volume $vol"
    saw "$INST running, console: atrest-guest: booted from volume $vol"
}

step "The lab's guest ($GUEST)"
bash "$DRILL_ROOT/scripts/make-guest.sh" "$GUEST" >/dev/null || fail "scripts/make-guest.sh failed"
saw "$(ls "$GUEST")"

step "In account $LAB: the guest becomes an AMI on first use"
ok at --as "$ROLE" ec2 run-instances --image-id "$GUEST" --placement AvailabilityZone=us-east-1a
FIRST=$(json 'd["Instances"][0]["InstanceId"]')
BASE=$(json 'd["Instances"][0]["ImageId"]')
cleanup_push "at ec2 terminate-instances --instance-ids $FIRST"
ok as_lab ec2 wait image-available --image-ids "$BASE"
ok as_lab ec2 describe-images --owners self --query 'Images[0].ImageId' --output text
expect_eq "describe-images --owners self" "$OUT" "$BASE"
INST=$FIRST boots
ok as_lab ec2 terminate-instances --instance-ids "$FIRST"
wait_until 120 "$FIRST to terminate" state_is "$FIRST" terminated

step "$LAB copies it encrypted under its customer managed key, and shares the copy with $OTHER"
# The policy the console writes with $ROLE as key administrator and key user.
cat >"$W/key-policy.json" <<JSON
{
  "Version": "2012-10-17",
  "Id": "key-consolepolicy-3",
  "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::$LAB:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "Allow access for Key Administrators", "Effect": "Allow",
     "Principal": {"AWS": "$ROLE"},
     "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"],
     "Resource": "*"},
    {"Sid": "Allow use of the key", "Effect": "Allow",
     "Principal": {"AWS": "$ROLE"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
     "Resource": "*"},
    {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
     "Principal": {"AWS": "$ROLE"},
     "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
     "Resource": "*",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
  ]
}
JSON
ok as_lab kms create-key --description drill-copied-ami --policy "file://$W/key-policy.json" \
    --query KeyMetadata.Arn --output text
KEY=$OUT
cleanup_push "at kms schedule-key-deletion --key-id '$KEY' --pending-window-in-days 7"
ok as_lab ec2 copy-image --name drill-lab-encrypted --source-image-id "$BASE" --source-region us-east-1 \
    --encrypted --kms-key-id "$KEY"
AMI=$(json 'd["ImageId"]')
cleanup_push "at --as '$ROLE' ec2 deregister-image --image-id $AMI"
ok as_lab ec2 wait image-available --image-ids "$AMI"
ok as_lab ec2 describe-images --image-ids "$AMI"
SNAP=$(json 'd["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]')
expect_eq "Encrypted" "$(json 'd["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["Encrypted"]')" True
expect_eq "KmsKeyId" "$(json 'd["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"]')" "$KEY"
last_event GenerateDataKeyWithoutPlaintext
expect_eq "data key made by" "$(json 'd["userIdentity"]["invokedBy"]')" ec2.amazonaws.com
ok as_lab ec2 modify-image-attribute --image-id "$AMI" --launch-permission "Add=[{UserId=$OTHER}]"
ok as_lab ec2 modify-snapshot-attribute --snapshot-id "$SNAP" --attribute createVolumePermission \
    --operation-type add --user-ids "$OTHER"
ok as_lab ec2 describe-image-attribute --image-id "$AMI" --attribute launchPermission
expect_eq "LaunchPermissions" "$(json 'd["LaunchPermissions"][0]["UserId"]')" "$OTHER"
refused InvalidAMIID.NotFound as_user_a ec2 run-instances --image-id "$BASE"

step "UserA ($OTHER) launches the shared AMI: the key policy does not name $OTHER"
launch "$AMI"
refused_launch "no resource-based policy allows the kms:GenerateDataKeyWithoutPlaintext action"

step "The key administrator adds account $OTHER to the key policy"
ok as_lab kms get-key-policy --key-id "$KEY" --policy-name default --query Policy --output text
share_key_policy "$OTHER" <<<"$OUT" >"$W/policy.json"
ok as_lab kms put-key-policy --key-id "$KEY" --policy-name default --policy "file://$W/policy.json"

step "UserA launches it again: account $OTHER has not given UserA any KMS permission"
launch "$AMI"
refused_launch "no identity-based policy allows the kms:GenerateDataKeyWithoutPlaintext action"

step "Account $OTHER allows UserA the calls EC2 makes on its behalf"
cat >"$W/UseSharedAmiKey.json" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKeyWithoutPlaintext"],
     "Resource": "$KEY"},
    {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": "$KEY",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
  ]
}
JSON
sed 's/^/      /' "$W/UseSharedAmiKey.json"
cat >"$W/OwnKeys.json" <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:*:$OTHER:key/*"},
  {"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*"}]}
JSON
put_user_policy "$OTHER_ADMIN" "$OTHER" UserA UseSharedAmiKey "$W/UseSharedAmiKey.json"
put_user_policy "$OTHER_ADMIN" "$OTHER" UserA OwnKeys "$W/OwnKeys.json"

step "UserA launches it: the instance boots"
launch "$AMI"
boots
last_event CreateGrant
expect_eq "grantee" "$(json 'd["requestParameters"]["granteePrincipal"]')" "$OTHER:aws:ec2-infrastructure:$INST"
ok as_user_a ec2 terminate-instances --instance-ids "$INST"
wait_until 120 "$INST to terminate" state_is "$INST" terminated

step "The article's fix: copy-image into $OTHER, re-encrypted under UserA's own key"
ok as_user_a kms create-key --description "UserA's key" --query KeyMetadata.Arn --output text
OWN=$OUT
cleanup_push "at --as '$USER_A' kms schedule-key-deletion --key-id '$OWN' --pending-window-in-days 7"
ok as_user_a ec2 copy-image --name drill-mine --source-image-id "$AMI" --source-region us-east-1 \
    --encrypted --kms-key-id "$OWN"
COPY=$(json 'd["ImageId"]')
cleanup_push "at --as '$USER_A' ec2 deregister-image --image-id $COPY"
ok as_user_a ec2 wait image-available --image-ids "$COPY"
ok as_user_a ec2 describe-images --owners self --query 'Images[0].BlockDeviceMappings[0].Ebs.KmsKeyId' --output text
expect_eq "the copy's key" "$OUT" "$OWN"

step "Every permission of $OTHER on $LAB's key withdrawn: the copy still boots"
delete_user_policy "$OTHER_ADMIN" "$OTHER" UserA UseSharedAmiKey
launch "$COPY"
boots
last_event CreateGrant
expect_eq "grant on" "$(json 'd["requestParameters"]["keyId"]')" "$OWN"
refused InvalidAMIID.Unavailable as_user_a ec2 deregister-image --image-id "$COPY"
ok as_user_a ec2 terminate-instances --instance-ids "$INST"
wait_until 120 "$INST to terminate" state_is "$INST" terminated
passed

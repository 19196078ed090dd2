#!/usr/bin/env bash
# Drill: a volume encrypted with a key of account 111122223333 used from account
# 444455556666 (issue 3, scenario 3: the copied image).
#
# UserA (account 444455556666, EC2 rights only) launches an instance on a volume
# whose data key is wrapped by the lab's key. Starting it makes the volume service ask
# kmsd, on UserA's behalf, for a grant to 444455556666's EC2 identity for the instance.
# Refused while the key policy does not name account 444455556666 ("no resource-based
# policy allows"), still refused once it does but UserA's own account has not given it
# KMS rights ("no identity-based policy allows"), and allowed when both say yes. The
# instance goes pending -> stopped (Client.InternalError) until then, and runs after.
#
# Usage: scripts/drill-cross-account.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons mount

LAB=111122223333
OTHER=444455556666
ROLE="arn:aws:iam::$LAB:role/voclabs"
USER_A="arn:aws:iam::$OTHER:user/UserA"
POLICY_DIR="$H/iam/$OTHER/users/UserA"
POLICY="$POLICY_DIR/UseLabKeyFromOtherAccount.json"
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"
rm -f "$POLICY"
cleanup_push "rm -f '$POLICY'; at kms reload-config"
ok at kms reload-config

as_user_a() { at --as "$USER_A" "$@"; }
state_is() { "$ATREST" --home "$H" ec2 describe-instances --instance-ids "$1" | grep -q "\"Name\": \"$2\""; }
# The last CreateGrant in the trail must be UserA's, refused, ending with $1.
refused_grant() {
    ok at cloudtrail lookup-events --lookup-attributes AttributeKey=EventName,AttributeValue=CreateGrant --max-results 1
    OUT=$(json 'd["Events"][0]["CloudTrailEvent"]')
    expect_eq "errorCode" "$(json 'd.get("errorCode")')" AccessDeniedException
    expect_eq "userIdentity.arn" "$(json 'd["userIdentity"]["arn"]')" "$USER_A"
    expect_eq "granteePrincipal" "$(json 'd["requestParameters"]["granteePrincipal"]')" "$OTHER:aws:ec2-infrastructure:$INST"
    local msg
    msg=$(json 'd["errorMessage"]')
    [[ "$msg" == "User: $USER_A is not authorized to perform: kms:CreateGrant on resource: $KEY because $1" ]] ||
        fail "unexpected errorMessage: $msg"
    saw "errorMessage: $msg"
}
settled() { state_is "$1" stopped || state_is "$1" running; }
start_and_settle() {
    ok as_user_a ec2 start-instances --instance-ids "$INST"
    wait_until 30 "$INST to settle" settled "$INST"
}

step "In account $LAB: the lab's key and an encrypted volume (the copied image)"
ok at --as "$ROLE" kms create-key --description "drill-cross-account" --key-administrators "$ROLE" --key-users "$ROLE" \
    --query KeyMetadata.Arn --output text
KEY=$OUT
ok at ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$KEY"
VOL=$(json 'd["VolumeId"]')
cleanup_push "at kms schedule-key-deletion --key-id '$KEY' --pending-window-in-days 7"
saw "key $KEY, volume $VOL"

step "UserA ($OTHER) launches an instance on it: the key policy does not name $OTHER"
ok as_user_a ec2 run-instances --root-volume-id "$VOL" --placement AvailabilityZone=us-east-1a
INST=$(json 'd["Instances"][0]["InstanceId"]')
cleanup_push "for _ in \$(seq 100); do at ec2 describe-volumes --volume-ids $VOL | grep -q '\"available\"' && break; sleep 0.1; done; at ec2 delete-volume --volume-id $VOL"
cleanup_push "at ec2 terminate-instances --instance-ids $INST"
wait_until 30 "$INST to stop" state_is "$INST" stopped
ok at ec2 describe-instances --instance-ids "$INST"
expect_eq "StateReason.Code" "$(json 'd["Reservations"][0]["Instances"][0]["StateReason"]["Code"]')" Client.InternalError
refused_grant "no resource-based policy allows the kms:CreateGrant action"

step "The key administrator adds account $OTHER to the key policy"
ok at --as "$ROLE" kms get-key-policy --key-id "$KEY" --policy-name default --output text
share_key_policy "$OTHER" <<<"$OUT" >"$W/policy.json"
ok at --as "$ROLE" kms put-key-policy --key-id "$KEY" --policy-name default --policy "file://$W/policy.json"
saw "key policy now names arn:aws:iam::$OTHER:root (use, and grants for AWS resources)"

step "UserA starts it again: account $OTHER has not given UserA any KMS permission"
start_and_settle
state_is "$INST" stopped || fail "$INST started without UserA's IAM permission"
refused_grant "no identity-based policy allows the kms:CreateGrant action"

step "Account $OTHER allows UserA to use the key"
mkdir -p "$POLICY_DIR"
cat >"$POLICY" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"],
     "Resource": "$KEY"},
    {"Effect": "Allow", "Action": "kms:CreateGrant", "Resource": "$KEY",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
  ]
}
JSON
sed 's/^/      /' "$POLICY"
ok at kms reload-config

step "UserA starts it: the grant goes to $OTHER's EC2 identity and the instance runs"
start_and_settle
state_is "$INST" running || fail "$INST did not start with both policies in place"
[[ -e "$H/mnt/$INST/xvda" ]] || fail "$INST runs but its root is not served"
ok at kms list-grants --key-id "$KEY"
expect_eq "grantee" "$(json 'd["Grants"][0]["GranteePrincipal"]')" "$OTHER:aws:ec2-infrastructure:$INST"
saw "root served at $H/mnt/$INST/xvda"

step "Only what was allowed: no grants for other purposes, no key management"
refused AccessDeniedException as_user_a kms create-grant --key-id "$KEY" --grantee-principal "$USER_A" --operations Decrypt
refused AccessDeniedException as_user_a kms disable-key --key-id "$KEY"
ok as_user_a ec2 stop-instances --instance-ids "$INST"
wait_until 30 "$INST to stop" state_is "$INST" stopped
passed

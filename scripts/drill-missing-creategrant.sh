#!/usr/bin/env bash
# Drill: a user without kms:CreateGrant starts an instance whose root volume is
# encrypted (issue 3, scenario 2), with the stock `aws` CLI (issue 14).
#
# Every EC2, KMS, IAM and CloudTrail call is the stock `aws` CLI's (the troubleshooting
# article's own commands) against atrest's AWS endpoint, as each principal (`atrest --as
# ARN env` prints its keys). The lab's administrator launches the lab's guest AMI with
# `aws ec2 run-instances --image-id ami-...`, its root encrypted under a customer managed
# key (`--block-device-mappings ...Ebs={Encrypted=true,KmsKeyId=...}`), and stops it.
# Ec2Operator (full EC2 rights, no KMS rights) starts it: EC2 asks KMS for a grant on
# its behalf, as EBS does (CreateGrant via ec2.amazonaws.com, kms:GrantIsForAWSResource
# true, grantee ACCOUNT:aws:ec2-infrastructure:INSTANCE, Decrypt only, constraint
# aws:ebs:id=VOLUME); it is refused with AccessDeniedException, the trail shows it
# (invoked by EC2), and the instance goes pending -> stopped with Client.InternalError
# (`describe-instances --query "Reservations[*].Instances[*].StateReason"`). The fix,
# `aws iam put-user-policy` by the administrator allowing kms:CreateGrant when
# kms:GrantIsForAWSResource is true, lets the instance run, and only for AWS resources:
# Ec2Operator still cannot create a grant directly.
#
# One step stays atrest's: the lab's guest directory (scripts/make-guest.sh) becomes an
# AMI on its first use by `atrest ec2 run-instances --image-id DIR` (EC2 has no import
# the stock CLI could use for a local directory). Any surprise exits non-zero.
#
# Usage: scripts/drill-missing-creategrant.sh [--fresh]   (--aws is accepted: always on)
source "$(dirname "$0")/lib/drill-common.sh"
AWS_MODE=1
drill_init "$@"
drill_daemons mount

LAB=111122223333
OPERATOR="arn:aws:iam::$LAB:user/Ec2Operator"
# The lab's administrator: makes the key and the instance, and the IAM fix.
ADMIN="arn:aws:iam::$LAB:role/voclabs"
GUEST=${ATREST_GUEST_DIR:-$DRILL_ROOT/target/guest}
as_admin() { call --as "$ADMIN" "$@"; }
as_operator() { call --as "$OPERATOR" "$@"; }
state_of() {
    as_admin ec2 describe-instances --instance-ids "$1" --query 'Reservations[0].Instances[0].State.Name' --output text
}
state_is() { [[ "$(state_of "$1")" == "$2" ]]; }
settled() { [[ "$(state_of "$1")" =~ ^(running|stopped|terminated)$ ]]; }
image_available() {
    [[ "$(as_admin ec2 describe-images --image-ids "$1" --query 'Images[0].State' --output text)" == available ]]
}
# A policy a previous run on this home left (kmsd keeps what IAM calls write; older
# runs of this drill dropped a file), and this run's.
if ((!FRESH)); then
    rm -f "$H/iam/$LAB/users/Ec2Operator/AllowCreateGrantForAWSResources.json"
    ok at kms reload-config
fi
run as_admin iam delete-user-policy --user-name Ec2Operator --policy-name AllowCreateGrantForAWSResources
cleanup_push "as_admin iam delete-user-policy --user-name Ec2Operator --policy-name AllowCreateGrantForAWSResources"

step "The lab's guest ($GUEST) as an AMI"
bash "$DRILL_ROOT/scripts/make-guest.sh" "$GUEST" >/dev/null || fail "scripts/make-guest.sh failed"
ok at --as "$ADMIN" ec2 run-instances --image-id "$GUEST" --placement AvailabilityZone=us-east-1a
FIRST=$(json 'd["Instances"][0]["InstanceId"]')
AMI=$(json 'd["Instances"][0]["ImageId"]')
cleanup_push "as_admin ec2 terminate-instances --instance-ids $FIRST"
ok as_admin ec2 terminate-instances --instance-ids "$FIRST"
wait_until 120 "$AMI to be available" image_available "$AMI"
ok as_admin ec2 describe-images --owners self --image-ids "$AMI" \
    --query 'Images[0].BlockDeviceMappings[0].Ebs.Encrypted' --output text
expect_eq "$AMI encrypted" "$OUT" False

step "An instance of it, its root encrypted with a customer managed key (by you, the lab's administrator)"
ok as_admin kms create-key --description "drill-missing-creategrant" --query KeyMetadata.Arn --output text
KEY=$OUT
cleanup_push "as_admin kms schedule-key-deletion --key-id '$KEY' --pending-window-in-days 7"
ok as_admin ec2 run-instances --image-id "$AMI" --instance-type t3.micro --count 1 \
    --placement AvailabilityZone=us-east-1a \
    --block-device-mappings "DeviceName=/dev/xvda,Ebs={Encrypted=true,KmsKeyId=$KEY}"
INST=$(json 'd["Instances"][0]["InstanceId"]')
cleanup_push "as_admin ec2 terminate-instances --instance-ids $INST"
wait_until 180 "$INST to be running" state_is "$INST" running
ok as_admin ec2 describe-instances --instance-ids "$INST" \
    --query 'Reservations[0].Instances[0].BlockDeviceMappings[0].Ebs.VolumeId' --output text
VOL=$OUT
ok as_admin ec2 describe-volumes --volume-ids "$VOL" --query 'Volumes[0].[Encrypted,KmsKeyId]' --output text
expect_eq "$VOL Encrypted, KmsKeyId" "$OUT" "True	$KEY"
ok as_admin ec2 stop-instances --instance-ids "$INST"
wait_until 120 "$INST to stop" state_is "$INST" stopped
saw "$INST on $VOL (encrypted with $KEY), stopped"

step "Ec2Operator (EC2 rights, no KMS rights) starts it"
ok as_operator ec2 start-instances --instance-ids "$INST"
expect_eq "CurrentState" "$(json 'd["StartingInstances"][0]["CurrentState"]["Name"]')" pending
wait_until 120 "$INST to settle" settled "$INST"
expect_eq "state" "$(state_of "$INST")" stopped
ok as_operator ec2 describe-instances --instance-id "$INST" --query "Reservations[*].Instances[*].StateReason"
expect_eq "StateReason.Code" "$(json 'd[0][0]["Code"]')" Client.InternalError
expect_eq "StateReason.Message" "$(json 'd[0][0]["Message"]')" "Client.InternalError: Client error on launch"

step "The trail: EC2's CreateGrant for Ec2Operator, refused"
ok as_admin cloudtrail lookup-events --lookup-attributes AttributeKey=EventName,AttributeValue=CreateGrant --max-results 1
[[ "$OUT" == "{"* ]] || fail "lookup-events printed no JSON: '$OUT' (stderr: $ERR)"
OUT=$(json 'd["Events"][0]["CloudTrailEvent"]')
expect_eq "errorCode" "$(json 'd.get("errorCode")')" AccessDeniedException
expect_eq "userIdentity.arn" "$(json 'd["userIdentity"]["arn"]')" "$OPERATOR"
expect_eq "invokedBy" "$(json 'd["userIdentity"]["invokedBy"]')" ec2.amazonaws.com
expect_eq "granteePrincipal" "$(json 'd["requestParameters"]["granteePrincipal"]')" "$LAB:aws:ec2-infrastructure:$INST"
MSG=$(json 'd["errorMessage"]')
[[ "$MSG" == "User: $OPERATOR is not authorized to perform: kms:CreateGrant on resource: $KEY because no"* ]] ||
    fail "unexpected errorMessage: $MSG"
saw "errorMessage: $MSG"

step "The fix: allow kms:CreateGrant for AWS resources"
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"
cat >"$W/policy.json" <<'JSON'
{
  "Version": "2012-10-17",
  "Statement": [{
    "Effect": "Allow",
    "Action": "kms:CreateGrant",
    "Resource": "*",
    "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
  }]
}
JSON
sed 's/^/      /' "$W/policy.json"
put_user_policy "$ADMIN" "$LAB" Ec2Operator AllowCreateGrantForAWSResources "$W/policy.json"
saw "attached to $OPERATOR (inline policy AllowCreateGrantForAWSResources)"

step "Ec2Operator starts it again: it runs"
ok as_operator ec2 start-instances --instance-ids "$INST"
wait_until 120 "$INST to be running" state_is "$INST" running
[[ -e "$H/mnt/$INST/xvda" ]] || fail "$INST runs but its root is not served"
ok as_admin kms list-grants --key-id "$KEY"
expect_eq "grantee" "$(json 'd["Grants"][0]["GranteePrincipal"]')" "$LAB:aws:ec2-infrastructure:$INST"
expect_eq "operations" "$(json '",".join(d["Grants"][0]["Operations"])')" Decrypt
saw "root served at $H/mnt/$INST/xvda"

step "Only for AWS resources: Ec2Operator cannot create a grant itself"
refused AccessDeniedException as_operator kms create-grant --key-id "$KEY" --grantee-principal "$OPERATOR" --operations Decrypt

step "Stopping the instance retires its grant"
ok as_operator ec2 stop-instances --instance-ids "$INST"
wait_until 120 "$INST to stop" state_is "$INST" stopped
ok as_admin kms list-grants --key-id "$KEY"
expect_eq "grants left" "$(json 'len(d["Grants"])')" 0
ok as_admin ec2 terminate-instances --instance-ids "$INST"
wait_until 120 "$INST to terminate" state_is "$INST" terminated
passed

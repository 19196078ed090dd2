#!/usr/bin/env bash
# Drill: a user without kms:CreateGrant starts an instance whose root volume is
# encrypted (issue 3, scenario 2).
#
# Starting the instance makes the volume service ask kmsd for a grant on the caller's
# behalf, as EBS does: CreateGrant via ec2.amazonaws.com, kms:GrantIsForAWSResource
# true, grantee ACCOUNT:aws:ec2-infrastructure:INSTANCE, Decrypt only, constraint
# aws:ebs:id=VOLUME. Ec2Operator has full EC2 rights and no KMS rights: the grant is
# refused with AccessDeniedException, the trail shows it (invoked by EC2), and the
# instance goes pending -> stopped with Client.InternalError. An IAM policy allowing
# kms:CreateGrant when kms:GrantIsForAWSResource is true fixes it, and only for AWS
# resources: Ec2Operator still cannot create a grant directly.
#
# With --aws, the EC2, KMS, IAM and CloudTrail calls are the stock `aws` CLI's (the
# troubleshooting article's own commands) against atrest's AWS endpoint, as each
# principal (`atrest --as ARN env`): the fix is `aws iam put-user-policy`, made by the
# lab's administrator role. Only the lab's setup of an instance on an existing volume
# (`run-instances --root-volume-id`, atrest's own) stays atrest's; without --aws the
# policy is a drop-in file kmsd reloads (atrest has no IAM verbs).
#
# Usage: scripts/drill-missing-creategrant.sh [--fresh] [--aws]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons mount

LAB=111122223333
OPERATOR="arn:aws:iam::$LAB:user/Ec2Operator"
# The lab's administrator (the IAM calls of --aws are made as this role).
ADMIN="arn:aws:iam::$LAB:role/voclabs"
POLICY_DIR="$H/iam/$LAB/users/Ec2Operator"
POLICY="$POLICY_DIR/AllowCreateGrantForAWSResources.json"
as_operator() { call --as "$OPERATOR" "$@"; }
state_is() {
    [[ "$(call ec2 describe-instances --instance-ids "$1" --query 'Reservations[0].Instances[0].State.Name' --output text)" == "$2" ]]
}
rm -f "$POLICY"
cleanup_push "rm -f '$POLICY'; at kms reload-config"
if ((AWS_MODE)); then
    # A policy a previous run left (kmsd keeps what IAM calls write), and this run's.
    run call --as "$ADMIN" iam delete-user-policy --user-name Ec2Operator --policy-name AllowCreateGrantForAWSResources
    cleanup_push "call --as '$ADMIN' iam delete-user-policy --user-name Ec2Operator --policy-name AllowCreateGrantForAWSResources"
fi
ok at kms reload-config

step "An instance on an encrypted root (created by you, the lab's administrator)"
ok call kms create-key --description "drill-missing-creategrant" --query KeyMetadata.Arn --output text
KEY=$OUT
ok call ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$KEY"
VOL=$(json 'd["VolumeId"]')
ok call ec2 wait volume-available --volume-ids "$VOL"
cleanup_push "at kms schedule-key-deletion --key-id '$KEY' --pending-window-in-days 7"
ok at ec2 run-instances --root-volume-id "$VOL" --placement AvailabilityZone=us-east-1a
INST=$(json 'd["Instances"][0]["InstanceId"]')
cleanup_push "for _ in \$(seq 100); do at ec2 describe-volumes --volume-ids $VOL | grep -q '\"available\"' && break; sleep 0.1; done; at ec2 delete-volume --volume-id $VOL"
cleanup_push "at ec2 terminate-instances --instance-ids $INST"
wait_until 60 "$INST to be running" state_is "$INST" running
ok call ec2 stop-instances --instance-ids "$INST"
wait_until 60 "$INST to stop" state_is "$INST" stopped
saw "$INST on $VOL (encrypted with $KEY), stopped"

step "Ec2Operator (EC2 rights, no KMS rights) starts it"
ok as_operator ec2 start-instances --instance-ids "$INST"
expect_eq "CurrentState" "$(json 'd["StartingInstances"][0]["CurrentState"]["Name"]')" pending
wait_until 60 "$INST to settle" state_is "$INST" stopped
ok call ec2 describe-instances --instance-ids "$INST"
expect_eq "state" "$(json 'd["Reservations"][0]["Instances"][0]["State"]["Name"]')" stopped
expect_eq "StateReason.Code" "$(json 'd["Reservations"][0]["Instances"][0]["StateReason"]["Code"]')" Client.InternalError

step "The trail: EC2's CreateGrant for Ec2Operator, refused"
ok call cloudtrail lookup-events --lookup-attributes AttributeKey=EventName,AttributeValue=CreateGrant --max-results 1
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
wait_until 60 "$INST to be running" state_is "$INST" running
[[ -e "$H/mnt/$INST/xvda" ]] || fail "$INST runs but its root is not served"
ok call kms list-grants --key-id "$KEY"
expect_eq "grantee" "$(json 'd["Grants"][0]["GranteePrincipal"]')" "$LAB:aws:ec2-infrastructure:$INST"
expect_eq "operations" "$(json '",".join(d["Grants"][0]["Operations"])')" Decrypt
saw "root served at $H/mnt/$INST/xvda"

step "Only for AWS resources: Ec2Operator cannot create a grant itself"
refused AccessDeniedException as_operator kms create-grant --key-id "$KEY" --grantee-principal "$OPERATOR" --operations Decrypt

step "Stopping the instance retires its grant"
ok call ec2 stop-instances --instance-ids "$INST"
wait_until 60 "$INST to stop" state_is "$INST" stopped
ok call kms list-grants --key-id "$KEY"
expect_eq "grants left" "$(json 'len(d["Grants"])')" 0
passed

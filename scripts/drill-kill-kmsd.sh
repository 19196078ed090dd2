#!/usr/bin/env bash
# Drill: kill -9 of kmsd in the middle of a load of CreateKey and Encrypt.
#
# Several clients create keys and encrypt under them as fast as they can; each writes
# down only what kmsd acknowledged. kmsd is killed with SIGKILL mid-load and started
# again: every acknowledged key must exist (Enabled), every acknowledged ciphertext
# must decrypt to its plaintext, and the trail must validate.
#
# Usage: scripts/drill-kill-kmsd.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons
CLIENTS=4
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"

# One client: CreateKey, then Encrypt under it, until kmsd stops answering. A line is
# written only after kmsd acknowledged the call.
client() {
    local n=$1 i=0 key pt ct
    while :; do
        i=$((i + 1))
        key=$(at kms create-key --description "drill-kill-kmsd c$n-$i" \
            --query KeyMetadata.KeyId --output text 2>/dev/null) || break
        echo "$key" >>"$W/keys.$n"
        pt=$(printf 'client %s message %s' "$n" "$i" | base64)
        ct=$(at kms encrypt --key-id "$key" --plaintext "$pt" \
            --encryption-context "drill=kill-kmsd,n=$n-$i" \
            --query CiphertextBlob --output text 2>/dev/null) || break
        echo "$n-$i $pt $ct" >>"$W/cts.$n"
    done
}

step "Start $CLIENTS clients creating keys and encrypting"
PIDS=()
for n in $(seq "$CLIENTS"); do
    client "$n" &
    PIDS+=($!)
done
cleanup_push "kill ${PIDS[*]}"
# Let the load build up: wait until there are some acknowledged ciphertexts.
wait_until 20 "the first acknowledged ciphertexts" bash -c "cat $W/cts.* 2>/dev/null | wc -l | awk '\$1 >= 8 {ok=1} END {exit !ok}'"
sleep 1

step "kill -9 kmsd under load"
KPID=$(pid_of kmsd)
alive "$KPID" || fail "kmsd (pid '$KPID') is not running"
kill -KILL "$KPID"
saw "sent SIGKILL to kmsd pid $KPID"
for p in "${PIDS[@]}"; do wait "$p" || true; done
KEYS=$(cat "$W"/keys.* | wc -l)
CTS=$(cat "$W"/cts.* | wc -l)
saw "clients stopped; kmsd had acknowledged $KEYS CreateKey and $CTS Encrypt"
run at kms list-keys
[[ $RC -ne 0 ]] || fail "kmsd still answers after kill -9"
saw "kmsd is gone: $(first_line "$ERR")"

step "Restart kmsd"
if ((FRESH)); then
    start_kmsd
else
    "$KMSD" --home "$H" --daemonize >/dev/null || fail "kmsd did not restart"
fi
saw "kmsd pid $(pid_of kmsd)"

step "Every acknowledged key is there"
ok at kms list-keys --query 'Keys[].KeyId' --output text
LISTED=$OUT
missing=0
while read -r key; do
    grep -q "$key" <<<"$LISTED" || { say "missing: $key"; missing=$((missing + 1)); }
done < <(cat "$W"/keys.*)
((missing == 0)) || fail "$missing of $KEYS acknowledged keys are gone after the restart"
ok at kms describe-key --key-id "$(head -n1 "$W/keys.1")" --query KeyMetadata.KeyState --output text
expect_eq "state of the first key" "$OUT" Enabled
saw "all $KEYS acknowledged keys listed"

step "Every acknowledged ciphertext decrypts to its plaintext"
bad=0
while read -r id pt ct; do
    got=$(at kms decrypt --ciphertext-blob "$ct" --encryption-context "drill=kill-kmsd,n=$id" \
        --query Plaintext --output text 2>&1) || { say "$id: $got"; bad=$((bad + 1)); continue; }
    [[ "$got" == "$pt" ]] || { say "$id: decrypts to something else"; bad=$((bad + 1)); }
done < <(cat "$W"/cts.*)
((bad == 0)) || fail "$bad of $CTS acknowledged ciphertexts do not decrypt"
saw "all $CTS acknowledged ciphertexts decrypt"

step "The trail validates and records every acknowledged CreateKey"
ok at cloudtrail validate-logs
saw "$(grep -v '^$' <<<"$OUT" | tr '\n' ' ')"
CREATED=$(cat "$H"/trail/*.jsonl | grep '"eventName":"CreateKey"')
unrecorded=0
while read -r key; do
    grep -q "$key" <<<"$CREATED" || unrecorded=$((unrecorded + 1))
done < <(cat "$W"/keys.*)
((unrecorded == 0)) || fail "$unrecorded acknowledged CreateKey calls are not in the trail"
saw "all $KEYS acknowledged CreateKey calls are in the trail"

passed

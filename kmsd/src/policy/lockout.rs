//! PutKeyPolicy's "policy lockout safety check".
//!
//! AWS refuses a new key policy that would not let the principal making the request call
//! `PutKeyPolicy` on the key afterwards, unless the caller sets
//! `BypassPolicyLockoutSafetyCheck`. The check is the ordinary authorization of a future
//! `kms:PutKeyPolicy` by the same caller, under the new key policy and the caller's current
//! IAM policies.

use super::context::RequestContext;
use super::document::PolicyDocument;
use super::evaluate::authorize;
use super::principal::Principal;
use super::PolicyError;

/// AWS's message for a policy that fails the check.
pub const LOCKOUT_MESSAGE: &str =
    "The new key policy will not allow you to update the key policy in the future.";

/// Would `new_policy` stop `caller` from calling `kms:PutKeyPolicy` on `key_arn` later?
pub fn would_lock_out(
    new_policy: &PolicyDocument,
    caller: &Principal,
    key_arn: &str,
    caller_iam_policies: &[PolicyDocument],
) -> Result<bool, PolicyError> {
    let ctx = RequestContext::new(caller.clone(), "kms:PutKeyPolicy", key_arn)?;
    Ok(!authorize(&ctx, new_policy, caller_iam_policies).is_allowed())
}

/// The whole check as PutKeyPolicy / CreateKey run it: `Err(Malformed(LOCKOUT_MESSAGE))`
/// (`MalformedPolicyDocumentException`) unless allowed or bypassed.
pub fn check_lockout(
    new_policy: &PolicyDocument,
    caller: &Principal,
    key_arn: &str,
    caller_iam_policies: &[PolicyDocument],
    bypass: bool,
) -> Result<(), PolicyError> {
    if bypass || !would_lock_out(new_policy, caller, key_arn, caller_iam_policies)? {
        Ok(())
    } else {
        Err(PolicyError::Malformed(LOCKOUT_MESSAGE.to_string()))
    }
}

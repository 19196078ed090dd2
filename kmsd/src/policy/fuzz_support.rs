//! Shared harness of the cargo-fuzz target (`kmsd/fuzz`) and the seeded smoke test: feed
//! arbitrary bytes through parsing and evaluation. Panicking is the only failure.

use std::collections::BTreeMap;

use super::context::RequestContext;
use super::document::PolicyDocument;
use super::evaluate::{authorize, evaluate_statements};
use super::lockout::would_lock_out;
use super::principal::Principal;

const CALLERS: &[&str] = &[
    "arn:aws:iam::111122223333:user/Alice",
    "arn:aws:iam::111122223333:root",
    "arn:aws:iam::111122223333:role/KeyAdmin",
    "arn:aws:sts::111122223333:assumed-role/KeyAdmin/s1",
    "arn:aws:iam::444455556666:user/UserA",
    "444455556666",
    "ec2.amazonaws.com",
];

const ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:CreateGrant",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:PutKeyPolicy",
    "kms:DisableKey",
];

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Parse `data` as a policy (both flavours) and, when it parses, evaluate it for a spread of
/// callers and actions, with condition keys taken from the input itself.
pub fn exercise(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let key_policy = PolicyDocument::parse_key_policy(&text);
    let identity = PolicyDocument::parse_identity_policy(&text);
    let generic = PolicyDocument::parse(&text);
    if let Err(e) = &generic {
        // Messages and codes must be producible for every error.
        let _ = (e.to_string(), e.aws_error_code());
    }
    let Ok(doc) = generic else { return };
    let iam: Vec<PolicyDocument> = identity.into_iter().collect();
    // Condition-key values derived from the input, so fuzzing also reaches the matchers.
    let word: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
    let mut ec = BTreeMap::new();
    ec.insert("Department".to_string(), word.clone());
    ec.insert(word.clone(), "x".to_string());
    for (i, caller) in CALLERS.iter().enumerate() {
        let Ok(p) = Principal::parse(caller) else {
            continue;
        };
        let action = ACTIONS
            .get(i % ACTIONS.len())
            .copied()
            .unwrap_or("kms:Decrypt");
        let via = (i % 2 == 0).then_some("ec2.us-east-1.amazonaws.com");
        let flag = match i % 3 {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        };
        let Ok(ctx) = RequestContext::standard(p.clone(), action, KEY, &ec, via, flag) else {
            continue;
        };
        let ctx = ctx.with_key("aws:Fuzz", vec![word.clone()]);
        let _ = evaluate_statements(&doc, &ctx);
        let auth = authorize(&ctx, &doc, &iam);
        let _ = auth.access_denied_message();
        let _ = auth.clone().or_grant(Some("g")).is_allowed();
        if let Ok(kp) = &key_policy {
            let _ = authorize(&ctx, kp, std::slice::from_ref(&doc));
            let _ = would_lock_out(kp, &p, KEY, &iam);
        }
    }
}

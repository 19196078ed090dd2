//! IAM's names, paths and ARNs, and the validation errors AWS answers for them (pure).

use crate::config::is_account_id;
use crate::error::{ErrorCode, KmsError};

/// `[\w+=,.@-]+`, 1 to `max` characters (user, group, role and policy names).
pub fn is_entity_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `/` or `/ANY/`: 1 to 512 printable ASCII characters starting and ending with `/`.
pub fn is_path(s: &str) -> bool {
    s == "/"
        || (s.len() >= 2
            && s.len() <= 512
            && s.starts_with('/')
            && s.ends_with('/')
            && s.bytes().all(|b| (0x21..=0x7e).contains(&b)))
}

/// `arn:aws:iam::ACCOUNT:KIND/PATH-LESS-THE-SLASHES/NAME`.
pub fn arn(account: &str, kind: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:{kind}{path}{name}")
}

/// `arn:aws:iam::ACCOUNT:policy/PATH/NAME` as (ACCOUNT, `/PATH/NAME`); AWS managed
/// policies have the account `aws`.
pub fn split_policy_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_name = resource.strip_prefix("policy")?;
    (path_name.starts_with('/') && (account == "aws" || is_account_id(account)))
        .then_some((account, path_name))
}

/// `/PATH/NAME` as (`/PATH/`, `NAME`).
pub fn split_path_name(path_name: &str) -> (&str, &str) {
    match path_name.rfind('/') {
        Some(i) => (&path_name[..=i], &path_name[i + 1..]),
        None => ("/", path_name),
    }
}

/// AWS's Query-protocol validation error for one member.
pub fn validation(member: &str, value: &str, constraint: &str) -> KmsError {
    KmsError::new(
        ErrorCode::ValidationError,
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
        ),
    )
}

/// Checks an entity or policy name member (`userName`, `policyName`, ...).
pub fn check_name(member: &str, value: &str, max: usize) -> Result<(), KmsError> {
    if value.is_empty() || value.len() > max {
        return Err(validation(
            member,
            value,
            &format!(
                "Member must have length {}",
                if value.is_empty() {
                    "greater than or equal to 1".to_string()
                } else {
                    format!("less than or equal to {max}")
                }
            ),
        ));
    }
    if !is_entity_name(value, max) {
        return Err(validation(
            member,
            value,
            "Member must satisfy regular expression pattern: [\\w+=,.@-]+",
        ));
    }
    Ok(())
}

/// Checks an optional `path` member; `/` when absent.
pub fn check_path(member: &str, value: Option<&str>) -> Result<String, KmsError> {
    match value {
        None => Ok("/".into()),
        Some(p) if is_path(p) => Ok(p.to_string()),
        Some(p) => Err(validation(
            member,
            p,
            "Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        )),
    }
}

/// `MaxItems`: 1 to 1000 (default 100).
pub fn check_max_items(v: Option<i32>) -> Result<usize, KmsError> {
    match v {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(validation(
            "maxItems",
            &n.to_string(),
            if n < 1 {
                "Member must have value greater than or equal to 1"
            } else {
                "Member must have value less than or equal to 1000"
            },
        )),
    }
}

/// One page of `items` (sorted by their marker key): those after `marker` (the key
/// of the first item of the page, as the previous page returned it), at most `max`;
/// and the marker of the next page if there is one.
pub fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    marker: Option<&str>,
    max: usize,
) -> Result<(Vec<T>, Option<String>), KmsError> {
    let start = match marker {
        None => 0,
        Some(m) => match items.iter().position(|x| key(x) >= m) {
            Some(i) => i,
            None if items.is_empty() => 0,
            None => items.len(),
        },
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let next = rest.get(max).map(|x| key(x).to_string());
    rest.truncate(max);
    Ok((rest, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_arns() {
        assert!(is_entity_name("Key-Admin_1+=,.@", 64));
        assert!(!is_entity_name("a b", 64));
        assert!(!is_entity_name(&"a".repeat(65), 64));
        assert!(is_path("/") && is_path("/div/team/") && !is_path("div/") && !is_path("/a"));
        assert_eq!(
            arn("111122223333", "user", "/div/", "a"),
            "arn:aws:iam::111122223333:user/div/a"
        );
        assert_eq!(
            split_policy_arn("arn:aws:iam::aws:policy/AdministratorAccess"),
            Some(("aws", "/AdministratorAccess"))
        );
        assert_eq!(split_path_name("/a/b/P"), ("/a/b/", "P"));
        assert!(split_policy_arn("arn:aws:iam::1:policy/P").is_none());
        let e = check_name("userName", "a b", 64).unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationError);
        assert!(e.message.contains("'userName'"), "{}", e.message);
        assert!(check_max_items(Some(0)).is_err() && check_max_items(Some(1001)).is_err());
    }

    #[test]
    fn pages_resume_at_the_marker() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let (p, next) = page(items.clone(), |s| s, None, 2).unwrap();
        assert_eq!(
            (p, next.as_deref()),
            (vec!["a".into(), "b".into()], Some("c"))
        );
        let (p, next) = page(items.clone(), |s| s, Some("c"), 2).unwrap();
        assert_eq!(
            (p, next.as_deref()),
            (vec!["c".into(), "d".into()], Some("e"))
        );
        let (p, next) = page(items, |s| s, Some("e"), 2).unwrap();
        assert_eq!((p, next), (vec!["e".to_string()], None));
    }
}

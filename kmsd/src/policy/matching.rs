//! Wildcard matching shared by actions, resources, `StringLike` and `ArnLike`.
//!
//! AWS wildcards: `*` matches any run of characters (including none), `?` exactly one.
//! The matcher is the classic linear backtracking one (remember the last `*`), so a hostile
//! pattern such as `*a*a*a*a*b` costs O(pattern * text), never exponential time.

/// Does `text` match `pattern` (`*`, `?` wildcards), comparing characters exactly?
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob_match_by(pattern, text, |a, b| a == b)
}

/// Like [`glob_match`] but ASCII case-insensitive (IAM action names are case-insensitive).
pub fn glob_match_ignore_case(pattern: &str, text: &str) -> bool {
    glob_match_by(pattern, text, |a, b| a.eq_ignore_ascii_case(&b))
}

fn glob_match_by(pattern: &str, text: &str, eq: impl Fn(char, char) -> bool) -> bool {
    // Policies, actions and ARNs are nearly always ASCII: match their bytes (each is a
    // character) without collecting characters into vectors, on every evaluation.
    if pattern.is_ascii() && text.is_ascii() {
        return glob_slices(pattern.as_bytes(), text.as_bytes(), b'*', b'?', |a, b| {
            eq(char::from(a), char::from(b))
        });
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_slices(&p, &t, '*', '?', eq)
}

/// The matcher over characters (or ASCII bytes): `star` and `any` are `*` and `?`.
fn glob_slices<T: Copy + PartialEq>(
    p: &[T],
    t: &[T],
    star_c: T,
    any: T,
    eq: impl Fn(T, T) -> bool,
) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` seen in the pattern and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(&c) if c == star_c => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&pc) if pc == any || t.get(ti).is_some_and(|&tc| eq(pc, tc)) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more character and retry.
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == star_c))
}

/// `ArnLike` / `ArnEquals`: both ARNs are split into their six colon-separated parts (the last
/// part keeps any further colons) and each part is glob-matched on its own, case-sensitively.
pub fn arn_match(pattern: &str, arn: &str) -> bool {
    let (Some(pp), Some(ap)) = (arn_parts(pattern), arn_parts(arn)) else {
        // Not an ARN: AWS compares the whole string as a single wildcard pattern only when the
        // policy value is a bare `*`.
        return pattern == "*";
    };
    pp.iter().zip(ap.iter()).all(|(p, a)| glob_match(p, a))
}

/// The six colon-separated parts of an ARN (the last keeps any further colons).
fn arn_parts(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    ];
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("kms:*", "kms:Decrypt", true),
            ("kms:Generate*", "kms:GenerateDataKeyWithoutPlaintext", true),
            ("kms:Generate*", "kms:Decrypt", false),
            ("kms:ReEncrypt*", "kms:ReEncryptFrom", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            (
                "*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("abc", "abcd", false),
            ("abc*", "abc", true),
            ("", "", true),
            ("", "a", false),
            // Beyond ASCII, `?` is one character, not one byte.
            ("caf?", "café", true),
            ("caf??", "café", false),
            ("*é", "résumé", true),
            ("r?sum*", "résumé", true),
            ("résumé", "resume", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "pattern {p:?} text {t:?}");
        }
        assert!(glob_match_ignore_case("KMS:decrypt", "kms:Decrypt"));
        assert!(!glob_match("KMS:decrypt", "kms:Decrypt"));
    }

    #[test]
    fn arn_table() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(arn_match("arn:aws:kms:*:111122223333:key/*", key));
        assert!(arn_match("arn:aws:kms:us-east-1:111122223333:*", key));
        assert!(!arn_match("arn:aws:kms:*:444455556666:key/*", key));
        assert!(!arn_match("arn:aws:kms", key));
        assert!(arn_match("*", key));
        // The sixth part keeps its colons.
        assert!(arn_match(
            "arn:aws:ec2:*:*:volume/*",
            "arn:aws:ec2:us-east-1:1:volume/vol-1:x"
        ));
    }
}

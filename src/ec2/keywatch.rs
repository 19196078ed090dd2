//! Key state changes reaching volumes that are being served.
//!
//! A served volume keeps its data key in memory until it is detached or its instance
//! stops, as EBS does, so disabling the KMS key does not stop it. The service learns of
//! a `DisableKey` or `ScheduleKeyDeletion` (and an `EnableKey` or `CancelKeyDeletion`)
//! the way an AWS user would: from the trail (as an EventBridge rule on CloudTrail events
//! would), without asking kmsd anything (a poll of DescribeKey would fill the trail). It
//! then says so, in its log and to `atrest status` (each served volume's key state): the
//! volume keeps working until detached; or, with `atrest mount --strict-revocation`, it
//! drops the data key at once and further I/O fails with `EKEYREVOKED`.

use std::path::{Path, PathBuf};

use kmsd::trail::reader::{self, TrailReader, TrailRecord};

/// What a trail event did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    Disabled,
    PendingDeletion,
    /// `EnableKey`: usable again (a volume's next attach or start works).
    Enabled,
}

impl KeyChange {
    /// The KMS `KeyState` the key is in after the event.
    pub fn key_state(self) -> &'static str {
        match self {
            KeyChange::Disabled => "Disabled",
            KeyChange::PendingDeletion => "PendingDeletion",
            KeyChange::Enabled => "Enabled",
        }
    }

    /// Whether the key now refuses new data keys (attach and start fail).
    pub fn is_unusable(self) -> bool {
        !matches!(self, KeyChange::Enabled)
    }
}

/// The change a successful KMS event announces, with the ARNs of the keys it names.
pub fn key_change(r: &TrailRecord) -> Option<(KeyChange, Vec<String>)> {
    if r.error_code.is_some() || r.event_source != "kms.amazonaws.com" {
        return None;
    }
    let change = match r.event_name.as_str() {
        "DisableKey" => KeyChange::Disabled,
        "ScheduleKeyDeletion" => KeyChange::PendingDeletion,
        // A cancelled deletion leaves the key disabled, as in AWS.
        "CancelKeyDeletion" => KeyChange::Disabled,
        "EnableKey" => KeyChange::Enabled,
        _ => return None,
    };
    let keys: Vec<String> = r
        .resources
        .iter()
        .filter(|res| res.resource_type == "AWS::KMS::Key")
        .map(|res| res.arn.clone())
        .collect();
    if keys.is_empty() {
        None
    } else {
        Some((change, keys))
    }
}

/// Reads the events appended to the trail since the last poll (starting at its end).
pub struct TrailFollower {
    dir: PathBuf,
    segment: u64,
    offset: usize,
}

/// The length of the complete lines of `bytes` (an append in progress is left for the
/// next poll).
fn complete_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0)
}

impl TrailFollower {
    /// A follower that will report only events written from now on.
    pub fn at_end(dir: &Path) -> TrailFollower {
        let mut f = TrailFollower {
            dir: dir.to_path_buf(),
            segment: 0,
            offset: 0,
        };
        if let Some((idx, path)) = TrailReader::new(dir)
            .segments()
            .ok()
            .and_then(|l| l.into_iter().last())
        {
            f.segment = idx;
            f.offset = std::fs::read(&path).map(|b| complete_len(&b)).unwrap_or(0);
        }
        f
    }

    /// The events written since the last call, oldest first.
    pub fn poll(&mut self) -> Vec<TrailRecord> {
        let Ok(segments) = TrailReader::new(&self.dir).segments() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let from = self.segment;
        for (idx, path) in segments.into_iter().filter(|(i, _)| *i >= from) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let start = if idx == self.segment { self.offset } else { 0 };
            let end = complete_len(&bytes);
            if let Some(new) = bytes.get(start..end) {
                // A segment starts with its header line, which events_of skips.
                out.extend(reader::events_of(&path, new).into_iter().map(|e| e.record));
            }
            self.segment = idx;
            self.offset = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, error: Option<&str>) -> TrailRecord {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let v = serde_json::json!({
            "eventVersion": "1.08",
            "userIdentity": {"type": "IAMUser", "principalId": "AIDA", "arn": "arn:aws:iam::111122223333:user/u", "accountId": "111122223333", "userName": "u"},
            "eventTime": "2026-11-23T10:00:00Z",
            "eventSource": "kms.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "local",
            "userAgent": "atrest-cli",
            "errorCode": error,
            "requestParameters": {"keyId": arn},
            "responseElements": null,
            "requestID": "r",
            "eventID": "e",
            "readOnly": false,
            "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": arn}],
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": "111122223333",
            "eventCategory": "Management"
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn disable_and_schedule_deletion_are_changes() {
        let (c, keys) = key_change(&record("DisableKey", None)).unwrap();
        assert_eq!(c, KeyChange::Disabled);
        assert_eq!(keys.len(), 1);
        assert!(keys[0].ends_with("key/1234abcd-12ab-34cd-56ef-1234567890ab"));
        let (c, _) = key_change(&record("ScheduleKeyDeletion", None)).unwrap();
        assert_eq!(c, KeyChange::PendingDeletion);
    }

    #[test]
    fn refused_calls_and_other_events_are_not() {
        assert!(key_change(&record("DisableKey", Some("AccessDeniedException"))).is_none());
        assert!(key_change(&record("Decrypt", None)).is_none());
        assert!(key_change(&record("EnableKey", Some("AccessDeniedException"))).is_none());
    }

    #[test]
    fn enable_and_cancelled_deletion_are_changes_too() {
        let (c, _) = key_change(&record("EnableKey", None)).unwrap();
        assert_eq!(c, KeyChange::Enabled);
        assert!(!c.is_unusable());
        let (c, _) = key_change(&record("CancelKeyDeletion", None)).unwrap();
        assert_eq!(c, KeyChange::Disabled);
        assert!(c.is_unusable());
    }

    #[test]
    fn complete_lines_only() {
        assert_eq!(complete_len(b""), 0);
        assert_eq!(complete_len(b"abc"), 0);
        assert_eq!(complete_len(b"a\nbc"), 2);
        assert_eq!(complete_len(b"a\nb\n"), 4);
    }
}

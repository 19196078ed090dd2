//! One audit event, serialized exactly like a CloudTrail record (camelCase fields, the
//! same names and order AWS uses), plus atrest's own `additionalEventData.unixUid`: the
//! kernel-checked uid of the peer, recorded whatever principal it acted as.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// The CloudTrail record version atrest writes.
pub const EVENT_VERSION: &str = "1.08";
/// `eventSource` of the key service.
pub const KMS_SOURCE: &str = "kms.amazonaws.com";
/// `eventSource` of the volume/instance service.
pub const EC2_SOURCE: &str = "ec2.amazonaws.com";
/// `eventSource` of the object service.
pub const S3_SOURCE: &str = "s3.amazonaws.com";
/// `resources[].type` of a KMS key.
pub const KMS_KEY_TYPE: &str = "AWS::KMS::Key";

/// `userIdentity.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityType {
    #[serde(rename = "IAMUser")]
    IamUser,
    AssumedRole,
    #[serde(rename = "AWSService")]
    AwsService,
    Root,
    #[serde(rename = "AWSAccount")]
    AwsAccount,
}

/// `userIdentity`: who made the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub identity_type: IdentityType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoked_by: Option<String>,
}

impl UserIdentity {
    fn base(identity_type: IdentityType) -> Self {
        UserIdentity {
            identity_type,
            principal_id: None,
            arn: None,
            account_id: None,
            access_key_id: None,
            user_name: None,
            invoked_by: None,
        }
    }

    /// An IAM user, `arn:aws:iam::ACCOUNT:user/NAME`.
    pub fn iam_user(account_id: &str, user_name: &str, principal_id: &str) -> Self {
        UserIdentity {
            principal_id: Some(principal_id.to_string()),
            arn: Some(format!("arn:aws:iam::{account_id}:user/{user_name}")),
            account_id: Some(account_id.to_string()),
            user_name: Some(user_name.to_string()),
            ..Self::base(IdentityType::IamUser)
        }
    }

    /// A role session, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`; AWS's principalId
    /// is `ROLEID:SESSION`.
    pub fn assumed_role(account_id: &str, role: &str, session: &str, role_id: &str) -> Self {
        UserIdentity {
            principal_id: Some(format!("{role_id}:{session}")),
            arn: Some(format!(
                "arn:aws:sts::{account_id}:assumed-role/{role}/{session}"
            )),
            account_id: Some(account_id.to_string()),
            ..Self::base(IdentityType::AssumedRole)
        }
    }

    /// The account root, `arn:aws:iam::ACCOUNT:root`.
    pub fn root(account_id: &str) -> Self {
        UserIdentity {
            principal_id: Some(account_id.to_string()),
            arn: Some(format!("arn:aws:iam::{account_id}:root")),
            account_id: Some(account_id.to_string()),
            ..Self::base(IdentityType::Root)
        }
    }

    /// A service acting on its own behalf (e.g. `ec2.amazonaws.com` as a grantee).
    pub fn aws_service(service: &str) -> Self {
        UserIdentity {
            invoked_by: Some(service.to_string()),
            ..Self::base(IdentityType::AwsService)
        }
    }

    /// The identity for a principal ARN as atrest's config names it: an IAM user,
    /// a role (recorded as an `AssumedRole` session named `session`), an assumed-role
    /// session, an account root, or a service principal (`ec2.amazonaws.com`).
    /// `principalId` is derived stably from the ARN in AWS's shape (`AIDA...` for users,
    /// `AROA...:session` for roles), since atrest has no IAM to issue unique IDs.
    /// `None` if `principal` is none of these.
    pub fn from_principal(principal: &str, session: &str) -> Option<Self> {
        if principal.ends_with(".amazonaws.com") && !principal.contains(':') {
            return Some(Self::aws_service(principal));
        }
        let mut parts = principal.splitn(6, ':');
        let (arn, _partition, service, _region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if arn != "arn" || account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match (service, resource.split_once('/')) {
            ("iam", None) if resource == "root" => Some(Self::root(account)),
            ("iam", Some(("user", path_name))) => {
                let name = path_name.rsplit('/').next().filter(|n| !n.is_empty())?;
                let mut id = Self::iam_user(account, name, &stable_id("AIDA", principal));
                // Keep the ARN as configured (it may carry an IAM path).
                id.arn = Some(principal.to_string());
                Some(id)
            }
            ("iam", Some(("role", path_name))) => {
                let role = path_name.rsplit('/').next().filter(|n| !n.is_empty())?;
                Some(Self::assumed_role(
                    account,
                    role,
                    session,
                    &stable_id("AROA", &format!("arn:aws:iam::{account}:role/{role}")),
                ))
            }
            ("sts", Some(("assumed-role", rest))) => {
                let (role, sess) = rest.split_once('/')?;
                if role.is_empty() || sess.is_empty() {
                    return None;
                }
                Some(Self::assumed_role(
                    account,
                    role,
                    sess,
                    &stable_id("AROA", &format!("arn:aws:iam::{account}:role/{role}")),
                ))
            }
            _ => None,
        }
    }

    /// The name LookupEvents shows as `Username`: the IAM user name, the role session,
    /// `root`, or the invoking service.
    pub fn lookup_username(&self) -> Option<String> {
        match self.identity_type {
            IdentityType::IamUser => self.user_name.clone().or_else(|| self.arn_tail()),
            IdentityType::AssumedRole => self.arn_tail(),
            IdentityType::Root => Some("root".to_string()),
            IdentityType::AwsService => self.invoked_by.clone(),
            IdentityType::AwsAccount => self.account_id.clone(),
        }
    }

    fn arn_tail(&self) -> Option<String> {
        self.arn
            .as_deref()
            .and_then(|a| a.rsplit('/').next())
            .map(str::to_string)
    }
}

/// An AWS-shaped unique ID (`AIDA` + 17 base32 characters) derived from `seed`.
fn stable_id(prefix: &str, seed: &str) -> String {
    use sha2::{Digest, Sha256};
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(seed.as_bytes());
    let mut out = String::from(prefix);
    out.extend(
        digest
            .iter()
            .take(17)
            .map(|b| char::from(ALPHABET[usize::from(*b) % 32])),
    );
    out
}

/// One entry of `resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "accountId", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(rename = "ARN")]
    pub arn: String,
}

impl Resource {
    /// A KMS key resource; the account is taken from the ARN when it has one.
    pub fn kms_key(arn: &str) -> Self {
        Resource {
            account_id: account_of_arn(arn),
            resource_type: KMS_KEY_TYPE.to_string(),
            arn: arn.to_string(),
        }
    }
}

/// The account field (5th) of `arn:partition:service:region:account:...`, if non-empty.
pub fn account_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// `additionalEventData`: atrest's kernel-checked uid plus anything else a caller adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalEventData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_uid: Option<u32>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// One CloudTrail-shaped event. Field order is AWS's, so the JSON reads like theirs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrailRecord {
    pub event_version: String,
    pub user_identity: UserIdentity,
    #[serde(with = "event_time")]
    pub event_time: OffsetDateTime,
    pub event_source: String,
    pub event_name: String,
    pub aws_region: String,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: String,
    pub user_agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub request_parameters: Option<Value>,
    pub response_elements: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_event_data: Option<AdditionalEventData>,
    #[serde(rename = "requestID")]
    pub request_id: String,
    #[serde(rename = "eventID")]
    pub event_id: String,
    pub read_only: bool,
    #[serde(default)]
    pub resources: Vec<Resource>,
    pub event_type: String,
    pub management_event: bool,
    pub recipient_account_id: String,
    pub event_category: String,
}

/// The local source address atrest records for calls over its Unix sockets.
pub const LOCAL_SOURCE_IP: &str = "127.0.0.1";
/// Default `userAgent` when the caller gives none.
pub const DEFAULT_USER_AGENT: &str = "atrest-cli";

/// A fresh event or request ID: a version 4 UUID from the thread's CSPRNG
/// (`rand::thread_rng`, reseeded from the OS), not `Uuid::new_v4`, which asks the kernel
/// (`getrandom(2)`) each time: two system calls per request, 4% of kmsd's samples under
/// kmsd-bench. IDs need to be unique and unguessable, which these are.
pub fn random_id() -> String {
    random_uuid().to_string()
}

/// A fresh random (version 4) UUID, as [`random_id`] makes, not yet rendered.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

impl TrailRecord {
    /// A successful `AwsApiCall` management event with fresh request and event IDs.
    /// The time is truncated to whole seconds, as CloudTrail's `eventTime` is.
    pub fn api_call(
        event_source: &str,
        event_name: &str,
        aws_region: &str,
        recipient_account_id: &str,
        user_identity: UserIdentity,
        event_time: OffsetDateTime,
    ) -> Self {
        let event_time = event_time
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(event_time);
        TrailRecord {
            event_version: EVENT_VERSION.to_string(),
            user_identity,
            event_time,
            event_source: event_source.to_string(),
            event_name: event_name.to_string(),
            aws_region: aws_region.to_string(),
            source_ip_address: LOCAL_SOURCE_IP.to_string(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            error_code: None,
            error_message: None,
            request_parameters: None,
            response_elements: None,
            additional_event_data: None,
            request_id: random_id(),
            event_id: random_id(),
            read_only: false,
            resources: Vec::new(),
            event_type: "AwsApiCall".to_string(),
            management_event: true,
            recipient_account_id: recipient_account_id.to_string(),
            event_category: "Management".to_string(),
        }
    }

    /// A call to the key service (`kms.amazonaws.com`).
    pub fn kms_call(
        event_name: &str,
        aws_region: &str,
        recipient_account_id: &str,
        user_identity: UserIdentity,
        event_time: OffsetDateTime,
    ) -> Self {
        Self::api_call(
            KMS_SOURCE,
            event_name,
            aws_region,
            recipient_account_id,
            user_identity,
            event_time,
        )
    }

    /// An event written by the volume (`ec2.amazonaws.com`) or object
    /// (`s3.amazonaws.com`) service about a call it served.
    pub fn service_event(
        event_source: &str,
        event_name: &str,
        aws_region: &str,
        recipient_account_id: &str,
        user_identity: UserIdentity,
        event_time: OffsetDateTime,
    ) -> Self {
        Self::api_call(
            event_source,
            event_name,
            aws_region,
            recipient_account_id,
            user_identity,
            event_time,
        )
    }

    pub fn with_request_parameters(mut self, v: Value) -> Self {
        self.request_parameters = Some(v);
        self
    }

    pub fn with_response_elements(mut self, v: Value) -> Self {
        self.response_elements = Some(v);
        self
    }

    /// Marks the call failed: AWS's error code and message are recorded.
    pub fn with_error(mut self, code: &str, message: &str) -> Self {
        self.error_code = Some(code.to_string());
        self.error_message = Some(message.to_string());
        self
    }

    pub fn with_resource(mut self, r: Resource) -> Self {
        self.resources.push(r);
        self
    }

    /// Adds a KMS key (by ARN) to `resources`.
    pub fn with_key(self, key_arn: &str) -> Self {
        self.with_resource(Resource::kms_key(key_arn))
    }

    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    pub fn with_user_agent(mut self, ua: &str) -> Self {
        self.user_agent = ua.to_string();
        self
    }

    pub fn with_source_ip(mut self, ip: &str) -> Self {
        self.source_ip_address = ip.to_string();
        self
    }

    pub fn with_request_id(mut self, id: &str) -> Self {
        self.request_id = id.to_string();
        self
    }

    /// The call came through a service on the caller's behalf: AWS then shows the
    /// service as `invokedBy`, `sourceIPAddress` and `userAgent`.
    pub fn via_service(mut self, service: &str) -> Self {
        self.user_identity.invoked_by = Some(service.to_string());
        self.source_ip_address = service.to_string();
        self.user_agent = service.to_string();
        self
    }

    /// Records the kernel-checked uid of the peer (`additionalEventData.unixUid`).
    pub fn with_unix_uid(mut self, uid: u32) -> Self {
        self.additional_event_data
            .get_or_insert_with(AdditionalEventData::default)
            .unix_uid = Some(uid);
        self
    }

    /// The kernel-checked uid, if recorded.
    pub fn unix_uid(&self) -> Option<u32> {
        self.additional_event_data.as_ref().and_then(|d| d.unix_uid)
    }
}

/// `eventTime` as CloudTrail writes it: `2026-11-23T10:00:00Z`, UTC, whole seconds.
pub mod event_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::macros::format_description;
    use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

    /// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` in UTC.
    pub fn format(t: OffsetDateTime) -> String {
        t.to_offset(UtcOffset::UTC)
            .format(FORMAT)
            .unwrap_or_else(|_| String::from("invalid-time"))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
        PrimitiveDateTime::parse(s, FORMAT).map(|p| p.assume_utc())
    }

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn ids_are_random_version_4_uuids() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| random_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let u = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(u.get_version_num(), 4, "{id}");
            assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    #[test]
    fn kms_call_serializes_like_cloudtrail() {
        let r = TrailRecord::kms_call(
            "Decrypt",
            "us-east-1",
            "111122223333",
            UserIdentity::iam_user("111122223333", "Alice", "AIDAEXAMPLE"),
            datetime!(2026-11-23 10:00:00.750 UTC),
        )
        .with_request_parameters(json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}))
        .with_key("arn:aws:kms:us-east-1:111122223333:key/1234")
        .read_only(true)
        .with_unix_uid(1000)
        .with_request_id("req-1");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["eventVersion"], "1.08");
        assert_eq!(v["eventTime"], "2026-11-23T10:00:00Z");
        assert_eq!(v["eventSource"], "kms.amazonaws.com");
        assert_eq!(v["userIdentity"]["type"], "IAMUser");
        assert_eq!(
            v["userIdentity"]["arn"],
            "arn:aws:iam::111122223333:user/Alice"
        );
        assert_eq!(v["sourceIPAddress"], "127.0.0.1");
        assert_eq!(v["requestID"], "req-1");
        assert!(uuid::Uuid::parse_str(v["eventID"].as_str().unwrap()).is_ok());
        assert_eq!(v["responseElements"], Value::Null);
        assert!(v.get("errorCode").is_none());
        assert_eq!(v["resources"][0]["type"], "AWS::KMS::Key");
        assert_eq!(v["resources"][0]["accountId"], "111122223333");
        assert_eq!(
            v["resources"][0]["ARN"],
            "arn:aws:kms:us-east-1:111122223333:key/1234"
        );
        assert_eq!(v["eventType"], "AwsApiCall");
        assert_eq!(v["eventCategory"], "Management");
        assert_eq!(v["managementEvent"], true);
        assert_eq!(v["readOnly"], true);
        assert_eq!(v["additionalEventData"]["unixUid"], 1000);
        let back: TrailRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn via_service_and_error_fields() {
        let r = TrailRecord::kms_call(
            "CreateGrant",
            "us-east-1",
            "111122223333",
            UserIdentity::assumed_role("111122223333", "Admin", "sess", "AROAX"),
            datetime!(2026-11-23 10:00:00 UTC),
        )
        .via_service(EC2_SOURCE)
        .with_error("AccessDeniedException", "no");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sourceIPAddress"], "ec2.amazonaws.com");
        assert_eq!(v["userIdentity"]["invokedBy"], "ec2.amazonaws.com");
        assert_eq!(v["userIdentity"]["principalId"], "AROAX:sess");
        assert_eq!(v["errorCode"], "AccessDeniedException");
        assert_eq!(r.user_identity.lookup_username().as_deref(), Some("sess"));
    }

    #[test]
    fn identities_from_principal_arns() {
        let u = UserIdentity::from_principal("arn:aws:iam::444455556666:user/UserA", "s").unwrap();
        assert_eq!(u.identity_type, IdentityType::IamUser);
        assert_eq!(u.user_name.as_deref(), Some("UserA"));
        assert_eq!(u.account_id.as_deref(), Some("444455556666"));
        let pid = u.principal_id.unwrap();
        assert!(pid.starts_with("AIDA") && pid.len() == 21, "{pid}");
        let again = UserIdentity::from_principal("arn:aws:iam::444455556666:user/UserA", "x");
        assert_eq!(again.unwrap().principal_id.unwrap(), pid);

        let r =
            UserIdentity::from_principal("arn:aws:iam::111122223333:role/KeyAdmin", "atrest-1000")
                .unwrap();
        assert_eq!(r.identity_type, IdentityType::AssumedRole);
        assert_eq!(
            r.arn.as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/KeyAdmin/atrest-1000")
        );
        assert!(r.principal_id.as_deref().unwrap().ends_with(":atrest-1000"));
        assert_eq!(r.lookup_username().as_deref(), Some("atrest-1000"));
        let s = UserIdentity::from_principal(
            "arn:aws:sts::111122223333:assumed-role/KeyAdmin/bob",
            "ignored",
        )
        .unwrap();
        assert_eq!(s.lookup_username().as_deref(), Some("bob"));
        assert_eq!(
            s.principal_id.unwrap().split(':').next(),
            r.principal_id.unwrap().split(':').next()
        );

        let root = UserIdentity::from_principal("arn:aws:iam::111122223333:root", "s").unwrap();
        assert_eq!(root.identity_type, IdentityType::Root);
        let svc = UserIdentity::from_principal("ec2.amazonaws.com", "s").unwrap();
        assert_eq!(svc.identity_type, IdentityType::AwsService);
        assert_eq!(svc.invoked_by.as_deref(), Some("ec2.amazonaws.com"));

        for bad in [
            "",
            "arn",
            "arn:aws:iam::abc:user/x",
            "arn:aws:iam::1:user/",
            "arn:aws:s3:::bucket",
            "arn:aws:sts::1:assumed-role/r",
        ] {
            assert!(UserIdentity::from_principal(bad, "s").is_none(), "{bad}");
        }
    }

    #[test]
    fn bad_event_time_is_rejected() {
        assert!(event_time::parse("2026-11-23 10:00:00").is_err());
        assert!(event_time::parse("2026-13-23T10:00:00Z").is_err());
    }
}

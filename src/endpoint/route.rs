//! Where a request goes, decided from its headers alone (pure), as AWS's front doors
//! decide it:
//!
//! 1. a SigV4 credential scope naming `s3` is S3, whatever else the request looks like;
//! 2. an `X-Amz-Target` is AWS JSON 1.1: `TrentService.*` is KMS,
//!    `com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.*` CloudTrail, any other
//!    prefix an unknown operation (answered in JSON);
//! 3. a `POST` with a form body (`application/x-www-form-urlencoded`), or any request
//!    with `Action=` in its query string, is the Query protocol: the scope's service
//!    (`sts`, `iam`, `ec2`) picks the service, else the `Action` does;
//! 4. everything else is S3.

use std::borrow::Cow;

use super::sigv4::{self, RequestParts};

/// A JSON 1.1 service the endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonService {
    Kms,
    CloudTrail,
}

impl JsonService {
    pub const ALL: [JsonService; 2] = [JsonService::Kms, JsonService::CloudTrail];

    /// The `X-Amz-Target` prefix, up to and including the dot.
    pub fn target_prefix(self) -> &'static str {
        match self {
            JsonService::Kms => "TrentService.",
            JsonService::CloudTrail => "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.",
        }
    }

    /// The SigV4 signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            JsonService::Kms => "kms",
            JsonService::CloudTrail => "cloudtrail",
        }
    }

    /// kmsd's service of the operations.
    pub fn api_service(self) -> kmsd::api::Service {
        match self {
            JsonService::Kms => kmsd::api::Service::Kms,
            JsonService::CloudTrail => kmsd::api::Service::CloudTrail,
        }
    }
}

/// The decision, borrowing from the request's headers (routing allocates nothing
/// but for a presigned request's decoded scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// AWS JSON 1.1: the service (`None`: a target prefix atrest does not serve) and the
    /// whole target.
    Json {
        service: Option<JsonService>,
        target: &'a str,
    },
    /// The Query protocol; `scope` is the credential scope's service, if signed.
    Query { scope: Option<Cow<'a, str>> },
    /// S3's REST API.
    S3,
}

/// Routes a request by its method, query string and headers.
pub fn route<'a>(parts: &RequestParts<'a>) -> Route<'a> {
    let scope = sigv4::scope_service(parts);
    if scope.as_deref() == Some("s3") {
        return Route::S3;
    }
    let header = |name: &str| {
        parts
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    if let Some(target) = header("x-amz-target") {
        let service = JsonService::ALL
            .into_iter()
            .find(|s| target.starts_with(s.target_prefix()));
        return Route::Json { service, target };
    }
    const FORM: &str = "application/x-www-form-urlencoded";
    let form = parts.method == "POST"
        && header("content-type").is_some_and(|t| {
            t.trim_start()
                .get(..FORM.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(FORM))
        });
    let action_in_query = parts
        .query
        .split('&')
        .any(|p| p.split('=').next() == Some("Action"));
    // A form POST to a bucket is not an S3 request botocore sends; S3's browser
    // uploads are multipart/form-data.
    if form || action_in_query {
        return Route::Query { scope };
    }
    Route::S3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        method: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> Route<'static> {
        let h: &'static [(&str, &[u8])] = Vec::leak(
            headers
                .iter()
                .map(|(k, v)| (*k, v.as_bytes()))
                .collect::<Vec<_>>(),
        );
        route(&RequestParts {
            method,
            path: "/",
            query,
            headers: h,
        })
    }

    const S3_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
    const STS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00";

    #[test]
    fn routes_as_aws_does() {
        assert_eq!(
            r("POST", "", &[("X-Amz-Target", "TrentService.Decrypt")]),
            Route::Json {
                service: Some(JsonService::Kms),
                target: "TrentService.Decrypt"
            }
        );
        assert_eq!(
            r(
                "POST",
                "",
                &[(
                    "x-amz-target",
                    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
                )]
            ),
            Route::Json {
                service: Some(JsonService::CloudTrail),
                target: "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
            }
        );
        assert!(matches!(
            r("POST", "", &[("X-Amz-Target", "DynamoDB_20120810.GetItem")]),
            Route::Json { service: None, .. }
        ));
        assert_eq!(
            r(
                "POST",
                "",
                &[
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded; charset=utf-8"
                    ),
                    ("Authorization", STS_AUTH)
                ]
            ),
            Route::Query {
                scope: Some("sts".into())
            }
        );
        assert_eq!(
            r("GET", "Action=GetCallerIdentity&Version=2011-06-15", &[]),
            Route::Query { scope: None }
        );
        assert_eq!(r("GET", "list-type=2", &[]), Route::S3);
        assert_eq!(r("PUT", "", &[("Authorization", S3_AUTH)]), Route::S3);
        // The S3 scope wins over anything that looks like another protocol.
        assert_eq!(
            r(
                "POST",
                "Action=x",
                &[
                    ("X-Amz-Target", "TrentService.Decrypt"),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Authorization", S3_AUTH)
                ]
            ),
            Route::S3
        );
        assert_eq!(
            r(
                "GET",
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&Action=x",
                &[]
            ),
            Route::S3
        );
        assert_eq!(
            r(
                "POST",
                "",
                &[("Content-Type", "multipart/form-data; boundary=x")]
            ),
            Route::S3
        );
    }
}

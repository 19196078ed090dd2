//! SigV4 verification: the pure core the endpoint checks every JSON and Query request
//! with (S3's requests are verified by `s3s`, which also knows S3's chunked and
//! presigned forms). No I/O: the caller gives the request's parts, the time and the
//! secret; this module answers with the signer or an AWS-shaped [`AuthError`].
//!
//! Verification is in two steps so the body is read only for a request that could be
//! genuine: [`parse`] reads the `Authorization` header (or the query-string form) and
//! [`Authorization::check`] its date, window and scope, all before the body; after
//! the body, [`Authorization::verify`] recomputes the signature (canonical request,
//! string to sign, HMAC-SHA256 key derivation) and compares in constant time.
//! SHA-256 and HMAC are ring's (assembly, with the CPU's SHA extensions when it has
//! them): the two hashes and the HMAC are most of what verifying a request costs.
//!
//! Canonicalization follows AWS's SigV4 rules for services other than S3: the path is
//! normalized and its percent-encoding encoded again, query parameters are decoded and
//! re-encoded (RFC 3986 unreserved characters kept), sorted by name then value; header
//! names are lowercased, values trimmed with inner runs of spaces collapsed, repeated
//! headers joined with `,`. `tests/s3_sigv4_suite.rs` checks it against AWS's
//! published SigV4 test suite.

use ring::{digest, hmac};

/// The algorithm atrest accepts.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's time may be from the server's (AWS: 15 minutes).
pub const WINDOW_SECS: i64 = 15 * 60;
/// The SHA-256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a request does not authenticate: AWS's error kinds, each protocol naming them
/// its own way (see `protocol::AuthErrorNames`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No signature at all.
    #[error("Missing Authentication Token")]
    Missing,
    /// A signature that is malformed or leaves out what it must cover.
    #[error("{0}")]
    Incomplete(String),
    /// A signature that does not verify, or a request outside the time window.
    #[error("{0}")]
    Invalid(String),
    /// Credentials scoped to another service or region than the one called.
    #[error("{0}")]
    Scope(String),
    /// Query-string credentials past their `X-Amz-Expires`.
    #[error("{0}")]
    Expired(String),
}

fn incomplete(m: impl Into<String>) -> AuthError {
    AuthError::Incomplete(m.into())
}

/// The parts of an HTTP request the signature covers. `path` and `query` are as
/// received (still percent-encoded); `headers` are every header, in any order.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> RequestParts<'a> {
    /// Every value of a header (names compared case-insensitively).
    fn header_values<'b>(&'b self, name: &'b str) -> impl Iterator<Item = &'a [u8]> + 'b {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.header_values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Where the signature was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header,
    /// Query-string credentials, valid `expires` seconds from their date.
    Query {
        expires: i64,
    },
}

/// A parsed SigV4 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    pub scope_date: String,
    pub region: String,
    pub service: String,
    /// Lowercase, as listed (sorted by the client).
    pub signed_headers: Vec<String>,
    /// Lowercase hex.
    pub signature: String,
    /// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
    /// `X-Amz-Date` as Unix seconds.
    pub time: i64,
    /// `x-amz-security-token`.
    pub session_token: Option<String>,
    pub location: Location,
}

/// Splits `s` at its first `=`.
fn kv(s: &str) -> (&str, &str) {
    s.split_once('=').unwrap_or((s, ""))
}

/// Decodes `%XX` escapes (a `+` stays a `+`); `None` for a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/`
/// when `keep_slash`).
pub fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) || (keep_slash && c == b'/') {
            out.push(char::from(c));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        }
    }
    out
}

/// Parses `YYYYMMDDTHHMMSSZ` into Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())
            .flatten()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(num(6..8)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(num(9..11)?).ok()?,
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(13..15)?).ok()?,
    )
    .ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// `YYYYMMDDTHHMMSSZ` of Unix seconds.
pub fn format_amz_date(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether the request carries any signature (header or query string).
pub fn is_signed(req: &RequestParts<'_>) -> bool {
    req.header("authorization").is_some()
        || req
            .query
            .split('&')
            .any(|p| kv(p).0 == "X-Amz-Algorithm" || kv(p).0 == "X-Amz-Signature")
}

/// The credential scope's service name, if the request is signed with SigV4 (for
/// routing: it decides between services that share a protocol). Borrowed from the
/// header; from the query string (presigned), decoded.
pub fn scope_service<'a>(req: &RequestParts<'a>) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    match req.header("authorization") {
        Some(h) => {
            let (_, c) = h.split_once("Credential=")?;
            let credential = c.split([',', ' ']).next().unwrap_or("");
            credential.split('/').nth(3).map(Cow::Borrowed)
        }
        None => {
            let p = req
                .query
                .split('&')
                .find(|p| kv(p).0 == "X-Amz-Credential")?;
            let credential = String::from_utf8(percent_decode(kv(p).1)?).ok()?;
            credential
                .split('/')
                .nth(3)
                .map(|s| Cow::Owned(s.to_string()))
        }
    }
}

/// Reads the signature of a request: the `Authorization` header, or the query-string
/// form (`X-Amz-Algorithm`, `X-Amz-Credential`, ...).
pub fn parse(req: &RequestParts<'_>) -> Result<Authorization, AuthError> {
    match req.header("authorization") {
        Some(h) => parse_header(req, h),
        None if is_signed(req) => parse_query(req),
        None => Err(AuthError::Missing),
    }
}

struct Credential {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

fn parse_credential(c: &str) -> Result<Credential, AuthError> {
    let parts: Vec<&str> = c.split('/').collect();
    match parts.as_slice() {
        [id, date, region, service, "aws4_request"] if !id.is_empty() => Ok(Credential {
            access_key_id: id.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        }),
        [.., last] if parts.len() == 5 => Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{last}'."
        ))),
        _ => Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{c}'. Credential should have the form ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request."
        ))),
    }
}

fn parse_header(req: &RequestParts<'_>, h: &str) -> Result<Authorization, AuthError> {
    let Some(rest) = h.strip_prefix(ALGORITHM) else {
        let scheme = h.split_whitespace().next().unwrap_or("");
        return Err(incomplete(format!(
            "Authorization header requires the {ALGORITHM} algorithm; '{scheme}' is not supported. Authorization={h}"
        )));
    };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for field in rest.split(',') {
        let (k, v) = kv(field.trim());
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(format!(
            "{} Authorization={h}",
            missing.join(" ")
        )));
    };
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "{} Authorization={h}",
            missing.join(" ")
        )));
    }
    let c = parse_credential(credential)?;
    let amz_date = req.header("x-amz-date").ok_or_else(|| {
        incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={h}"
        ))
    })?;
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    finish(
        req,
        c,
        signed_headers,
        signature,
        amz_date,
        req.header("x-amz-security-token").map(str::to_string),
        Location::Header,
    )
}

fn parse_query(req: &RequestParts<'_>) -> Result<Authorization, AuthError> {
    let param = |name: &str| -> Option<String> {
        req.query
            .split('&')
            .find(|p| kv(p).0 == name)
            .and_then(|p| percent_decode(kv(p).1))
            .and_then(|v| String::from_utf8(v).ok())
    };
    let mut missing = Vec::new();
    let mut get = |name: &'static str| {
        let v = param(name).filter(|v| !v.is_empty());
        if v.is_none() {
            missing.push(name);
        }
        v
    };
    let algorithm = get("X-Amz-Algorithm");
    let credential = get("X-Amz-Credential");
    let signature = get("X-Amz-Signature");
    let signed = get("X-Amz-SignedHeaders");
    let date = get("X-Amz-Date");
    let expires = get("X-Amz-Expires");
    let (
        Some(algorithm),
        Some(credential),
        Some(signature),
        Some(signed),
        Some(date),
        Some(expires),
    ) = (algorithm, credential, signature, signed, date, expires)
    else {
        return Err(incomplete(format!(
            "AWS query-string parameters must include {}. Re-examine the query-string parameters.",
            missing
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}', not '{algorithm}'"
        )));
    }
    let expires: i64 = expires
        .parse()
        .ok()
        .filter(|e| (1..=604_800).contains(e))
        .ok_or_else(|| incomplete("X-Amz-Expires must be a number of seconds from 1 to 604800"))?;
    let c = parse_credential(&credential)?;
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    finish(
        req,
        c,
        signed_headers,
        &signature,
        &date,
        param("X-Amz-Security-Token"),
        Location::Query { expires },
    )
}

fn finish(
    _req: &RequestParts<'_>,
    c: Credential,
    signed_headers: Vec<String>,
    signature: &str,
    amz_date: &str,
    session_token: Option<String>,
    location: Location,
) -> Result<Authorization, AuthError> {
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        ))
    })?;
    Ok(Authorization {
        access_key_id: c.access_key_id,
        scope_date: c.date,
        region: c.region,
        service: c.service,
        signed_headers,
        signature: signature.to_ascii_lowercase(),
        amz_date: amz_date.to_string(),
        time,
        session_token,
        location,
    })
}

/// How canonicalization treats the path: AWS services other than S3 normalize it and
/// encode it a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    pub normalize: bool,
    pub double_encode: bool,
}

impl PathRules {
    pub const SERVICES: PathRules = PathRules {
        normalize: true,
        double_encode: true,
    };
    pub const S3: PathRules = PathRules {
        normalize: false,
        double_encode: false,
    };
}

impl Authorization {
    /// Checks what can be checked before the body: the request's time is within the
    /// window of `now` (Unix seconds) and matches the scope's date; query-string
    /// credentials have not expired; the scope names `service` and one of `regions`.
    pub fn check(&self, now: i64, service: &str, regions: &[&str]) -> Result<(), AuthError> {
        if !self.amz_date.starts_with(&self.scope_date) {
            return Err(AuthError::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                self.scope_date,
                self.amz_date.get(..8).unwrap_or(""),
                self.amz_date
            )));
        }
        match self.location {
            Location::Header => {
                if self.time < now - WINDOW_SECS {
                    return Err(AuthError::Invalid(format!(
                        "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                        self.amz_date,
                        format_amz_date(now - WINDOW_SECS),
                        format_amz_date(now)
                    )));
                }
                if self.time > now + WINDOW_SECS {
                    return Err(AuthError::Invalid(format!(
                        "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                        self.amz_date,
                        format_amz_date(now + WINDOW_SECS),
                        format_amz_date(now)
                    )));
                }
            }
            Location::Query { expires } => {
                if self.time > now + WINDOW_SECS {
                    return Err(AuthError::Invalid(format!(
                        "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                        self.amz_date,
                        format_amz_date(now + WINDOW_SECS),
                        format_amz_date(now)
                    )));
                }
                if now > self.time.saturating_add(expires) {
                    return Err(AuthError::Expired(format!(
                        "Signature expired: {} is now earlier than {}",
                        format_amz_date(self.time.saturating_add(expires)),
                        format_amz_date(now)
                    )));
                }
            }
        }
        if self.service != service {
            return Err(AuthError::Scope(format!(
                "Credential should be scoped to correct service: '{service}'."
            )));
        }
        if !regions.contains(&self.region.as_str()) {
            return Err(AuthError::Scope(format!(
                "Credential should be scoped to a valid region, not '{}'. This endpoint serves '{}'.",
                self.region,
                regions.first().copied().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// The canonical request (AWS's step 1), for a payload whose SHA-256 is
    /// `payload_hash` (lowercase hex).
    pub fn canonical_request(
        &self,
        req: &RequestParts<'_>,
        rules: PathRules,
        payload_hash: &str,
    ) -> String {
        let mut out = String::with_capacity(256);
        out.push_str(req.method);
        out.push('\n');
        if req.path.is_empty() || req.path == "/" {
            // The common case (every JSON and Query request): nothing to normalize.
            out.push('/');
        } else {
            out.push_str(&canonical_path(req.path, rules));
        }
        out.push('\n');
        if !req.query.is_empty() {
            out.push_str(&canonical_query(req.query, &self.location));
        }
        out.push('\n');
        for name in &self.signed_headers {
            out.push_str(name);
            out.push(':');
            for (i, v) in req.header_values(name).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_canonical_header_value(&mut out, &String::from_utf8_lossy(v));
            }
            out.push('\n');
        }
        out.push('\n');
        for (i, name) in self.signed_headers.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
        }
        out.push('\n');
        out.push_str(payload_hash);
        out
    }

    /// The string to sign (step 2).
    pub fn string_to_sign(&self, canonical_request: &str) -> String {
        let hash =
            lower_hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref());
        let mut out = String::with_capacity(160);
        for part in [
            ALGORITHM,
            "\n",
            &self.amz_date,
            "\n",
            &self.scope_date,
            "/",
            &self.region,
            "/",
            &self.service,
            "/aws4_request\n",
            &hash,
        ] {
            out.push_str(part);
        }
        out
    }

    /// The signing key `secret` derives for this signature's scope (date, region,
    /// service): the same for every request of that scope, so a caller may keep it.
    pub fn signing_key(&self, secret: &str) -> SigningKey {
        SigningKey::derive(secret, &self.scope_date, &self.region, &self.service)
    }

    /// Whether `key` was derived for this signature's scope.
    pub fn is_scope_of(&self, key: &SigningKey) -> bool {
        key.date == self.scope_date && key.region == self.region && key.service == self.service
    }

    /// Verifies the signature over the request and its payload hash.
    pub fn verify(
        &self,
        req: &RequestParts<'_>,
        rules: PathRules,
        payload_hash: &str,
        secret: &str,
    ) -> Result<(), AuthError> {
        self.verify_with(req, rules, payload_hash, &self.signing_key(secret))
    }

    /// [`Authorization::verify`] with the signing key of this signature's scope
    /// ([`Authorization::signing_key`]), already derived.
    pub fn verify_with(
        &self,
        req: &RequestParts<'_>,
        rules: PathRules,
        payload_hash: &str,
        key: &SigningKey,
    ) -> Result<(), AuthError> {
        let canonical = self.canonical_request(req, rules, payload_hash);
        let expected = key.sign(&self.string_to_sign(&canonical));
        if constant_time_eq(expected.as_bytes(), self.signature.as_bytes()) {
            Ok(())
        } else {
            Err(AuthError::Invalid(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
            ))
        }
    }
}

/// A SigV4 signing key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
/// service), "aws4_request")` (wiped on drop; the HMAC state is made per use, so
/// nothing derived from the secret outlives it), and the scope it is for.
pub struct SigningKey {
    key: zeroize::Zeroizing<[u8; 32]>,
    date: String,
    region: String,
    service: String,
}

impl SigningKey {
    pub fn derive(secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
        let mac = |key: &[u8], msg: &[u8]| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
            let mut out = zeroize::Zeroizing::new([0u8; 32]);
            out.copy_from_slice(tag.as_ref());
            out
        };
        let k_secret = zeroize::Zeroizing::new(format!("AWS4{secret}"));
        let k_date = mac(k_secret.as_bytes(), date.as_bytes());
        let k_region = mac(&k_date[..], region.as_bytes());
        let k_service = mac(&k_region[..], service.as_bytes());
        let k_signing = mac(&k_service[..], b"aws4_request");
        SigningKey {
            key: k_signing,
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    /// The signature over `string_to_sign`, as lowercase hex.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.key[..]);
        lower_hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SHA-256 of a payload, as lowercase hex.
pub fn payload_hash(body: &[u8]) -> String {
    lower_hex(digest::digest(&digest::SHA256, body).as_ref())
}

/// Lowercase hex. `hex::encode` goes a `char` at a time through an iterator: three
/// times a request, that was 5% of a Decrypt's instructions.
fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Removes `.` and `..` segments and collapses repeated `/` (RFC 3986 5.2.4), keeping
/// a trailing slash.
fn normalize_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && s.len() > 1 {
        s.push('/');
    }
    s
}

fn canonical_path(path: &str, rules: PathRules) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let path = if rules.normalize {
        normalize_path(path)
    } else {
        path.to_string()
    };
    if rules.double_encode {
        uri_encode(path.as_bytes(), true)
    } else {
        // Single encoding: decode what the client encoded, then encode canonically.
        percent_decode(&path)
            .map(|b| uri_encode(&b, true))
            .unwrap_or(path)
    }
}

fn canonical_query(query: &str, location: &Location) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = kv(p);
            if matches!(location, Location::Query { .. }) && k == "X-Amz-Signature" {
                return None;
            }
            let enc = |s: &str| {
                percent_decode(s)
                    .map(|b| uri_encode(&b, false))
                    .unwrap_or_else(|| s.to_string())
            };
            Some((enc(k), enc(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Appends a header value trimmed, inner runs of whitespace collapsed to one space.
fn push_canonical_header_value(out: &mut String, v: &str) {
    for (i, word) in v.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn headers(auth: &str) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("Host", b"example.amazonaws.com".to_vec()),
            ("X-Amz-Date", b"20150830T123600Z".to_vec()),
            ("Authorization", auth.as_bytes().to_vec()),
        ]
    }

    fn parts<'a>(h: &'a [(&'static str, &'a [u8])]) -> RequestParts<'a> {
        RequestParts {
            method: "GET",
            path: "/",
            query: "",
            headers: h,
        }
    }

    // AWS's get-vanilla case.
    const VANILLA: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    const T: i64 = 1_440_938_160; // 2015-08-30T12:36:00Z

    #[test]
    fn vanilla_verifies_and_anything_else_does_not() {
        let h = headers(VANILLA);
        let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let req = parts(&h);
        let a = parse(&req).unwrap();
        assert_eq!(a.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.time, T);
        a.check(T, "service", &["us-east-1"]).unwrap();
        a.verify(&req, PathRules::SERVICES, EMPTY_SHA256, SECRET)
            .unwrap();
        assert!(matches!(
            a.verify(&req, PathRules::SERVICES, EMPTY_SHA256, "wrong"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            a.verify(&req, PathRules::SERVICES, &payload_hash(b"x"), SECRET),
            Err(AuthError::Invalid(_))
        ));
        let other = RequestParts {
            path: "/other",
            ..req
        };
        assert!(a
            .verify(&other, PathRules::SERVICES, EMPTY_SHA256, SECRET)
            .is_err());
    }

    #[test]
    fn the_window_is_fifteen_minutes_either_way() {
        let h = headers(VANILLA);
        let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let a = parse(&parts(&h)).unwrap();
        a.check(T + 900, "service", &["us-east-1"]).unwrap();
        a.check(T - 900, "service", &["us-east-1"]).unwrap();
        match a.check(T + 901, "service", &["us-east-1"]) {
            Err(AuthError::Invalid(m)) => assert_eq!(
                m,
                "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T125101Z - 15 min.)"
            ),
            other => panic!("{other:?}"),
        }
        match a.check(T - 901, "service", &["us-east-1"]) {
            Err(AuthError::Invalid(m)) => {
                assert!(m.starts_with("Signature not yet current"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.check(T, "kms", &["us-east-1"]),
            Err(AuthError::Scope(m)) if m == "Credential should be scoped to correct service: 'kms'."
        ));
        assert!(matches!(
            a.check(T, "service", &["eu-west-1"]),
            Err(AuthError::Scope(_))
        ));
    }

    #[test]
    fn malformed_signatures_are_incomplete() {
        let cases = [
            ("AWS AKID:sig", "AWS4-HMAC-SHA256 algorithm"),
            ("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=ab", "requires 'Credential'"),
            ("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, Signature=ab", "requires 'SignedHeaders'"),
            ("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=host", "requires 'Signature'"),
            ("AWS4-HMAC-SHA256 Credential=AKID/20150830/service/aws4_request, SignedHeaders=host, Signature=ab", "scoped to a valid region"),
            ("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws5, SignedHeaders=host, Signature=ab", "terminator"),
            ("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=ab", "'Host'"),
        ];
        for (auth, want) in cases {
            let h = headers(auth);
            let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            match parse(&parts(&h)) {
                Err(AuthError::Incomplete(m)) => assert!(m.contains(want), "{auth}: {m}"),
                other => panic!("{auth}: {other:?}"),
            }
        }
        let no_date: Vec<(&str, &[u8])> =
            vec![("host", b"h"), ("authorization", VANILLA.as_bytes())];
        assert!(
            matches!(parse(&parts(&no_date)), Err(AuthError::Incomplete(m)) if m.contains("X-Amz-Date"))
        );
        let none: Vec<(&str, &[u8])> = vec![("host", b"h")];
        assert_eq!(parse(&parts(&none)), Err(AuthError::Missing));
        assert!(!is_signed(&parts(&none)));
        let bad_date: Vec<(&str, &[u8])> = vec![
            ("host", b"h"),
            ("x-amz-date", b"2015-08-30"),
            ("authorization", VANILLA.as_bytes()),
        ];
        assert!(
            matches!(parse(&parts(&bad_date)), Err(AuthError::Incomplete(m)) if m.contains("ISO-8601"))
        );
    }

    #[test]
    fn scope_service_routes() {
        let h = headers(VANILLA);
        let h: Vec<(&str, &[u8])> = h.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        assert_eq!(scope_service(&parts(&h)).as_deref(), Some("service"));
        let q = RequestParts {
            method: "GET",
            path: "/",
            query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fs3%2Faws4_request",
            headers: &[],
        };
        assert_eq!(scope_service(&q).as_deref(), Some("s3"));
        assert!(
            matches!(parse(&q), Err(AuthError::Incomplete(m)) if m.contains("X-Amz-Signature"))
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(T));
        assert_eq!(format_amz_date(T), "20150830T123600Z");
        for bad in [
            "",
            "20150830T123600",
            "2015083xT123600Z",
            "20151330T123600Z",
            "20150830T256000Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        assert_eq!(uri_encode(b"a b/~*", true), "a%20b/~%2A");
        assert_eq!(lower_hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        assert_eq!(payload_hash(b""), EMPTY_SHA256);
        assert_eq!(percent_decode("%41+%zz"), None);
        assert_eq!(percent_decode("%41+"), Some(b"A+".to_vec()));
        assert_eq!(normalize_path("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(normalize_path("/.."), "/");
    }
}

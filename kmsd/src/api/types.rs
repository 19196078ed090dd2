//! Shapes shared by several operations, and the value types whose encoding depends on
//! the format: blobs (base64 in JSON, bytes in postcard) and timestamps (epoch
//! seconds in JSON, Unix milliseconds in postcard).
//!
//! Serde's `is_human_readable()` tells the formats apart: `serde_json` says yes,
//! `postcard` says no. Nothing else in the API needs to know which format it is in.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// AWS's encryption context: bound to ciphertexts as additional authenticated data.
/// A `BTreeMap` so that its canonical encoding does not depend on insertion order.
pub type EncryptionContext = BTreeMap<String, String>;

/// The only encryption algorithm (and key spec) of a symmetric key.
pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

// ---------------------------------------------------------------------------
// Blobs

/// Decodes base64 text into `out` (which the caller zeroizes if it must).
fn decode_base64<E: de::Error>(text: &str, out: &mut Vec<u8>) -> Result<(), E> {
    B64.decode_vec(text.trim_end(), out)
        .map_err(|_| E::custom("a blob member is not valid base64"))
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text or bytes")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        let mut out = Vec::with_capacity(v.len() / 4 * 3);
        decode_base64(v, &mut out)?;
        Ok(out)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// A blob that is not secret (a ciphertext): base64 in JSON, bytes in postcard.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(v)
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Self {
        Blob(v.to_vec())
    }
}

impl std::ops::Deref for Blob {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Blob {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&B64.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BlobVisitor).map(Blob)
        } else {
            d.deserialize_byte_buf(BlobVisitor).map(Blob)
        }
    }
}

/// A secret blob (a plaintext): like [`Blob`], but wiped when dropped, and its
/// `Debug` shows only its length, so a stray `{:?}` in a log never leaks it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBlob(pub Zeroizing<Vec<u8>>);

impl SecretBlob {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBlob(Zeroizing::new(bytes))
    }
    /// The bytes, still wiped when the returned value drops.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBlob {
    fn from(v: Zeroizing<Vec<u8>>) -> Self {
        SecretBlob(v)
    }
}

impl std::ops::Deref for SecretBlob {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl AsRef<[u8]> for SecretBlob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

impl Serialize for SecretBlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let text = Zeroizing::new(B64.encode(self.0.as_slice()));
            s.serialize_str(&text)
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Zeroizing<Vec<u8>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("base64 text or bytes")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = Zeroizing::new(Vec::with_capacity(v.len() / 4 * 3 + 3));
        decode_base64(v, &mut out)?;
        Ok(out)
    }
    fn visit_string<E: de::Error>(self, mut v: String) -> Result<Self::Value, E> {
        let out = self.visit_str(&v);
        v.zeroize();
        out
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(Zeroizing::new(v))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096)));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(SecretVisitor).map(SecretBlob)
        } else {
            d.deserialize_byte_buf(SecretVisitor).map(SecretBlob)
        }
    }
}

// ---------------------------------------------------------------------------
// Timestamps

/// How timestamps appear in JSON: AWS's wire (epoch seconds, a number), or the
/// AWS CLI's printout (`2026-11-23T09:20:42.123000+00:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampStyle {
    EpochSeconds,
    AwsCli,
}

thread_local! {
    static STYLE: Cell<TimestampStyle> = const { Cell::new(TimestampStyle::EpochSeconds) };
}

/// Runs `f` with timestamps written in `style` on this thread (the JSON edge of the
/// CLI prints what botocore would have parsed; see [`super::json::to_cli_value`]).
pub(crate) fn with_timestamp_style<T>(style: TimestampStyle, f: impl FnOnce() -> T) -> T {
    struct Restore(TimestampStyle);
    impl Drop for Restore {
        fn drop(&mut self) {
            STYLE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STYLE.with(|s| s.replace(style)));
    f()
}

/// A point in time: Unix milliseconds in postcard, epoch seconds (a JSON number,
/// fractional when it has milliseconds) in AWS JSON, as botocore reads `timestamp`
/// members of JSON protocols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_i64(self.0);
        }
        match STYLE.with(Cell::get) {
            TimestampStyle::AwsCli => s.serialize_str(&plumbing::awstime::format_aws(self.0)),
            TimestampStyle::EpochSeconds if self.0 % 1000 == 0 => s.serialize_i64(self.0 / 1000),
            // f64 holds every millisecond of the next few hundred thousand years exactly
            // enough to round back: 53 bits of mantissa.
            TimestampStyle::EpochSeconds => s.serialize_f64(self.0 as f64 / 1000.0),
        }
    }
}

struct EpochVisitor;

impl Visitor<'_> for EpochVisitor {
    type Value = Timestamp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timestamp in epoch seconds")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
        v.checked_mul(1000)
            .map(Timestamp)
            .ok_or_else(|| E::custom("timestamp out of range"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
        i64::try_from(v)
            .map_err(|_| E::custom("timestamp out of range"))
            .and_then(|v| self.visit_i64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
        let ms = (v * 1000.0).round();
        // i64::MIN/MAX as f64 are exact powers of two; anything past them (or NaN) is out.
        if ms.is_finite() && ms >= i64::MIN as f64 && ms < i64::MAX as f64 {
            Ok(Timestamp(ms as i64))
        } else {
            Err(E::custom("timestamp out of range"))
        }
    }
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = Timestamp;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unix milliseconds")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
        Ok(Timestamp(v))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            d.deserialize_any(EpochVisitor)
        } else {
            d.deserialize_i64(MillisVisitor)
        }
    }
}

// ---------------------------------------------------------------------------
// Socket-only members

/// A member atrest's own socket carries but AWS's JSON does not have (written as
/// `null`, which the JSON edge drops; ignored when read from JSON). Use with
/// `#[serde(default, with = "socket_only")]`.
pub mod socket_only {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: Deserialize<'de> + Default,
        D: Deserializer<'de>,
    {
        if d.is_human_readable() {
            serde::de::IgnoredAny::deserialize(d)?;
            Ok(T::default())
        } else {
            T::deserialize(d)
        }
    }
}

// ---------------------------------------------------------------------------
// Shapes

/// The state of a KMS key. The keystore stores the same spelling; append new
/// states at the END (postcard indices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A tag on a key (AWS's `Tag`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

/// `KeySpec` of a data key (AWS's `DataKeySpec`). Append at the END.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataKeySpec {
    #[serde(rename = "AES_256")]
    Aes256,
    #[serde(rename = "AES_128")]
    Aes128,
}

impl DataKeySpec {
    /// The data key's length in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DataKeySpec::Aes256 => 32,
            DataKeySpec::Aes128 => 16,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DataKeySpec::Aes256 => "AES_256",
            DataKeySpec::Aes128 => "AES_128",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AES_256" => Some(DataKeySpec::Aes256),
            "AES_128" => Some(DataKeySpec::Aes128),
            _ => None,
        }
    }
}

/// What `DescribeKey` and `CreateKey` say about a key (AWS's `KeyMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub key_id: String,
    pub arn: String,
    pub creation_date: Timestamp,
    pub enabled: bool,
    pub description: String,
    /// `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    pub key_state: KeyState,
    pub deletion_date: Option<Timestamp>,
    /// Only for multi-Region replica keys in AWS: always `None` here.
    pub pending_deletion_window_in_days: Option<i32>,
    /// `AWS_KMS`.
    pub origin: String,
    /// `CUSTOMER` or `AWS`.
    pub key_manager: String,
    /// `SYMMETRIC_DEFAULT` (AWS still returns the deprecated name beside `KeySpec`).
    pub customer_master_key_spec: String,
    /// `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    pub encryption_algorithms: Vec<String>,
    pub multi_region: bool,
    /// The backing-key version new ciphertexts use (1 until the first rotation).
    /// atrest's socket only: AWS names key material with an opaque ID instead.
    #[serde(default, with = "socket_only")]
    pub current_key_material_version: u32,
}

/// A grant's `Constraints` (AWS's `GrantConstraints`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    #[serde(default)]
    pub encryption_context_subset: Option<EncryptionContext>,
    #[serde(default)]
    pub encryption_context_equals: Option<EncryptionContext>,
}

/// The response of an operation AWS answers with an empty body (`{}` in JSON,
/// nothing in postcard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

//! TEMPORARY until the kmsd branch lands: the calls the volume service makes to kmsd.
//! Replaced by the real client wiring at merge time.

use std::path::PathBuf;

use kmsd::home::Layout;
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::service::Caller;

pub type KmsCode = String;

pub fn code_str(c: &KmsCode) -> &str {
    c
}

#[derive(Debug, Clone)]
pub struct WrappedKey {
    pub blob: Vec<u8>,
    pub key_arn: String,
    pub context: std::collections::BTreeMap<String, String>,
}

pub struct Kms {
    socket: PathBuf,
}

pub fn region_and_account(_layout: &Layout) -> Result<(String, String), Ec2Error> {
    Ok(("us-east-1".into(), "111122223333".into()))
}

fn missing(socket: &std::path::Path) -> Ec2Error {
    Ec2Error::new(
        Ec2Code::ServiceUnavailable,
        format!("kmsd client not merged yet ({})", socket.display()),
    )
}

impl Kms {
    pub fn new(layout: &Layout, _account: &str, _region: &str) -> Kms {
        Kms {
            socket: layout.kmsd_socket(),
        }
    }
    pub fn new_data_key(
        &self,
        _c: &Caller,
        _key: &str,
        _res: &str,
    ) -> Result<WrappedKey, Ec2Error> {
        Err(missing(&self.socket))
    }
    pub fn decrypt_data_key(
        &self,
        _c: &Caller,
        _w: &WrappedKey,
    ) -> Result<Zeroizing<Vec<u8>>, Ec2Error> {
        Err(missing(&self.socket))
    }
}

#[derive(Debug, Clone)]
pub struct GrantRef {
    pub grant_id: String,
    pub key_arn: String,
}

impl Kms {
    pub fn caller_principal(&self, _uid: u32, act_as: Option<&str>) -> String {
        act_as
            .map(str::to_string)
            .unwrap_or_else(|| "arn:aws:iam::111122223333:user/root".into())
    }
    pub fn create_instance_grant(
        &self,
        _c: &Caller,
        _i: &str,
        _v: &str,
        _w: &WrappedKey,
    ) -> Result<Option<GrantRef>, Ec2Error> {
        Err(missing(&self.socket))
    }
    pub fn decrypt_for_instance(
        &self,
        _c: &Caller,
        _i: &str,
        _w: &WrappedKey,
        _g: Option<&GrantRef>,
    ) -> Result<Zeroizing<Vec<u8>>, Ec2Error> {
        Err(missing(&self.socket))
    }
    pub fn retire_grant(&self, _g: &GrantRef) {}
    pub fn record_event(
        &self,
        _c: &Caller,
        _event: &str,
        _resources: &[String],
        _error: Option<&Ec2Error>,
    ) {
    }
}

//! Every call the volume service makes to kmsd, in one place, so the grant and trail
//! wiring (the policy/trail step) drops in here and nowhere else.
//!
//! The service always calls kmsd "via ec2.amazonaws.com on behalf of" the caller,
//! with `kms:GrantIsForAWSResource` true, the way EBS calls KMS.
//!
//! TO BE FILLED by the grant/trail wiring:
//! - [`Kms::create_instance_grant`]: today returns `Ok(None)` (kmsd has no CreateGrant
//!   yet) and the instance's Decrypt goes directly on the caller's behalf.
//! - [`Kms::retire_grant`]: today has nothing to retire.
//! - [`Kms::record_event`]: today logs through `tracing` only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kmsd::client::{ClientError, DataKeySize, KmsClient};
use kmsd::config::Config;
use kmsd::home::Layout;
use kmsd::protocol::{DecryptRequest, ViaService};
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::service::Caller;

/// kmsd's error codes, carried inside [`Ec2Code::Kms`].
pub type KmsCode = kmsd::protocol::ErrorCode;

pub fn code_str(c: &KmsCode) -> &'static str {
    c.as_str()
}

/// The encryption-context key EBS binds data keys to.
pub const EBS_CONTEXT_KEY: &str = "aws:ebs:id";
/// The service principal the volume service speaks as.
pub const EC2_SERVICE: &str = "ec2.amazonaws.com";
/// An XTS-AES-256 key: two 256-bit halves.
pub const DATA_KEY_BYTES: u32 = 64;

/// A data key as kmsd returned it (ciphertext only), with what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub blob: Vec<u8>,
    /// The ARN of the KMS key that wraps it.
    pub key_arn: String,
    pub context: BTreeMap<String, String>,
}

/// A grant made for an instance (filled by the grant wiring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRef {
    pub grant_id: String,
    pub grant_token: String,
    pub key_arn: String,
    pub grantee: String,
}

pub struct Kms {
    socket: PathBuf,
    config: Config,
}

/// The region and account from HOME/config.toml (defaults us-east-1, 111122223333).
pub fn region_and_account(layout: &Layout) -> Result<(String, String), Ec2Error> {
    let c = Config::load(&layout.config(), false).map_err(|e| Ec2Error::internal(e.to_string()))?;
    Ok((c.region, c.account))
}

/// `{"aws:ebs:id": id}`.
pub fn ebs_context(resource_id: &str) -> BTreeMap<String, String> {
    let mut ctx = BTreeMap::new();
    ctx.insert(EBS_CONTEXT_KEY.to_string(), resource_id.to_string());
    ctx
}

/// The principal an instance decrypts as: `ACCOUNT:aws:ec2-infrastructure:INSTANCE-ID`.
pub fn instance_grantee(account: &str, instance_id: &str) -> String {
    format!("{account}:aws:ec2-infrastructure:{instance_id}")
}

fn from_client(e: ClientError) -> Ec2Error {
    match e {
        ClientError::Kms(k) => Ec2Error::new(Ec2Code::Kms(k.code), k.message),
        ClientError::Unreachable { .. } => {
            Ec2Error::new(Ec2Code::ServiceUnavailable, e.to_string())
        }
        other => Ec2Error::internal(other.to_string()),
    }
}

impl Kms {
    pub fn new(layout: &Layout) -> Kms {
        Kms {
            socket: layout.kmsd_socket(),
            config: Config::load(&layout.config(), false).unwrap_or_default(),
        }
    }

    /// The principal a local uid acts as (or the `--as` ARN it asked for; kmsd
    /// decides whether that uid may).
    pub fn caller_principal(&self, uid: u32, act_as: Option<&str>) -> String {
        match act_as {
            Some(a) => a.to_string(),
            None => {
                let user = kmsd::server::username(uid).unwrap_or_else(|| format!("uid-{uid}"));
                self.config.default_principal_for(&user, uid)
            }
        }
    }

    /// A client speaking for `caller` via ec2.amazonaws.com.
    fn on_behalf_of(&self, caller: &Caller) -> Result<KmsClient, Ec2Error> {
        Ok(KmsClient::connect(&self.socket)
            .map_err(from_client)?
            .acting_as(caller.principal.clone())
            .via(ViaService {
                service: EC2_SERVICE.into(),
                on_behalf_of: Some(caller.principal.clone()),
                grant_is_for_aws_resource: true,
            }))
    }

    /// A new 512-bit data key for `resource_id` (a volume, or a snapshot copy), wrapped
    /// by `key_id`: GenerateDataKeyWithoutPlaintext, NumberOfBytes 64, context
    /// `{"aws:ebs:id": resource_id}`. Nobody sees the plaintext.
    pub fn new_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        resource_id: &str,
    ) -> Result<WrappedKey, Ec2Error> {
        let ctx = ebs_context(resource_id);
        let resp = self
            .on_behalf_of(caller)?
            .generate_data_key_without_plaintext(key_id, DataKeySize::Bytes(DATA_KEY_BYTES), &ctx)
            .map_err(from_client)?;
        Ok(WrappedKey {
            blob: resp.ciphertext_blob,
            key_arn: resp.key_id,
            context: ctx,
        })
    }

    /// Decrypts a data key on the caller's behalf (copies and restores, which EBS does
    /// for the caller).
    pub fn decrypt_data_key(
        &self,
        caller: &Caller,
        w: &WrappedKey,
    ) -> Result<Zeroizing<Vec<u8>>, Ec2Error> {
        let resp = self
            .on_behalf_of(caller)?
            .decrypt(&w.blob, &w.context, Some(&w.key_arn))
            .map_err(from_client)?;
        Ok(resp.plaintext)
    }

    /// THE GRANT STEP (to be filled by the grant wiring). What it must do, as EBS:
    /// `CreateGrant` on `caller`'s behalf (via ec2.amazonaws.com,
    /// `kms:GrantIsForAWSResource` true) on `w.key_arn` with
    /// GranteePrincipal = [`instance_grantee`]`(account, instance_id)`,
    /// Operations = [Decrypt], Constraints.EncryptionContextSubset = `w.context`
    /// (`{"aws:ebs:id": volume_id}`), Name = the volume ID; return the grant ID and
    /// token. A refusal (key disabled or pending deletion, caller lacks
    /// kms:CreateGrant) is returned as the kmsd error and fails the launch.
    ///
    /// Until kmsd speaks CreateGrant this returns `Ok(None)` and
    /// [`Kms::decrypt_for_instance`] decrypts directly on the caller's behalf.
    pub fn create_instance_grant(
        &self,
        caller: &Caller,
        instance_id: &str,
        volume_id: &str,
        w: &WrappedKey,
    ) -> Result<Option<GrantRef>, Ec2Error> {
        let _ = (
            caller,
            instance_id,
            volume_id,
            w,
            instance_grantee(&self.config.account, instance_id),
        );
        Ok(None)
    }

    /// Decrypt of an attached volume's data key for a launching instance: as the
    /// grantee with the grant's token when there is a grant, else (until the grant
    /// wiring) on the caller's behalf.
    pub fn decrypt_for_instance(
        &self,
        caller: &Caller,
        instance_id: &str,
        w: &WrappedKey,
        grant: Option<&GrantRef>,
    ) -> Result<Zeroizing<Vec<u8>>, Ec2Error> {
        let client = match grant {
            Some(g) => KmsClient::connect(&self.socket)
                .map_err(from_client)?
                .acting_as(g.grantee.clone())
                .via(ViaService {
                    service: EC2_SERVICE.into(),
                    on_behalf_of: Some(instance_grantee(&self.config.account, instance_id)),
                    grant_is_for_aws_resource: true,
                }),
            None => self.on_behalf_of(caller)?,
        };
        let resp = client
            .decrypt_request(DecryptRequest {
                ciphertext_blob: w.blob.clone(),
                encryption_context: w.context.clone(),
                key_id: Some(w.key_arn.clone()),
                grant_tokens: grant
                    .map(|g| vec![g.grant_token.clone()])
                    .unwrap_or_default(),
                encryption_algorithm: None,
            })
            .map_err(from_client)?;
        if resp.plaintext.len() != DATA_KEY_BYTES as usize {
            return Err(Ec2Error::internal(format!(
                "kmsd returned a {}-byte data key; volumes use {DATA_KEY_BYTES}",
                resp.plaintext.len()
            )));
        }
        Ok(resp.plaintext)
    }

    /// RetireGrant of an instance's grant when it stops or the volume is detached
    /// (to be filled by the grant wiring; today there are no grants to retire).
    pub fn retire_grant(&self, g: &GrantRef) {
        tracing::info!(grant = %g.grant_id, key = %g.key_arn, "grant to retire (RetireGrant not wired yet)");
    }

    /// Records an EC2 event (StartInstances, ...) in the one trail kmsd keeps (to be
    /// filled by the trail wiring; today only logged). Called before the launch's
    /// CreateGrant, so the trail shows StartInstances first.
    pub fn record_event(
        &self,
        caller: &Caller,
        event: &str,
        resources: &[String],
        error: Option<&Ec2Error>,
    ) {
        match error {
            None => tracing::info!(principal = %caller.principal, ?resources, "ec2 event {event}"),
            Some(e) => {
                tracing::info!(principal = %caller.principal, ?resources, "ec2 event {event} failed: {e}")
            }
        }
    }
}

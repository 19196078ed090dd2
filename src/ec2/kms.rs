//! Every call the volume service makes to kmsd, in one place, so the grant and trail
//! wiring (the policy/trail step) drops in here and nowhere else.
//!
//! The service always calls kmsd "via ec2.amazonaws.com on behalf of" the caller,
//! with `kms:GrantIsForAWSResource` true, the way EBS calls KMS.
//!
//! An instance's volumes are decrypted as EBS does: a grant to the instance's
//! infrastructure identity (`ACCOUNT:aws:ec2-infrastructure:INSTANCE`), used with its
//! token, retired when the volume stops being served. EC2 events go to kmsd's trail
//! through `RecordEvent`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kmsd::client::site::SiteConfig;
use kmsd::client::{ClientError, DataKeySize, KmsClient};
use kmsd::protocol::{
    CreateGrantRequest, DecryptRequest, GrantConstraints, ListRetirableGrantsRequest,
    RecordEventRequest, RetireGrantRequest, ViaService,
};
use plumbing::home::Layout;
use zeroize::Zeroizing;

use super::error::{Ec2Code, Ec2Error};
use super::model::{Caller, GrantRef, WrappedKey};

/// The encryption-context key EBS binds data keys to.
pub const EBS_CONTEXT_KEY: &str = "aws:ebs:id";
/// The service principal the volume service speaks as.
pub const EC2_SERVICE: &str = "ec2.amazonaws.com";
/// An XTS-AES-256 key: two 256-bit halves.
pub const DATA_KEY_BYTES: u32 = 64;

/// kmsd answered a Decrypt for an instance with a key volumes cannot use.
#[derive(Debug, thiserror::Error)]
#[error("kmsd returned a {len}-byte data key; volumes use {DATA_KEY_BYTES}")]
pub struct DataKeySizeError {
    pub len: usize,
}

pub struct Kms {
    socket: PathBuf,
    site: SiteConfig,
    /// One kmsd connection kept for `ResolveCaller`, asked on every request: a request
    /// needs no new descriptor to learn who its caller is, so a flood of idle ec2.sock
    /// clients that takes the service's spare descriptors cannot make every request
    /// fail with "cannot reach kmsd (Too many open files)". Dropped after a transport
    /// failure and opened again on the next request.
    resolver: std::sync::Mutex<Option<KmsClient>>,
}

/// The region and account from HOME/config.toml (defaults us-east-1, 111122223333).
pub fn region_and_account(layout: &Layout) -> Result<(String, String), Ec2Error> {
    let c = SiteConfig::load(&layout.config())
        .map_err(|e| Ec2Error::caused_by(Ec2Code::InternalError, &e))?;
    Ok((c.region, c.account))
}

/// `{"aws:ebs:id": id}`.
pub fn ebs_context(resource_id: &str) -> BTreeMap<String, String> {
    let mut ctx = BTreeMap::new();
    ctx.insert(EBS_CONTEXT_KEY.to_string(), resource_id.to_string());
    ctx
}

/// The account of an IAM or STS principal ARN (`arn:aws:iam::ACCOUNT:user/NAME`).
pub fn account_of(principal: &str) -> Option<&str> {
    let mut parts = principal.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("iam" | "sts"), Some(""), Some(account))
            if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(account)
        }
        _ => None,
    }
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
        other => Ec2Error::caused_by(Ec2Code::InternalError, &other),
    }
}

impl Kms {
    pub fn new(layout: &Layout) -> Kms {
        Kms {
            socket: layout.kmsd_socket(),
            site: SiteConfig::load(&layout.config()).unwrap_or_default(),
            resolver: std::sync::Mutex::new(None),
        }
    }

    /// kmsd's `ResolveCaller` through the kept connection (the `resolver` field), for
    /// the uid and its `--as` claim, or for the SigV4 signer the endpoint (`uid`) sent.
    fn resolve_caller(
        &self,
        uid: u32,
        act_as: Option<&str>,
        signer: Option<&kmsd::protocol::Signer>,
    ) -> Result<kmsd::protocol::ResolveCallerResponse, ClientError> {
        let mut kept = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        let client = match kept.take() {
            Some(c) => c,
            None => KmsClient::connect(&self.socket)?,
        };
        let answer = match signer {
            Some(s) => client.resolve_signer(uid, s),
            None => client.resolve_caller(uid, act_as),
        };
        // kmsd's own refusals leave the connection good; anything else, a new one next time.
        if matches!(&answer, Ok(_) | Err(ClientError::Kms(_))) {
            *kept = Some(client);
        }
        answer
    }

    /// The principal a local uid is served as: its own, or the principal an `--as` ARN
    /// stands for (a role becomes its session) if the config lets that uid act as it, as
    /// kmsd decides for its own callers (kmsd answers: `ResolveCaller`); otherwise
    /// `UnauthorizedOperation`. kmsd trusts this service to speak for anyone, so this is
    /// the check; kmsd unreachable is `ServiceUnavailable`.
    pub fn caller_principal(&self, uid: u32, act_as: Option<&str>) -> Result<String, Ec2Error> {
        let resolved = self
            .resolve_caller(uid, act_as, None)
            .map_err(|e| match e {
                ClientError::Kms(k) => Ec2Error::new(Ec2Code::UnauthorizedOperation, k.message),
                other => from_client(other),
            })?;
        Ok(resolved.principal_arn)
    }

    /// The principal a request of `uid` is served as: the [`caller_principal`] of the
    /// uid and its `--as` claim, or, for a request the AWS endpoint sends for a SigV4
    /// `signer`, the signer's principal. A signer is trusted only from the uids kmsd's
    /// config lists as the endpoint (`[kmsd] endpoint_uids`: kmsd says, in its answer
    /// to `ResolveCaller`), and never beside an `--as` claim; otherwise `AuthFailure`.
    /// kmsd checks the signer's access key in the same `ResolveCaller` (the endpoint
    /// keeps keys it has resolved): a key deleted or deactivated since is refused with
    /// kmsd's `UnrecognizedClientException` (the endpoint answers EC2's `AuthFailure`),
    /// an expired session with `ExpiredTokenException`.
    ///
    /// [`caller_principal`]: Kms::caller_principal
    pub fn request_principal(
        &self,
        uid: u32,
        act_as: Option<&str>,
        signer: Option<&kmsd::protocol::Signer>,
    ) -> Result<String, Ec2Error> {
        let Some(signer) = signer else {
            return self.caller_principal(uid, act_as);
        };
        if act_as.is_some() {
            return Err(Ec2Error::new(
                Ec2Code::InvalidParameterCombination,
                "a request for a SigV4 signer cannot also act as another principal",
            ));
        }
        let resolved = self
            .resolve_caller(uid, None, Some(signer))
            .map_err(from_client)?;
        if !resolved.trusted_as_endpoint {
            let user = plumbing::peer::display_name(uid);
            return Err(Ec2Error::new(
                Ec2Code::AuthFailure,
                format!(
                    "uid {uid} ({user}) is not trusted as the AWS endpoint: only the uids \
                     kmsd's config lists in [kmsd] endpoint_uids may send requests for a signer"
                ),
            ));
        }
        Ok(resolved.principal_arn)
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
            blob: resp.ciphertext_blob.into_vec(),
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
        Ok(resp.plaintext.into_zeroizing())
    }

    /// THE GRANT STEP, as EBS does it: `CreateGrant` on `caller`'s behalf (via
    /// ec2.amazonaws.com, `kms:GrantIsForAWSResource` true) on `w.key_arn` with
    /// GranteePrincipal = [`instance_grantee`]`(account, instance_id)`,
    /// RetiringPrincipal = `ec2.REGION.amazonaws.com`, Operations = [Decrypt],
    /// Constraints.EncryptionContextSubset = `w.context` (`{"aws:ebs:id": volume_id}`),
    /// Name = the volume ID. A refusal (key disabled or pending deletion, caller lacks
    /// kms:CreateGrant) is returned as the kmsd error and fails the launch; kmsd
    /// records the CreateGrant (allowed or refused) in the trail.
    pub fn create_instance_grant(
        &self,
        caller: &Caller,
        instance: (&str, &str),
        volume_id: &str,
        w: &WrappedKey,
    ) -> Result<GrantRef, Ec2Error> {
        let (instance_id, owner_arn) = instance;
        // The instance lives in its owner's account, which may not be the key's (a
        // cross-account key): the grantee is that account's EC2 identity, whoever starts it.
        let account = account_of(owner_arn).unwrap_or(&self.site.account);
        let grantee = instance_grantee(account, instance_id);
        let (grant_id, grant_token) = self
            .on_behalf_of(caller)?
            .create_grant(CreateGrantRequest {
                key_id: w.key_arn.clone(),
                grantee_principal: grantee.clone(),
                retiring_principal: Some(self.retiring_principal()),
                operations: vec!["Decrypt".into()],
                constraints: Some(GrantConstraints {
                    encryption_context_equals: None,
                    encryption_context_subset: Some(w.context.clone()),
                }),
                name: Some(volume_id.to_string()),
                grant_tokens: Vec::new(),
            })
            .map_err(from_client)?;
        Ok(GrantRef {
            grant_id,
            grant_token,
            key_arn: w.key_arn.clone(),
            grantee,
        })
    }

    /// `ec2.REGION.amazonaws.com`: the retiring principal of instance grants.
    fn retiring_principal(&self) -> String {
        kmsd::protocol::via_service_value(EC2_SERVICE, &self.site.region)
    }

    /// Decrypt of an attached volume's data key for a launching instance: as the
    /// grant's grantee (the instance's EC2 identity), with the grant's token, as EBS does.
    pub fn decrypt_for_instance(
        &self,
        w: &WrappedKey,
        g: &GrantRef,
    ) -> Result<Zeroizing<Vec<u8>>, Ec2Error> {
        let client = KmsClient::connect(&self.socket)
            .map_err(from_client)?
            .acting_as(g.grantee.clone())
            .via(ViaService {
                service: EC2_SERVICE.into(),
                on_behalf_of: Some(g.grantee.clone()),
                grant_is_for_aws_resource: true,
            });
        let resp = client
            .decrypt_request(DecryptRequest {
                ciphertext_blob: w.blob.clone().into(),
                encryption_context: w.context.clone(),
                key_id: Some(w.key_arn.clone()),
                grant_tokens: vec![g.grant_token.clone()],
                encryption_algorithm: None,
            })
            .map_err(from_client)?;
        if resp.plaintext.len() != DATA_KEY_BYTES as usize {
            return Err(Ec2Error::caused_by(
                Ec2Code::InternalError,
                &DataKeySizeError {
                    len: resp.plaintext.len(),
                },
            ));
        }
        Ok(resp.plaintext.into_zeroizing())
    }

    /// RetireGrant of an instance's grant when it stops, the volume is detached or
    /// the launch fails: sent by ec2.amazonaws.com itself (the grant's retiring
    /// principal). A failure is logged, not raised: the caller is already tearing
    /// down, and the grant stays visible in ListGrants (and revocable) if it remains.
    pub fn retire_grant(&self, g: &GrantRef) {
        let res = self.as_ec2_itself().and_then(|c| {
            c.retire_grant(RetireGrantRequest {
                grant_token: None,
                key_id: Some(g.key_arn.clone()),
                grant_id: Some(g.grant_id.clone()),
            })
        });
        match res {
            Ok(()) => {
                tracing::info!(grant = %g.grant_id, key = %g.key_arn, "retired instance grant")
            }
            Err(e) => {
                tracing::error!(grant = %g.grant_id, key = %g.key_arn, "cannot retire instance grant: {e}")
            }
        }
    }

    /// The volume service speaking for itself (the retiring principal of its grants).
    fn as_ec2_itself(&self) -> Result<KmsClient, ClientError> {
        Ok(KmsClient::connect(&self.socket)?
            .acting_as(EC2_SERVICE)
            .via(ViaService {
                service: EC2_SERVICE.into(),
                on_behalf_of: Some(EC2_SERVICE.into()),
                grant_is_for_aws_resource: true,
            }))
    }

    /// At start, when nothing is served yet: retires every instance grant this service
    /// made and did not retire (it was killed or crashed while instances ran), so no
    /// Decrypt grant outlives the launch it was made for. Returns how many; failures are
    /// logged (kmsd may not be up yet: the grants then stay visible in ListGrants).
    pub fn retire_stale_grants(&self) -> usize {
        let retiring = self.retiring_principal();
        let mut stale = Vec::new();
        let mut marker = None;
        loop {
            let page = self.as_ec2_itself().and_then(|c| {
                c.list_retirable_grants(ListRetirableGrantsRequest {
                    retiring_principal: retiring.clone(),
                    limit: None,
                    marker: marker.clone(),
                })
            });
            match page {
                Ok((grants, next)) => {
                    stale.extend(
                        grants
                            .into_iter()
                            .filter(|g| g.grantee_principal.contains(":aws:ec2-infrastructure:")),
                    );
                    match next {
                        Some(m) => marker = Some(m),
                        None => break,
                    }
                }
                Err(e) => {
                    tracing::warn!("cannot list the grants left from a previous run: {e}");
                    return 0;
                }
            }
        }
        for g in &stale {
            self.retire_grant(&GrantRef {
                grant_id: g.grant_id.clone(),
                grant_token: String::new(),
                key_arn: g.key_id.clone(),
                grantee: g.grantee_principal.clone(),
            });
        }
        if !stale.is_empty() {
            tracing::warn!(
                count = stale.len(),
                "retired instance grants left by a previous run of the volume service"
            );
        }
        stale.len()
    }

    /// Records an EC2 event (StartInstances, CreateVolume, ...) in the one trail kmsd
    /// keeps, as `ec2.amazonaws.com` on behalf of the caller. Called before a launch's
    /// CreateGrant, so the trail shows StartInstances first.
    ///
    /// A failure to record is logged (`tracing::error`), not raised: these are
    /// management events, not key use. Every key use the operation makes (CreateGrant,
    /// GenerateDataKey, Decrypt) is a kmsd request that kmsd itself refuses when its
    /// trail cannot record it, so "no unlogged key use" holds either way.
    pub fn record_event(
        &self,
        caller: &Caller,
        event: &str,
        resources: &[String],
        error: Option<&Ec2Error>,
    ) {
        let req = RecordEventRequest {
            event_source: EC2_SERVICE.into(),
            event_name: event.to_string(),
            principal: Some(caller.principal.clone()),
            request_parameters_json: Some(
                serde_json::json!({ "resourceIds": resources }).to_string(),
            ),
            response_elements_json: None,
            error_code: error.map(|e| e.code.as_str().to_string()),
            error_message: error.map(|e| e.message.clone()),
            read_only: false,
            resources: resources
                .iter()
                .map(|id| ec2_resource(&self.site.region, &self.site.account, id))
                .collect(),
            user_agent: caller.signer.as_ref().and_then(|s| s.user_agent.clone()),
            source_ip_address: caller.signer.as_ref().map(|s| s.source_ip.clone()),
            access_key_id: caller.signer.as_ref().map(|s| s.access_key_id.clone()),
        };
        let res = self
            .on_behalf_of(caller)
            .and_then(|c| c.record_event(req).map_err(from_client));
        if let Err(e) = res {
            tracing::error!(principal = %caller.principal, ?resources, "cannot record ec2 event {event} in the trail: {e}");
        }
    }
}

/// `(type, ARN)` of an EC2 resource ID for a trail record's `resources`.
pub fn ec2_resource(region: &str, account: &str, id: &str) -> (String, String) {
    let (ty, kind) = if id.starts_with("vol-") {
        ("AWS::EC2::Volume", "volume")
    } else if id.starts_with("snap-") {
        ("AWS::EC2::Snapshot", "snapshot")
    } else if id.starts_with("ami-") {
        ("AWS::EC2::Image", "image")
    } else {
        ("AWS::EC2::Instance", "instance")
    };
    (
        ty.to_string(),
        format!("arn:aws:ec2:{region}:{account}:{kind}/{id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_of_iam_and_sts_arns() {
        assert_eq!(
            account_of("arn:aws:iam::444455556666:user/UserA"),
            Some("444455556666")
        );
        assert_eq!(
            account_of("arn:aws:sts::111122223333:assumed-role/voclabs/s"),
            Some("111122223333")
        );
        assert_eq!(account_of("arn:aws:iam::12:user/x"), None);
        assert_eq!(account_of("ec2.amazonaws.com"), None);
        assert_eq!(account_of("arn:aws:kms:us-east-1:111122223333:key/k"), None);
        assert_eq!(
            instance_grantee("444455556666", "i-1"),
            "444455556666:aws:ec2-infrastructure:i-1"
        );
    }
}

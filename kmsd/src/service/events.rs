//! The trail-facing requests: services recording their own events
//! (`RecordEvent`), `LookupEvents`, and reloading the configuration.

use serde_json::Value;

use super::audit::{AuditEvent, AuditIdentity};
use super::directory::Directory;
use super::{Call, Caller, KeyService};
use crate::api::{
    ErrorCode, Event, Handle, KmsError, LookupEventsRequest, LookupEventsResponse,
    RecordEventRequest, RecordEventResponse, ReloadConfigRequest, ReloadConfigResponse, Resource,
    Timestamp,
};
use crate::trail::lookup::{LookupEvent, LookupPage};
use crate::trail::{LookupError, LookupQuery};

/// Most bytes a service event's JSON parts may have together.
const MAX_EVENT_JSON: usize = 64 * 1024;

fn parse_json_object(field: &str, text: Option<&str>) -> Result<Value, KmsError> {
    let Some(t) = text else {
        return Ok(Value::Null);
    };
    match serde_json::from_str::<Value>(t) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(KmsError::validation(format!(
            "{field} must be a JSON object"
        ))),
        Err(e) => Err(KmsError::validation(format!(
            "{field} is not valid JSON: {e}"
        ))),
    }
}

fn lookup_error(e: LookupError) -> KmsError {
    let code = match &e {
        LookupError::InvalidLookupAttributes(_) => ErrorCode::InvalidLookupAttributesException,
        LookupError::InvalidTimeRange(_) => ErrorCode::InvalidTimeRangeException,
        LookupError::InvalidMaxResults(_) => ErrorCode::InvalidMaxResultsException,
        LookupError::InvalidNextToken(_) => ErrorCode::InvalidNextTokenException,
        LookupError::Trail(_) => ErrorCode::KMSInternalException,
    };
    KmsError::new(code, e.to_string())
}

impl KeyService {
    /// Writes a trusted service's event to the trail. The peer must be trusted as
    /// the event's source and come via it; the principal it names (default: whom
    /// the request is on behalf of) is recorded, with the service as `invokedBy`.
    pub(crate) fn record_service_event(
        &self,
        caller: &Caller,
        r: &RecordEventRequest,
    ) -> Result<RecordEventResponse, KmsError> {
        let via = caller.via.as_ref().filter(|v| v.service == r.event_source);
        if via.is_none() {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "uid {} ({}) may record {} events only via {} as a trusted service (config: [[uids]] services)",
                    caller.uid, caller.user, r.event_source, r.event_source
                ),
            ));
        }
        let name_ok = !r.event_name.is_empty()
            && r.event_name.len() <= 128
            && r.event_name.bytes().all(|b| b.is_ascii_alphanumeric());
        if !name_ok {
            return Err(KmsError::validation(format!(
                "eventName {:?} must be an operation name like StartInstances",
                r.event_name
            )));
        }
        let json_len = r.request_parameters_json.as_ref().map_or(0, String::len)
            + r.response_elements_json.as_ref().map_or(0, String::len);
        if json_len > MAX_EVENT_JSON {
            return Err(KmsError::validation(format!(
                "requestParameters and responseElements together exceed {MAX_EVENT_JSON} bytes"
            )));
        }
        let request_parameters =
            parse_json_object("requestParameters", r.request_parameters_json.as_deref())?;
        let response_elements =
            parse_json_object("responseElements", r.response_elements_json.as_deref())?;
        let mut identity = AuditIdentity::from_caller(caller);
        if let Some(p) = &r.principal {
            let resolved = self.directory().resolve_on_behalf_of(p)?;
            identity.account = resolved
                .principal
                .account
                .clone()
                .unwrap_or_default()
                .into();
            identity.principal_arn = resolved.principal.arn.into();
        }
        let mut event = AuditEvent::new(
            &r.event_source,
            &r.event_name,
            self.now_ms(),
            identity,
            &self.config.region,
        );
        event.request_parameters = request_parameters;
        event.response_elements = response_elements;
        event.error_code = r.error_code.clone();
        event.error_message = r.error_message.clone();
        event.read_only = r.read_only;
        event.resources = r.resources.clone();
        event.user_agent = r.user_agent.clone();
        event.source_ip = r.source_ip_address.clone();
        event.access_key_id = r.access_key_id.clone();
        let event_id = event.event_id.to_string();
        self.audit.record(event).map_err(|e| {
            tracing::error!(error = %e, "audit trail unavailable: refusing a service event");
            KmsError::internal("The event was refused because the audit trail could not record it.")
        })?;
        Ok(RecordEventResponse { event_id })
    }
}

/// A service event reaches its handler only through [`KeyService::handle`], which
/// records it as its own trail record (never also as a KMS call).
impl Handle<Call<'_>, RecordEventRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: RecordEventRequest,
    ) -> Result<RecordEventResponse, KmsError> {
        self.record_service_event(cx.caller, &r)
    }
}

/// A LookupEvents event as the API carries it.
fn api_event(e: LookupEvent) -> Result<Event, KmsError> {
    let time = time::OffsetDateTime::parse(
        &e.event_time,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|err| KmsError::internal(format!("event time {:?}: {err}", e.event_time)))?;
    Ok(Event {
        event_id: e.event_id,
        event_name: e.event_name,
        read_only: e.read_only,
        access_key_id: e.access_key_id,
        event_time: Timestamp::from_secs(time.unix_timestamp()),
        event_source: e.event_source,
        username: e.username,
        resources: e
            .resources
            .into_iter()
            .map(|r| Resource {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
            })
            .collect(),
        cloud_trail_event: e.cloud_trail_event,
    })
}

impl Handle<Call<'_>, LookupEventsRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        r: LookupEventsRequest,
    ) -> Result<LookupEventsResponse, KmsError> {
        let caller = cx.caller;
        self.authorize(
            caller,
            "cloudtrail:LookupEvents",
            None,
            &super::authz::RequestContext::default(),
        )?;
        let Some(dir) = &self.trail_dir else {
            return Err(KmsError::new(
                ErrorCode::UnsupportedOperationException,
                "this kmsd keeps no trail",
            ));
        };
        let time = |t: Option<Timestamp>, field: &str| {
            t.map(|t| t.as_secs())
                .map(|s| {
                    time::OffsetDateTime::from_unix_timestamp(s).map_err(|_| {
                        KmsError::new(
                            ErrorCode::InvalidTimeRangeException,
                            format!("{field} {s} is out of range"),
                        )
                    })
                })
                .transpose()
        };
        let query = LookupQuery {
            attribute: None,
            start_time: time(r.start_time, "StartTime")?,
            end_time: time(r.end_time, "EndTime")?,
            max_results: r.max_results.map(i64::from),
            next_token: r.next_token,
        }
        .with_attributes(
            &r.lookup_attributes
                .into_iter()
                .map(|a| (a.attribute_key, a.attribute_value))
                .collect::<Vec<_>>(),
        )
        .map_err(lookup_error)?;
        let LookupPage { events, next_token } =
            crate::trail::lookup::lookup_dir(dir, &query).map_err(lookup_error)?;
        Ok(LookupEventsResponse {
            events: events
                .into_iter()
                .map(api_event)
                .collect::<Result<_, _>>()?,
            next_token,
        })
    }
}

/// Re-reads the configuration and swaps it in whole; on any error the running
/// configuration stays. Only kmsd's own uid and root may (they can send SIGHUP).
impl Handle<Call<'_>, ReloadConfigRequest> for KeyService {
    fn handle(
        &self,
        cx: &mut Call<'_>,
        _r: ReloadConfigRequest,
    ) -> Result<ReloadConfigResponse, KmsError> {
        let caller = cx.caller;
        let me = self.directory().self_uid();
        if caller.uid != 0 && caller.uid != me {
            return Err(KmsError::new(
                ErrorCode::AccessDeniedException,
                format!(
                    "uid {} ({}) may not reload kmsd's configuration: only root and kmsd's own uid {me} may",
                    caller.uid, caller.user
                ),
            ));
        }
        let reloaded = self
            .reload()
            .map_err(|e| KmsError::validation(e.to_string()))?;
        Ok(ReloadConfigResponse { reloaded })
    }
}

impl KeyService {
    /// Reloads the configuration (ReloadConfig, SIGHUP). Returns a summary, or why
    /// the new configuration was refused (the old one stays in force).
    pub fn reload(&self) -> Result<String, ReloadError> {
        let Some(src) = &self.reload else {
            return Err(ReloadError::NoSource);
        };
        let config = crate::config::Config::load(&src.config_path, src.required)?;
        if config.region != self.config.region || config.account != self.config.account {
            tracing::warn!("region and account changes take effect only after a restart");
        }
        let uids = config.uids.len();
        let dir = Directory::build(config.clone(), Some(&src.home), self.directory().self_uid())?;
        // The IAM store adopts what the new config declares, and the directory is
        // swapped in with the store's policies while IAM changes wait.
        let now = self.now_ms();
        let mut summary = String::new();
        self.iam.change(
            |f| Ok::<_, ReloadError>(((), super::iam::adopt_declared(f, &config, now))),
            |f, _| {
                let dir = dir.with_store(&crate::iam::compile(f)?);
                summary = format!(
                    "{uids} uid rule(s), {} IAM user(s)/role(s) with policies",
                    dir.iam_entities()
                );
                self.set_directory(dir);
                Ok(())
            },
        )?;
        tracing::info!(%summary, "configuration reloaded");
        Ok(summary)
    }
}

/// Why a configuration reload was refused (the configuration in force stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this kmsd was started without a config source to reload")]
    NoSource,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Directory(#[from] super::directory::DirectoryError),
    #[error(transparent)]
    IamStore(#[from] crate::iam::store::IamStoreError),
    #[error("the IAM store does not compile: {0}")]
    IamFile(#[from] crate::iam::IamFileError),
}

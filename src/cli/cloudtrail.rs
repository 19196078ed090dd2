//! `atrest cloudtrail ...`: look up events and validate the trail's hash chain.
//!
//! `lookup-events` asks kmsd (`LookupEvents`) when it is running, so the lookup is
//! authorized (`cloudtrail:LookupEvents` in the caller's IAM policies) and itself
//! recorded, as in AWS; when kmsd is not running it reads `HOME/trail/` with kmsd's
//! read-only trail reader (`kmsd::trail::reader`)
//! (the trail is append-only and a reader ignores a line still being written; file
//! permissions, 0700, are then the only guard). `validate-logs` always reads the files.

use kmsd::trail::reader::{self, LookupPage, LookupQuery, Report, TrailReader};

use super::{report_error, Global};

#[derive(Debug, clap::Args)]
pub struct CloudtrailArgs {
    #[command(subcommand)]
    pub command: CloudtrailCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CloudtrailCommand {
    /// Looks up management events, newest first (CloudTrail LookupEvents).
    LookupEvents(LookupEventsArgs),
    /// Verifies the hash chain of every trail segment and names the first broken link.
    ValidateLogs(ValidateLogsArgs),
}

#[derive(Debug, clap::Args)]
pub struct LookupEventsArgs {
    /// One filter, `AttributeKey=EventSource,AttributeValue=kms.amazonaws.com` (keys:
    /// EventId, EventName, ReadOnly, Username, ResourceType, ResourceName, EventSource,
    /// AccessKeyId), or the JSON form `[{"AttributeKey":..,"AttributeValue":..}]`.
    #[arg(long, num_args = 1.., value_name = "AttributeKey=KEY,AttributeValue=VALUE")]
    pub lookup_attributes: Vec<String>,
    /// Only events at or after this time (`2026-11-23T10:00:00Z`, a date, or epoch seconds).
    #[arg(long, value_name = "TIME")]
    pub start_time: Option<String>,
    /// Only events at or before this time.
    #[arg(long, value_name = "TIME")]
    pub end_time: Option<String>,
    /// Events per page, 1 to 50 (default 50).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_results: Option<i64>,
    /// The NextToken of the previous page.
    #[arg(long, value_name = "TOKEN")]
    pub next_token: Option<String>,
}

/// `validate-logs` prints a summary unless `--output json|table` or `--query` asks
/// for the report itself.
#[derive(Debug, clap::Args)]
pub struct ValidateLogsArgs {}

pub fn run(g: &Global, args: CloudtrailArgs) -> i32 {
    match args.command {
        CloudtrailCommand::LookupEvents(a) => lookup_events(g, a),
        CloudtrailCommand::ValidateLogs(a) => validate_logs(g, a),
    }
}

const LOOKUP_OP: &str = "LookupEvents";

fn lookup_events(g: &Global, a: LookupEventsArgs) -> i32 {
    let mut pairs = Vec::new();
    for raw in &a.lookup_attributes {
        match parse_attributes(raw) {
            Ok(p) => pairs.extend(p),
            Err(e) => {
                return report_error(
                    LOOKUP_OP,
                    "InvalidLookupAttributesException",
                    &e.to_string(),
                )
            }
        }
    }
    let mut times = [None, None];
    for (slot, (opt, value)) in times
        .iter_mut()
        .zip([("--start-time", &a.start_time), ("--end-time", &a.end_time)])
    {
        if let Some(v) = value {
            match plumbing::awstime::parse_cli_time(v) {
                Some(t) => *slot = Some(t),
                None => {
                    return report_error(
                        LOOKUP_OP,
                        "InvalidTimeRangeException",
                        &format!(
                            "{opt} {v:?} is not a time: use 2026-11-23T10:00:00Z, 2026-11-23 or epoch seconds"
                        ),
                    )
                }
            }
        }
    }
    let [start_time, end_time] = times;
    let query = LookupQuery {
        start_time,
        end_time,
        max_results: a.max_results,
        next_token: a.next_token,
        attribute: None,
    }
    .with_attributes(&pairs);
    let query = match query.and_then(|q| reader::check(&q).map(|()| q)) {
        Ok(q) => q,
        Err(e) => return report_error(LOOKUP_OP, e.code(), &e.to_string()),
    };
    let page = match lookup_via_kmsd(g, &pairs, &query) {
        Some(Ok(p)) => p,
        Some(Err(kmsd::client::ClientError::Kms(e))) => {
            return report_error(LOOKUP_OP, e.code.as_str(), &e.message)
        }
        Some(Err(e)) => return report_error(LOOKUP_OP, "InternalFailure", &e.to_string()),
        None => match TrailReader::new(g.layout().trail_dir()).lookup(&query) {
            Ok(p) => p,
            Err(e) => return report_error(LOOKUP_OP, e.code(), &e.to_string()),
        },
    };
    match serde_json::to_value(&page) {
        Ok(v) => g.output.emit(LOOKUP_OP, &v),
        Err(e) => report_error(LOOKUP_OP, "InternalFailure", &e.to_string()),
    }
}

/// LookupEvents through kmsd; `None` when kmsd is not running (the caller falls
/// back to reading the files). kmsd's refusal comes back as its typed error, whose AWS
/// code and message the caller prints.
fn lookup_via_kmsd(
    g: &Global,
    pairs: &[(String, String)],
    q: &LookupQuery,
) -> Option<Result<LookupPage, kmsd::client::ClientError>> {
    use kmsd::client::{ClientError, KmsClient};
    let client = match KmsClient::connect(g.kmsd_socket()) {
        Ok(c) => c,
        Err(ClientError::Unreachable { .. }) => return None,
        Err(e) => return Some(Err(e)),
    };
    let client = match &g.act_as {
        Some(arn) => client.acting_as(arn.clone()),
        None => client,
    };
    let req = kmsd::protocol::LookupEventsRequest {
        lookup_attributes: pairs
            .iter()
            .map(|(k, v)| kmsd::protocol::LookupAttribute::new(k, v))
            .collect(),
        start_time: q
            .start_time
            .map(|t| kmsd::protocol::Timestamp::from_secs(t.unix_timestamp())),
        end_time: q
            .end_time
            .map(|t| kmsd::protocol::Timestamp::from_secs(t.unix_timestamp())),
        // Past i32 (AWS's integer), still refused by kmsd as over 50.
        max_results: q.max_results.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        next_token: q.next_token.clone(),
    };
    Some(client.lookup_events(req).map(LookupPage::from))
}

/// Why a `--lookup-attributes` value cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AttributeError {
    #[error("--lookup-attributes: {0}")]
    Syntax(#[from] plumbing::shorthand::ShorthandError),
    #[error("each lookup attribute is an object with AttributeKey and AttributeValue, not {0}")]
    NotAnObject(serde_json::Value),
    #[error("lookup attribute {0} needs a string AttributeKey and a string AttributeValue")]
    Missing(serde_json::Value),
    #[error("lookup attribute {item} has an unknown member {member:?}: expected AttributeKey=KEY,AttributeValue=VALUE")]
    Unknown {
        item: serde_json::Value,
        member: String,
    },
}

/// Parses one `--lookup-attributes` value: shorthand or JSON (one object or a list).
pub fn parse_attributes(raw: &str) -> Result<Vec<(String, String)>, AttributeError> {
    let items = match plumbing::shorthand::parse(raw)? {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    items
        .into_iter()
        .map(|item| {
            let serde_json::Value::Object(m) = &item else {
                return Err(AttributeError::NotAnObject(item));
            };
            if let Some(member) = m
                .keys()
                .find(|k| *k != "AttributeKey" && *k != "AttributeValue")
            {
                return Err(AttributeError::Unknown {
                    member: member.clone(),
                    item: item.clone(),
                });
            }
            let field = |k: &str| m.get(k).and_then(|x| x.as_str()).map(str::to_string);
            match (field("AttributeKey"), field("AttributeValue")) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(AttributeError::Missing(item.clone())),
            }
        })
        .collect()
}

const VALIDATE_OP: &str = "ValidateLogs";

fn validate_logs(g: &Global, _: ValidateLogsArgs) -> i32 {
    let trail = TrailReader::new(g.layout().trail_dir());
    let dir = trail.dir();
    if !trail.exists() {
        return report_error(
            VALIDATE_OP,
            "TrailNotFoundException",
            &format!(
                "no trail at {} (has kmsd run with this home?)",
                dir.display()
            ),
        );
    }
    let report = match trail.validate() {
        Ok(r) => r,
        Err(e) => return report_error(VALIDATE_OP, "InternalFailure", &e.to_string()),
    };
    use super::output::OutputFormat;
    let summary =
        g.output.query.is_none() && matches!(g.output.output, None | Some(OutputFormat::Text));
    if summary {
        print!("{}", render_report(dir, &report));
    } else {
        let printed = match serde_json::to_value(&report) {
            Ok(v) => g.output.emit(VALIDATE_OP, &v),
            Err(e) => return report_error(VALIDATE_OP, "InternalFailure", &e.to_string()),
        };
        if printed != 0 {
            return printed;
        }
    }
    match &report.broken {
        None => 0,
        Some(b) => {
            eprintln!("Trail INVALID: {b}");
            1
        }
    }
}

/// The human summary of a validation walk.
pub fn render_report(dir: &std::path::Path, r: &Report) -> String {
    let range = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
        _ => String::new(),
    };
    let mut out = format!(
        "Validating trail {}: {} segment(s), {} event(s){range}\n",
        dir.display(),
        r.segments,
        r.events
    );
    if let Some(seg) = r.anchored_at {
        out.push_str(&format!(
            "Segments before {} were removed by retention; the chain is anchored there.\n",
            reader::segment_file_name(seg)
        ));
    }
    if r.torn_tail_bytes > 0 {
        out.push_str(&format!(
            "Note: the newest segment ends in {} bytes of an unacknowledged write (a crash mid-append); kmsd removes them when it next opens the trail.\n",
            r.torn_tail_bytes
        ));
    }
    match &r.broken {
        None => out.push_str("Hash chain valid: every event links to the one before it.\n"),
        Some(_) => out.push_str(&format!(
            "Hash chain BROKEN after {} valid event(s).\n",
            r.events
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_and_json_attributes() {
        assert_eq!(
            parse_attributes("AttributeKey=EventSource,AttributeValue=kms.amazonaws.com").unwrap(),
            vec![("EventSource".to_string(), "kms.amazonaws.com".to_string())]
        );
        assert_eq!(
            parse_attributes(r#"[{"AttributeKey":"EventName","AttributeValue":"Decrypt"}]"#)
                .unwrap(),
            vec![("EventName".to_string(), "Decrypt".to_string())]
        );
        assert!(parse_attributes("EventSource=kms").is_err());
        assert!(parse_attributes("AttributeKey=EventSource").is_err());
        assert!(parse_attributes("[1]").is_err());
    }
}

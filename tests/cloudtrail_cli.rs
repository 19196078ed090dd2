//! `atrest cloudtrail ...` run as the built binary against a temporary home.

use std::path::Path;
use std::process::{Command, Output};

use kmsd::testing::trail::record::{TrailRecord, UserIdentity, EC2_SOURCE};
use kmsd::testing::trail::{EventClass, TrailConfig, TrailWriter};
use time::macros::datetime;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn atrest(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atrest"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 12 KMS events (one refused CreateGrant) and 6 ec2 events, a minute apart.
fn seed(home: &Path) {
    let w = TrailWriter::open(TrailConfig {
        max_segment_bytes: 5000,
        ..TrailConfig::new(home.join("trail"))
    })
    .unwrap();
    let alice = UserIdentity::iam_user("111122223333", "Alice", "AIDAALICE");
    for i in 0..18i64 {
        let t = datetime!(2026-11-23 10:00:00 UTC) + time::Duration::minutes(i);
        let r = if i % 3 == 2 {
            TrailRecord::service_event(
                EC2_SOURCE,
                "StartInstances",
                "us-east-1",
                "111122223333",
                alice.clone(),
                t,
            )
        } else if i == 7 {
            TrailRecord::kms_call("CreateGrant", "us-east-1", "111122223333", alice.clone(), t)
                .via_service(EC2_SOURCE)
                .with_key(KEY)
                .with_error("AccessDeniedException", "User: arn:aws:iam::111122223333:user/Alice is not authorized to perform: kms:CreateGrant")
        } else {
            TrailRecord::kms_call("Decrypt", "us-east-1", "111122223333", alice.clone(), t)
                .with_key(KEY)
                .read_only(true)
                .with_unix_uid(1000)
        };
        w.append(&r, EventClass::StateChange).unwrap();
    }
}

#[test]
fn lookup_events_json_paging_and_table() {
    let tmp = tempfile::tempdir().unwrap();
    seed(tmp.path());
    let mut token: Option<String> = None;
    let mut names = Vec::new();
    let mut times = Vec::new();
    let mut pages = 0;
    loop {
        let mut args = vec![
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=EventSource,AttributeValue=kms.amazonaws.com",
            "--max-results",
            "5",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let o = atrest(tmp.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        pages += 1;
        for e in v["Events"].as_array().unwrap() {
            assert_eq!(e["EventSource"], "kms.amazonaws.com");
            assert_eq!(e["Username"], "Alice");
            assert_eq!(e["Resources"][0]["ResourceType"], "AWS::KMS::Key");
            assert_eq!(e["Resources"][0]["ResourceName"], KEY);
            let inner: serde_json::Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap();
            assert_eq!(inner["eventID"], e["EventId"]);
            names.push(e["EventName"].as_str().unwrap().to_string());
            times.push(inner["eventTime"].as_str().unwrap().to_string());
        }
        match v.get("NextToken").and_then(|t| t.as_str()) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 12);
    assert_eq!(names.iter().filter(|n| *n == "CreateGrant").count(), 1);
    assert_eq!(times[0], "2026-11-23T10:16:00Z");
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // The AWS CLI's table, titled with the operation, one row per event; the page
    // token is not a raw line of it.
    let o = atrest(
        tmp.path(),
        &[
            "cloudtrail",
            "lookup-events",
            "--output",
            "table",
            "--query",
            "Events[*].[EventTime, EventName, EventSource, Resources[0].ResourceName]",
            "--start-time",
            "2026-11-23T10:06:00Z",
            "--end-time",
            "2026-11-23T10:08:00Z",
            "--max-results",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    assert!(lines[0].chars().all(|c| c == '-'), "{table}");
    assert!(
        lines[1].starts_with('|') && lines[1].contains("LookupEvents"),
        "{table}"
    );
    assert!(lines[3].contains("StartInstances") && lines[3].contains("ec2.amazonaws.com"));
    assert!(
        lines[4].contains("CreateGrant") && lines[4].contains(KEY),
        "{table}"
    );
    assert!(!table.contains("NextToken"), "{table}");
}

#[test]
fn lookup_events_errors_are_aws_shaped() {
    let tmp = tempfile::tempdir().unwrap();
    seed(tmp.path());
    let cases: &[(&[&str], &str)] = &[
        (&["--max-results", "51"], "InvalidMaxResultsException"),
        (&["--max-results", "0"], "InvalidMaxResultsException"),
        (
            &[
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=Decrypt",
                "AttributeKey=Username,AttributeValue=Alice",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            &[
                "--lookup-attributes",
                "AttributeKey=Color,AttributeValue=red",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            &["--lookup-attributes", "EventName=Decrypt"],
            "InvalidLookupAttributesException",
        ),
        (
            &["--start-time", "2026-11-24", "--end-time", "2026-11-23"],
            "InvalidTimeRangeException",
        ),
        (&["--start-time", "soon"], "InvalidTimeRangeException"),
        (
            &["--next-token", "not-a-token"],
            "InvalidNextTokenException",
        ),
    ];
    for (extra, code) in cases {
        let mut args = vec!["cloudtrail", "lookup-events"];
        args.extend_from_slice(extra);
        let o = atrest(tmp.path(), &args);
        assert!(!o.status.success(), "{extra:?} should fail");
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "An error occurred ({code}) when calling the LookupEvents operation"
            )),
            "{extra:?}: {err}"
        );
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn validate_logs_ok_then_names_the_tampered_line() {
    let tmp = tempfile::tempdir().unwrap();
    seed(tmp.path());
    let o = atrest(tmp.path(), &["cloudtrail", "validate-logs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("18 event(s)") && out.contains("Hash chain valid"),
        "{out}"
    );

    let seg = tmp.path().join("trail").join("segment-00000002.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let v: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let id = v["record"]["eventID"].as_str().unwrap().to_string();
    lines[2] = lines[2].replacen("Alice", "Alicx", 1);
    std::fs::write(&seg, lines.join("\n") + "\n").unwrap();

    let o = atrest(tmp.path(), &["cloudtrail", "validate-logs"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("segment-00000002.jsonl line 3"), "{err}");
    assert!(err.contains(&id), "{err}");
    assert!(err.contains("edited record"), "{err}");
    assert!(stdout(&o).contains("BROKEN"));

    let o = atrest(
        tmp.path(),
        &["cloudtrail", "validate-logs", "--output", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["broken"]["kind"], "EditedRecord");
    assert_eq!(v["broken"]["line"], 3);
}

#[test]
fn validate_logs_without_a_trail_is_trail_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let o = atrest(tmp.path(), &["cloudtrail", "validate-logs"]);
    assert_eq!(o.status.code(), Some(254));
    assert!(stderr(&o).contains("TrailNotFoundException"));
    // Lookup on an empty home is simply empty, as in AWS.
    let o = atrest(tmp.path(), &["cloudtrail", "lookup-events"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["Events"].as_array().unwrap().len(), 0);
}

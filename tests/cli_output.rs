//! `--query` and `--output` on every service, compared byte for byte with the stock AWS
//! CLI's own formatters (`awscli.formatter` from the project venv, through
//! tests/fixtures/aws_format.py) over the same response, with the JMESPath expressions
//! of AWS's troubleshooting articles ("Why did my EC2 instance go from pending to
//! stopped?": `Reservations[*].Instances[*].StateReason`, the CreateGrant events; KMS
//! key state and grants) and others: projections, filters, multiselects, pipes.
//!
//! The venv is made by scripts/install-deps.sh (scripts/test.sh runs it); `ATREST_VENV`
//! may name another one. Without it these tests fail: they never skip.

mod ec2_support;
mod s3_common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use atrest::cli::output::{OutputArgs, OutputFormat, Terminal};
use ec2_support::Lab;
use serde_json::json;

const FORMATS: [(&str, OutputFormat); 4] = [
    ("json", OutputFormat::Json),
    ("text", OutputFormat::Text),
    ("table", OutputFormat::Table),
    ("yaml", OutputFormat::Yaml),
];

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("ATREST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-deps.sh (or set ATREST_VENV)",
        py.display()
    );
    py
}

/// What `aws ... --output FORMAT [--query QUERY]` prints for `response`.
fn aws_prints(operation: &str, format: &str, query: Option<&str>, response: &[u8]) -> String {
    match aws_formats(operation, format, query, response) {
        Ok(s) => s,
        Err(e) => panic!("aws_format.py failed: {e}"),
    }
}

/// As [`aws_prints`], or the formatter's exception (awscli raises on some shapes, e.g.
/// a table of lists of unequal lengths).
fn aws_formats(
    operation: &str,
    format: &str,
    query: Option<&str>,
    response: &[u8],
) -> Result<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws_format.py");
    let mut child = Command::new(venv_python())
        .arg(script)
        .args([operation, format, query.unwrap_or("")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(response).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).unwrap())
}

/// Runs `atrest ARGS` (plain JSON) and then, for each format, with `--output FORMAT
/// --query QUERY`: each must print what the AWS CLI prints for that JSON.
fn same_as_aws(
    run: &dyn Fn(&[&str]) -> std::process::Output,
    operation: &str,
    args: &[&str],
    query: Option<&str>,
) {
    let plain = run(args);
    assert!(
        plain.status.success(),
        "atrest {args:?}: {}",
        String::from_utf8_lossy(&plain.stderr)
    );
    for (name, _) in FORMATS {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--output", name]);
        if let Some(q) = query {
            all.extend(["--query", q]);
        }
        let got = run(&all);
        assert!(
            got.status.success(),
            "atrest {all:?}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        let want = aws_prints(operation, name, query, &plain.stdout);
        assert_eq!(
            String::from_utf8(got.stdout).unwrap(),
            want,
            "atrest {all:?} differs from the AWS CLI"
        );
    }
}

/// KMS, EC2 (volumes and an instance stopped by a disabled key), CloudTrail and
/// `atrest status`, against a real kmsd and volume service.
#[test]
fn every_service_prints_as_the_aws_cli() {
    let mut lab = Lab::start();
    lab.start_daemon();
    let (key, vol) = lab.encrypted_volume("alias/app");
    let key_id = key.rsplit('/').next().unwrap().to_string();
    let inst = lab.run_on_root(&vol, None);
    lab.ec2(&["wait", "instance-running", "--instance-ids", &inst]);
    lab.ec2(&["stop-instances", "--instance-ids", &inst]);
    lab.ec2(&["wait", "instance-stopped", "--instance-ids", &inst]);
    lab.disable_key(&key);
    lab.ec2(&["start-instances", "--instance-ids", &inst]);
    lab.until(30, "the instance to stop on the disabled key", || {
        lab.instance(&inst)["State"]["Name"] == "stopped"
            && !lab.instance(&inst)["StateReason"].is_null()
    });
    let data = lab.new_volume(&["--size", "2"]);
    lab.run_ok(&["attach", &data]);

    let run = |args: &[&str]| lab.run(args);
    let filter_key = format!("Keys[?KeyId=='{key_id}']");
    let cases: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        ("ListKeys", vec!["kms", "list-keys"], None),
        ("ListKeys", vec!["kms", "list-keys"], Some("Keys[*].KeyId")),
        ("ListKeys", vec!["kms", "list-keys"], Some(&filter_key)),
        (
            "DescribeKey",
            vec!["kms", "describe-key", "--key-id", &key_id],
            None,
        ),
        (
            "DescribeKey",
            vec!["kms", "describe-key", "--key-id", &key_id],
            Some("KeyMetadata.KeyState"),
        ),
        (
            "DescribeKey",
            vec!["kms", "describe-key", "--key-id", &key_id],
            Some("KeyMetadata.[KeyId, KeyState, Enabled]"),
        ),
        (
            "ListAliases",
            vec!["kms", "list-aliases"],
            Some("Aliases[?AliasName=='alias/app'].TargetKeyId | [0]"),
        ),
        (
            "ListGrants",
            vec!["kms", "list-grants", "--key-id", &key_id],
            Some("Grants[*].[GrantId, GranteePrincipal, Operations]"),
        ),
        (
            "GetKeyPolicy",
            vec!["kms", "get-key-policy", "--key-id", &key_id],
            Some("Policy"),
        ),
        ("DescribeVolumes", vec!["ec2", "describe-volumes"], None),
        (
            "DescribeVolumes",
            vec!["ec2", "describe-volumes"],
            Some("Volumes[*].[VolumeId, Encrypted, KmsKeyId, State, Size]"),
        ),
        (
            "DescribeVolumes",
            vec!["ec2", "describe-volumes"],
            Some("Volumes[?Encrypted].Attachments[]"),
        ),
        (
            "DescribeInstances",
            vec!["ec2", "describe-instances", "--instance-id", &inst],
            Some("Reservations[*].Instances[*].StateReason"),
        ),
        (
            "DescribeInstances",
            vec!["ec2", "describe-instances", "--instance-id", &inst],
            None,
        ),
        (
            "LookupEvents",
            vec![
                "cloudtrail",
                "lookup-events",
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=CreateGrant",
            ],
            Some("Events[*].[EventTime, EventName, Username]"),
        ),
        (
            "LookupEvents",
            vec![
                "cloudtrail",
                "lookup-events",
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=DisableKey",
            ],
            Some("Events[0].Resources"),
        ),
    ];
    for (op, args, query) in &cases {
        same_as_aws(&run, op, args, *query);
    }
    // What the article reads: the reason, as the AWS CLI prints it in each format.
    let out = lab.run_ok(&[
        "ec2",
        "describe-instances",
        "--instance-id",
        &inst,
        "--query",
        "Reservations[*].Instances[*].StateReason",
        "--output",
        "text",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Client.InternalError\tClient.InternalError: Client error on launch\n"
    );
    lab.run_ok(&["detach", &data]);
    lab.stop_daemon();
}

/// `s3api list-buckets` and `ListObjectsV2` through the object endpoint.
#[test]
fn s3api_prints_as_the_aws_cli() {
    let lab = s3_common::Lab::start();
    for b in ["alpha", "beta"] {
        lab.ok(&["s3api", "create-bucket", "--bucket", b]);
    }
    let run = |args: &[&str]| lab.atrest(args);
    same_as_aws(&run, "ListBuckets", &["s3api", "list-buckets"], None);
    same_as_aws(
        &run,
        "ListBuckets",
        &["s3api", "list-buckets"],
        Some("Buckets[?Name=='beta'].Name"),
    );
    same_as_aws(
        &run,
        "GetBucketEncryption",
        &["s3api", "get-bucket-encryption", "--bucket", "alpha"],
        Some("ServerSideEncryptionConfiguration.Rules[0]"),
    );
}

/// A bad `--query` is refused before anything is sent (exit 252), as the AWS CLI does.
#[test]
fn a_bad_query_is_refused_before_the_call() {
    let lab = Lab::start();
    let out = lab.run(&["kms", "create-key", "--query", "KeyMetadata.["]);
    assert_eq!(out.status.code(), Some(252));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Bad value for --query KeyMetadata.[: Invalid jmespath expression"),
        "{err}"
    );
    let keys = lab.ok(&["kms", "list-keys"]);
    assert_eq!(keys["Keys"], json!([]), "no key was made");
    // --output and --query go anywhere on the line, as with the AWS CLI.
    lab.key("alias/one");
    for args in [
        vec![
            "--output",
            "text",
            "kms",
            "list-aliases",
            "--query",
            "Aliases[0].AliasName",
        ],
        vec![
            "kms",
            "--query",
            "Aliases[0].AliasName",
            "list-aliases",
            "--output",
            "text",
        ],
    ] {
        let out = lab.run_ok(&args);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "alias/one\n");
    }
}

/// Negative numbers parse and are refused with the service's error, nothing made.
#[test]
fn negative_numbers_get_the_aws_error() {
    let lab = Lab::start();
    let key = lab.key("alias/neg");
    for (args, code) in [
        (
            vec![
                "kms",
                "generate-data-key",
                "--key-id",
                "alias/neg",
                "--number-of-bytes",
                "-1",
            ],
            "ValidationException",
        ),
        (
            vec![
                "kms",
                "schedule-key-deletion",
                "--key-id",
                &key,
                "--pending-window-in-days",
                "-1",
            ],
            "ValidationException",
        ),
        (
            vec!["kms", "list-grants", "--key-id", &key, "--limit", "-1"],
            "ValidationException",
        ),
        (
            vec![
                "ec2",
                "create-volume",
                "--size",
                "-1",
                "--availability-zone",
                "us-east-1a",
            ],
            "InvalidParameterValue",
        ),
    ] {
        let out = lab.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(254), "{args:?}: {err}");
        assert!(
            err.contains(&format!("An error occurred ({code})")),
            "{args:?}: {err}"
        );
    }
    let state = lab.ok(&[
        "kms",
        "describe-key",
        "--key-id",
        &key,
        "--query",
        "KeyMetadata.KeyState",
    ]);
    assert_eq!(state, json!("Enabled"));
}

/// The layouts on shapes the services above do not produce: wide tables turned
/// vertical, nested lists, numbers, booleans and nulls, wide characters, empties.
#[test]
fn layouts_match_awscli_on_awkward_shapes() {
    let docs = [
        json!({"Reservations": [{"ReservationId": "r-1", "Instances": [
            {"InstanceId": "i-1", "State": {"Code": 80, "Name": "stopped"},
             "StateReason": {"Code": "Client.InternalError", "Message": "Client.InternalError: Client error on launch"},
             "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-1", "DeleteOnTermination": false}}],
             "Tags": [{"Key": "Name", "Value": "web"}]},
            {"InstanceId": "i-2", "State": {"Code": 16, "Name": "running"}, "Tags": []}
        ]}]}),
        json!({"A": "a very long value that goes on and on to make this table wider than eighty columns", "B": "b", "C": 1.5, "D": null, "E": true}),
        json!({"Names": ["日本語のキー", "plain"], "Nested": [[1, 2], [3, 4]], "Empty": []}),
        json!([{"K": "x"}, {"K": "y", "Extra": [1, 2]}]),
        json!([1, "two", null, false]),
        json!({"Only": "one"}),
        json!(0),
        json!(""),
    ];
    let queries = [None, Some("*"), Some("[*]"), Some("@")];
    let (mut compared, mut awscli_raised) = (0, 0);
    for doc in &docs {
        let bytes = serde_json::to_vec(doc).unwrap();
        for q in queries {
            for (name, format) in FORMATS {
                let args = OutputArgs {
                    output: Some(format),
                    query: q.map(str::to_string),
                    ..Default::default()
                };
                let got = args.render("Operation", doc, &Terminal::plain()).unwrap();
                // Where awscli raises (and prints an error), atrest prints what it can.
                match aws_formats("Operation", name, q, &bytes) {
                    Ok(want) => {
                        assert_eq!(got, want, "{name} {q:?} of {doc}");
                        compared += 1;
                    }
                    Err(_) => awscli_raised += 1,
                }
            }
        }
    }
    assert!(
        compared >= 80 && awscli_raised <= 16,
        "{compared} compared, awscli raised on {awscli_raised}"
    );
}

/// `--output yaml` on strings that YAML must quote or fold (they would read back as
/// booleans, numbers, dates or nulls; indicators; spaces and breaks at the ends;
/// characters libyaml escapes; long values and long keys), compared with ruamel.yaml as
/// AWS CLI v2 calls it.
#[test]
fn yaml_quotes_and_folds_as_the_aws_cli_v2() {
    let strings = [
        "",
        "yes",
        "no",
        "on",
        "true",
        "False",
        "NULL",
        "null",
        "~",
        "12",
        "-7",
        "+3",
        "1_000",
        "0x1F",
        "0o17",
        "0b101",
        "1.5",
        "1e5",
        "-.inf",
        ".NaN",
        "._",
        "1.",
        "2026-12-05",
        "2026-12-05T21:00:00Z",
        "2026-12-05 21:00:00.5 +01:00",
        "2026-1-5t1:00:00",
        "a: b",
        "a:b",
        "a:",
        ":a",
        "? x",
        "?x",
        "- a",
        "-a",
        "-",
        "#c",
        "a #c",
        "a#c",
        "[x]",
        "x[0]",
        "{}",
        "&a",
        "*a",
        "!t",
        "|",
        ">",
        "'q'",
        "\"q\"",
        "%p",
        "@a",
        "`b",
        "---",
        "--- x",
        "...",
        "<<",
        "=",
        " lead",
        "trail ",
        "a\nb",
        "a\n\nb",
        "a \nb",
        "a\n b",
        "\nlead",
        "trail\n",
        "a\tb",
        "a\rb",
        "bell\u{7}",
        "nel\u{85}x",
        "nbsp\u{a0}x",
        "ls\u{2028}x",
        "bom\u{feff}x",
        "é",
        "日本語",
        "emoji 😀",
        "it's",
        "back\\slash",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ];
    let long_words = "the key policy does not allow this principal to use the key ".repeat(4);
    let long_quoted = format!("{long_words}: and more");
    let long_double = format!("{long_words}\tand a tab");
    let long_key = "K".repeat(130);
    let mut docs: Vec<serde_json::Value> = strings
        .iter()
        .map(|s| json!({ *s: s, "List": [s, [s], {"In": s}] }))
        .collect();
    docs.push(
        json!({"Long": long_words, "Quoted": long_quoted, "Double": long_double,
                     "Deep": {"Deeper": [{"Deepest": long_words}]}}),
    );
    docs.push(json!({ long_key: "v", "LongKeyValue": {"K".repeat(200): [1, 2]} }));
    docs.push(json!([[[]], {}, [{}], 0, -1.25, 1e20, 1e-7, true, null]));
    for s in strings.iter().chain([&long_words.as_str()]) {
        docs.push(json!(s));
    }
    for doc in &docs {
        let bytes = serde_json::to_vec(doc).unwrap();
        let args = OutputArgs {
            output: Some(OutputFormat::Yaml),
            ..Default::default()
        };
        let got = args.render("Operation", doc, &Terminal::plain()).unwrap();
        let want = aws_prints("Operation", "yaml", None, &bytes);
        assert_eq!(got, want, "yaml of {doc}");
    }
}

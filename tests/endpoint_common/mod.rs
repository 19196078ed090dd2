//! Shared harness of the AWS-endpoint tests: the clients of the project venv
//! (scripts/lib/venv.sh; `ATREST_VENV`, default REPO/.venv) run in the environment `atrest
//! env` prints and nothing of this machine's AWS configuration. A missing venv fails the
//! test (scripts/install-deps.sh makes it).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::s3_common::Lab;

pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var_os("ATREST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-deps.sh (it makes the project venv)",
        bin.display()
    );
    bin
}

/// The variables `atrest env` exports, parsed from its output.
pub fn env_of(lab: &Lab) -> Vec<(String, String)> {
    let out = lab.ok(&["env"]);
    let vars: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ] {
        assert!(vars.iter().any(|(k, _)| k == name), "no {name} in {out}");
    }
    assert!(out.contains("unset AWS_SESSION_TOKEN"), "{out}");
    vars
}

/// A client command in the environment `atrest env` gives, and nothing of this machine's
/// AWS configuration.
pub fn client(lab: &Lab, program: PathBuf) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", lab.home_path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .envs(env_of(lab));
    c
}

pub fn aws(lab: &Lab, args: &[&str]) -> Output {
    client(lab, venv_bin("aws"))
        .args(args)
        .output()
        .expect("run aws")
}

pub fn aws_ok(lab: &Lab, args: &[&str]) -> String {
    let o = aws(lab, args);
    assert!(
        o.status.success(),
        "aws {args:?}: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// A set of credentials to sign with instead of `atrest env`'s (an IAM user's access key,
/// or STS's temporary credentials with their session token).
#[derive(Debug, Clone)]
pub struct Creds {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Creds {
    /// From an `AccessKey` (CreateAccessKey) or `Credentials` (AssumeRole) object.
    pub fn from_json(v: &serde_json::Value) -> Creds {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no {k} in {v}"))
                .to_string()
        };
        Creds {
            access_key_id: s("AccessKeyId"),
            secret_access_key: s("SecretAccessKey"),
            session_token: v["SessionToken"].as_str().map(str::to_string),
        }
    }
}

/// `aws ARGS` signed with `creds`.
pub fn aws_as(lab: &Lab, creds: &Creds, args: &[&str]) -> Output {
    let mut c = client(lab, venv_bin("aws"));
    c.env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key);
    if let Some(t) = &creds.session_token {
        c.env("AWS_SESSION_TOKEN", t);
    }
    c.args(args).output().expect("run aws")
}

/// `aws ARGS --output json` (as `creds`, else as `atrest env`'s principal), which must
/// succeed; its JSON (`null` for no output).
pub fn aws_json(lab: &Lab, creds: Option<&Creds>, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let o = match creds {
        Some(c) => aws_as(lab, c, &all),
        None => aws(lab, &all),
    };
    assert!(
        o.status.success(),
        "aws {args:?}: {}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    if text.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("aws {args:?}: not JSON ({e}): {text}"))
}

/// `aws ARGS` (as `creds`, else as `atrest env`'s principal), which must fail with the
/// AWS CLI's service-error line for `code`; the message after it.
pub fn aws_err(lab: &Lab, creds: Option<&Creds>, args: &[&str], code: &str) -> String {
    let o = match creds {
        Some(c) => aws_as(lab, c, args),
        None => aws(lab, args),
    };
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "aws {args:?} succeeded, expected {code}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let marker = format!("An error occurred ({code}) when calling the ");
    let at = err
        .find(&marker)
        .unwrap_or_else(|| panic!("aws {args:?}: expected {code}, got: {err}"));
    let rest = &err[at + marker.len()..];
    rest.split_once(": ")
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default()
}

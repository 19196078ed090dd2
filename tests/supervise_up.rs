//! `atrest up` decides liveness by pid and a protocol-level ping (issue 18, point 3): right
//! after `kill -9` of kmsd, the dying kmsd may still accept connections for a moment; `up`
//! must wait for it to be gone, start a new one, and report kmsd running only once it saw it
//! answer. Real binaries, a real HOME (the volume service needs FUSE: run as root).
//!
//! And where `up` puts the AWS endpoint (issue 13): 127.0.0.1:4566 by default, `--listen
//! ADDR` (port 0 here: nothing depends on 4566 being free), a taken address refused with
//! its name, TLS as with `atrest serve`, and `atrest env` naming the address really bound.

mod s3_common;

use std::path::Path;
use std::process::{Command, Output};

use s3_common::{atrest_bin, kmsd_bin};

fn atrest(home: &Path, args: &[&str]) -> Output {
    Command::new(atrest_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ATREST_LISTEN")
        .output()
        .expect("run atrest")
}

/// `atrest up` on any free loopback port.
const UP: [&str; 3] = ["up", "--listen", "127.0.0.1:0"];

/// `atrest up ARGS`, which must succeed; its report.
fn up_ok(home: &Path, args: &[&str]) -> serde_json::Value {
    let o = atrest(home, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("up prints JSON")
}

/// The `AWS_ENDPOINT_URL` `atrest env` prints.
fn env_url(home: &Path) -> String {
    let o = atrest(home, &["env"]);
    assert!(o.status.success(), "env: {}", text(&o.stderr));
    let out = text(&o.stdout);
    out.lines()
        .find_map(|l| l.strip_prefix("export AWS_ENDPOINT_URL="))
        .unwrap_or_else(|| panic!("no AWS_ENDPOINT_URL in {out}"))
        .trim_matches('\'')
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stops whatever `atrest up` started, even when an assertion fails.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = atrest(self.0, &["down"]);
    }
}

#[test]
fn up_after_kill_9_of_kmsd_leaves_kmsd_answering_every_time() {
    kmsd_bin(); // built beside atrest, where `atrest up` looks for it
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let _down = Down(h);
    let o = atrest(h, &UP);
    assert!(o.status.success(), "first up: {}", text(&o.stderr));
    for round in 1..=20 {
        let pid: i32 = std::fs::read_to_string(h.join("run/kmsd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) of the kmsd this test started (its pid file names it).
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGKILL) },
            0,
            "round {round}"
        );
        let o = atrest(h, &UP);
        assert!(
            o.status.success(),
            "round {round}: up failed: {}",
            text(&o.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(report["Kmsd"]["Running"], true, "round {round}: {report}");
        assert_ne!(report["Kmsd"]["Pid"], pid, "round {round}: {report}");
        // And it really answers: the next call does not meet a dead socket.
        let o = atrest(h, &["kms", "list-keys"]);
        assert!(
            o.status.success(),
            "round {round}: kmsd does not answer after up: {}",
            text(&o.stderr)
        );
    }
}

#[test]
fn up_defaults_to_port_4566() {
    let o = atrest(Path::new("/nonexistent"), &["up", "--help"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let help = text(&o.stdout);
    assert!(help.contains("[default: 127.0.0.1:4566]"), "{help}");
    assert!(
        help.contains("--tls-cert") && help.contains("--tls-key"),
        "{help}"
    );
}

#[test]
fn up_listens_where_asked_env_names_it_and_a_taken_address_is_refused_by_name() {
    kmsd_bin();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let _down = Down(h);
    let report = up_ok(h, &UP);
    let url = report["ObjectEndpoint"]["Url"]
        .as_str()
        .unwrap_or_else(|| panic!("no endpoint URL in {report}"))
        .trim_end_matches('/')
        .to_string();
    let addr = url.strip_prefix("http://127.0.0.1:").expect("loopback URL");
    assert_ne!(addr, "0", "the port really bound, not the one asked for");
    assert_eq!(report["ObjectEndpoint"]["Running"], true, "{report}");
    assert_eq!(env_url(h), url);
    // A second up leaves the running endpoint where it is, and says so when it asked
    // for another address.
    let again = up_ok(h, &UP);
    assert_eq!(
        again["ObjectEndpoint"]["Url"],
        report["ObjectEndpoint"]["Url"]
    );
    let o = atrest(h, &["up", "--listen", "127.0.0.1:1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let notice = format!("the AWS endpoint already runs at {url}, not 127.0.0.1:1");
    assert!(text(&o.stderr).contains(&notice), "{}", text(&o.stderr));

    // Another home asking for the same address: refused, naming it, and nothing of
    // the failed endpoint is left running.
    let other = tempfile::tempdir().unwrap();
    let o2 = other.path();
    let _down2 = Down(o2);
    let taken = url.trim_start_matches("http://");
    let o = atrest(o2, &["up", "--listen", taken]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("cannot listen on {taken}")) && err.contains("in use"),
        "{err}"
    );
    assert!(!o2.join("run/s3.pid").exists());
    assert!(!o2.join("endpoint.url").exists());
    // The first home's endpoint still serves.
    assert_eq!(env_url(h), url);

    // Beyond loopback without TLS: refused by the endpoint, said by up.
    let o = atrest(o2, &["up", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without TLS"),
        "{err}"
    );
}

#[test]
fn up_serves_tls_with_the_certificate_it_is_given() {
    kmsd_bin();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let _down = Down(h);
    let (cert, key) = (h.join("cert.pem"), h.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(o.status.success(), "openssl: {}", text(&o.stderr));
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    // On every address (a team's shared endpoint): `env` names loopback, which a
    // client here can connect to and the certificate is made for, not 0.0.0.0.
    let report = up_ok(
        h,
        &[
            "up",
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            &c,
            "--tls-key",
            &k,
        ],
    );
    assert_eq!(report["ObjectEndpoint"]["Running"], true, "{report}");
    let url = env_url(h);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // A TLS client that trusts that certificate only: an unsigned request gets S3's 403.
    let o = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            &c,
        ])
        .arg(format!("{url}/"))
        .output()
        .expect("run curl");
    assert_eq!(text(&o.stdout), "403", "curl: {}", text(&o.stderr));
    // `up` again sees it answering over TLS and starts nothing.
    let again = up_ok(h, &UP);
    assert_eq!(again["Started"], serde_json::json!([]), "{again}");
    // Its TLS liveness ping holds every time, not now and then.
    for round in 1..=20 {
        let o = atrest(h, &["status"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "round {round}: {}",
            text(&o.stdout)
        );
    }
}

//! rclone and s3cmd (the Debian packages `scripts/install-deps.sh` installs) against the
//! object endpoint at their default settings, configured only with the endpoint and an
//! access key, as a user would: a tree with an empty file, names with spaces and unicode, and
//! files big enough for each tool's multipart upload (rclone streams `rcat` in parts;
//! s3cmd splits above 15 MiB) goes up and comes back byte-identical, is listed, checked,
//! synced and deleted, and none of its plaintext is anywhere in the store.

mod s3_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use s3_common::*;

const MIB: u64 = 1024 * 1024;

/// The tree both tools move: (relative path, size).
const TREE: [(&str, u64); 6] = [
    ("a.txt", 10),
    ("empty", 0),
    ("deep/er/b.bin", 3 * MIB),
    ("deep/c.bin", 9 * MIB + 7),
    ("sp ace/d ü.bin", 1000),
    ("big/e.bin", 17 * MIB + 5),
];

fn make_tree(dir: &Path) {
    for (i, (name, size)) in TREE.iter().enumerate() {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_random_file(&p, *size, 300 + i as u64);
    }
}

fn assert_same_tree(a: &Path, b: &Path) {
    for (name, _) in TREE {
        assert!(
            same_file(&a.join(name), &b.join(name)),
            "{name} did not come back identical"
        );
    }
}

/// No 32-byte window from the middle of any non-empty file of the tree is in the store.
fn assert_no_plaintext(lab: &Lab, tree: &Path) {
    for (name, size) in TREE {
        if size < 64 {
            continue;
        }
        let bytes = std::fs::read(tree.join(name)).unwrap();
        let mid = (size / 2) as usize;
        assert_eq!(
            any_file_streams(&lab.home_path().join("s3"), &bytes[mid..mid + 32]),
            None,
            "plaintext of {name} is in the store"
        );
    }
}

fn run(mut c: Command, what: &str) -> String {
    let o: Output = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `rclone` configured from the environment only (remote `lab:`), with a HOME and config
/// file of its own.
fn rclone(lab: &Lab, home: &Path, args: &[&str]) -> Command {
    let (id, secret) = lab.access_key();
    let mut c = Command::new("rclone");
    // Only its own settings: an AWS_* variable of this machine (a CA bundle, a profile)
    // would change what rclone's S3 client does.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("RCLONE_CONFIG", home.join("rclone.conf"))
        .env("RCLONE_CONFIG_LAB_TYPE", "s3")
        .env("RCLONE_CONFIG_LAB_PROVIDER", "Other")
        .env("RCLONE_CONFIG_LAB_ACCESS_KEY_ID", id)
        .env("RCLONE_CONFIG_LAB_SECRET_ACCESS_KEY", secret)
        .env("RCLONE_CONFIG_LAB_ENDPOINT", lab.url(""))
        .env("RCLONE_CONFIG_LAB_REGION", "us-east-1")
        .args(args);
    c
}

#[test]
fn rclone_copies_syncs_checks_and_deletes_a_tree() {
    let lab = Lab::start();
    let home = tempfile::tempdir().unwrap();
    let up = tempfile::tempdir().unwrap();
    make_tree(up.path());
    let src = up.path().to_str().unwrap();
    lab.aws_ok(&["s3api", "create-bucket", "--bucket", "rcloned"]);

    run(
        rclone(&lab, home.path(), &["copy", src, "lab:rcloned/tree"]),
        "rclone copy up",
    );
    // A stream of unknown length goes up as a multipart upload at rclone's defaults.
    let streamed = up.path().join("deep/c.bin");
    let mut rcat = rclone(&lab, home.path(), &["rcat", "lab:rcloned/streamed.bin"]);
    rcat.stdin(std::fs::File::open(&streamed).unwrap());
    let o = rcat.output().expect("rclone rcat");
    assert!(
        o.status.success(),
        "rclone rcat: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let h = lab.aws_ok(&[
        "s3api",
        "head-object",
        "--bucket",
        "rcloned",
        "--key",
        "streamed.bin",
    ]);
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert!(
        h["ETag"].as_str().unwrap().contains('-'),
        "not multipart: {h}"
    );

    let listed = run(
        rclone(
            &lab,
            home.path(),
            &["lsf", "-R", "--files-only", "lab:rcloned/tree"],
        ),
        "rclone lsf",
    );
    let mut got: Vec<&str> = listed.lines().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = TREE.iter().map(|(n, _)| *n).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{listed}");
    // rclone check compares sizes and MD5s (ETags, or its own metadata for multipart).
    run(
        rclone(&lab, home.path(), &["check", src, "lab:rcloned/tree"]),
        "rclone check",
    );

    let down = tempfile::tempdir().unwrap();
    let dst = down.path().to_str().unwrap();
    run(
        rclone(&lab, home.path(), &["copy", "lab:rcloned/tree", dst]),
        "rclone copy down",
    );
    assert_same_tree(up.path(), down.path());
    let back = down.path().join("streamed.bin");
    run(
        rclone(
            &lab,
            home.path(),
            &["copyto", "lab:rcloned/streamed.bin", back.to_str().unwrap()],
        ),
        "rclone copyto",
    );
    assert!(same_file(&streamed, &back), "the streamed file differs");
    assert_no_plaintext(&lab, up.path());

    // sync mirrors a change and a removal; check agrees afterwards.
    write_random_file(&up.path().join("a.txt"), 20, 999);
    std::fs::remove_file(up.path().join("sp ace/d ü.bin")).unwrap();
    run(
        rclone(&lab, home.path(), &["sync", src, "lab:rcloned/tree"]),
        "rclone sync",
    );
    run(
        rclone(&lab, home.path(), &["check", src, "lab:rcloned/tree"]),
        "rclone check after sync",
    );
    let listed = run(
        rclone(
            &lab,
            home.path(),
            &["lsf", "-R", "--files-only", "lab:rcloned/tree"],
        ),
        "rclone lsf",
    );
    assert!(!listed.contains("d ü.bin"), "{listed}");

    run(
        rclone(&lab, home.path(), &["delete", "lab:rcloned"]),
        "rclone delete",
    );
    let left = run(
        rclone(&lab, home.path(), &["lsf", "-R", "lab:rcloned"]),
        "rclone lsf",
    );
    assert_eq!(left.trim(), "", "{left}");
}

/// An s3cmd config with nothing but the endpoint (path-style, plain HTTP on loopback) and
/// the access key: every other setting is s3cmd's default.
fn s3cmd_config(lab: &Lab, dir: &Path) -> PathBuf {
    let (id, secret) = lab.access_key();
    let host = lab.addr_text();
    let cfg = dir.join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {id}\nsecret_key = {secret}\nhost_base = {host}\n\
             host_bucket = {host}\nuse_https = False\nbucket_location = us-east-1\n"
        ),
    )
    .unwrap();
    cfg
}

fn s3cmd(cfg: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("s3cmd");
    c.env("HOME", home).arg("-c").arg(cfg).args(args);
    c
}

#[test]
fn s3cmd_puts_gets_lists_syncs_and_deletes() {
    let lab = Lab::start();
    let home = tempfile::tempdir().unwrap();
    let cfg = s3cmd_config(&lab, home.path());
    let up = tempfile::tempdir().unwrap();
    make_tree(up.path());
    let src = format!("{}/", up.path().to_str().unwrap());

    run(
        s3cmd(&cfg, home.path(), &["mb", "s3://s3cmded"]),
        "s3cmd mb",
    );
    // put of one big file: multipart above s3cmd's 15 MiB chunk size.
    let big = up.path().join("big/e.bin");
    run(
        s3cmd(
            &cfg,
            home.path(),
            &["put", big.to_str().unwrap(), "s3://s3cmded/one/e.bin"],
        ),
        "s3cmd put",
    );
    let h = lab.aws_ok(&[
        "s3api",
        "head-object",
        "--bucket",
        "s3cmded",
        "--key",
        "one/e.bin",
    ]);
    let h: serde_json::Value = serde_json::from_str(&h).unwrap();
    assert!(
        h["ETag"].as_str().unwrap().ends_with("-2\""),
        "not multipart: {h}"
    );
    let got = home.path().join("e.bin");
    run(
        s3cmd(
            &cfg,
            home.path(),
            &["get", "s3://s3cmded/one/e.bin", got.to_str().unwrap()],
        ),
        "s3cmd get",
    );
    assert!(same_file(&big, &got), "s3cmd get differs");

    run(
        s3cmd(&cfg, home.path(), &["sync", &src, "s3://s3cmded/tree/"]),
        "s3cmd sync up",
    );
    let ls = run(
        s3cmd(&cfg, home.path(), &["ls", "s3://s3cmded/tree/"]),
        "s3cmd ls",
    );
    for dir in ["DIR", "s3://s3cmded/tree/deep/", "s3://s3cmded/tree/a.txt"] {
        assert!(ls.contains(dir), "{dir} not in: {ls}");
    }
    let la = run(
        s3cmd(&cfg, home.path(), &["ls", "-r", "s3://s3cmded/tree/"]),
        "s3cmd ls -r",
    );
    for (name, _) in TREE {
        assert!(
            la.contains(&format!("s3://s3cmded/tree/{name}")),
            "{name} not in: {la}"
        );
    }
    let down = tempfile::tempdir().unwrap();
    let dst = format!("{}/", down.path().to_str().unwrap());
    run(
        s3cmd(&cfg, home.path(), &["sync", "s3://s3cmded/tree/", &dst]),
        "s3cmd sync down",
    );
    assert_same_tree(up.path(), down.path());
    assert_no_plaintext(&lab, up.path());

    // A second sync up transfers nothing (sizes and MD5s agree); a change goes up.
    write_random_file(&up.path().join("a.txt"), 20, 999);
    let out = run(
        s3cmd(
            &cfg,
            home.path(),
            &["sync", "--delete-removed", &src, "s3://s3cmded/tree/"],
        ),
        "s3cmd sync again",
    );
    assert!(out.contains("a.txt"), "{out}");
    assert!(
        !out.contains("e.bin"),
        "an unchanged file went up again: {out}"
    );

    run(
        s3cmd(&cfg, home.path(), &["del", "s3://s3cmded/one/e.bin"]),
        "s3cmd del",
    );
    // --recursive deletes in batches (DeleteObjects with Content-MD5).
    run(
        s3cmd(
            &cfg,
            home.path(),
            &["del", "--recursive", "--force", "s3://s3cmded/tree/"],
        ),
        "s3cmd del -r",
    );
    let left = run(
        s3cmd(&cfg, home.path(), &["ls", "-r", "s3://s3cmded"]),
        "s3cmd ls",
    );
    assert_eq!(left.trim(), "", "{left}");
    run(
        s3cmd(&cfg, home.path(), &["rb", "s3://s3cmded"]),
        "s3cmd rb",
    );
}

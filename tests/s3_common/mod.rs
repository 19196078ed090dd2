//! Shared harness of the object-store end-to-end tests: a fresh home, a real kmsd, a real
//! `atrest s3 serve`, the `atrest` CLI and curl. Every process started here is killed (by
//! pid) when the harness is dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn atrest_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atrest"))
}

/// The kmsd binary next to atrest's, built (or brought up to date) once per test run:
/// `cargo test -p atrest` does not build other packages' binaries by itself.
pub fn kmsd_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = atrest_bin().parent().expect("target dir").to_path_buf();
            let release = dir.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "kmsd", "--bin", "kmsd"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for kmsd");
            assert!(status.success(), "building kmsd failed");
            let bin = dir.join("kmsd");
            assert!(bin.exists(), "{} missing after build", bin.display());
            bin
        })
        .clone()
}

pub struct Lab {
    pub home: tempfile::TempDir,
    kmsd: Option<Child>,
    s3: Option<Child>,
    pub addr: String,
    /// How `atrest s3 serve` is started (see [`S3Options`]).
    pub s3_options: S3Options,
}

/// Extra settings for the endpoint a [`Lab`] starts.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Environment variables added to the endpoint's.
    pub env: Vec<(String, String)>,
    /// Arguments after `s3 serve --listen 127.0.0.1:0`.
    pub args: Vec<String>,
    /// A command (and its arguments) the endpoint runs under, e.g. `prlimit --nofile=128`.
    pub wrapper: Vec<String>,
    /// Arguments added to kmsd's, e.g. `--allow-clock-control`.
    pub kmsd_args: Vec<String>,
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    /// Starts kmsd and the object endpoint on a fresh home.
    pub fn start() -> Lab {
        Lab::start_with(S3Options::default())
    }

    /// Starts kmsd and the object endpoint with `options`.
    pub fn start_with(options: S3Options) -> Lab {
        let home = tempfile::tempdir().expect("tempdir");
        let mut lab = Lab {
            home,
            kmsd: None,
            s3: None,
            addr: String::new(),
            s3_options: options,
        };
        lab.start_kmsd();
        lab.start_s3();
        lab
    }

    pub fn home_path(&self) -> &Path {
        self.home.path()
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path().join(name))
            .expect("log file")
    }

    pub fn start_kmsd(&mut self) {
        let sock = self.home.path().join("kmsd.sock");
        let child = Command::new(kmsd_bin())
            .arg("--home")
            .arg(self.home.path())
            .args(&self.s3_options.kmsd_args)
            // Successful GenerateDataKey/Decrypt are audited at debug level.
            .env("RUST_LOG", "info,kmsd::audit=debug")
            .stdout(self.log("kmsd.out"))
            .stderr(self.log("kmsd.err"))
            .spawn()
            .expect("start kmsd");
        self.kmsd = Some(child);
        wait_for("kmsd socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    pub fn start_s3(&mut self) {
        let addr_file = self.home.path().join("s3.addr");
        let _ = std::fs::remove_file(&addr_file);
        let o = &self.s3_options;
        let mut cmd = match o.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(atrest_bin());
                c
            }
            None => Command::new(atrest_bin()),
        };
        let child = cmd
            .arg("--home")
            .arg(self.home.path())
            .args(["s3", "serve", "--listen", "127.0.0.1:0"])
            .args(&o.args)
            .env("RUST_LOG", "info")
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdout(self.log("s3.out"))
            .stderr(self.log("s3.err"))
            .spawn()
            .expect("start atrest s3 serve");
        self.s3 = Some(child);
        wait_for("s3.addr", Duration::from_secs(20), || {
            std::fs::read_to_string(&addr_file).is_ok_and(|s| s.ends_with('\n'))
        });
        self.addr = std::fs::read_to_string(&addr_file)
            .unwrap()
            .trim()
            .to_string();
    }

    /// The endpoint's pid.
    pub fn s3_pid(&self) -> u32 {
        self.s3.as_ref().expect("endpoint running").id()
    }

    /// Bytes the endpoint has logged so far (stdout, stderr and rotated stderr files).
    pub fn s3_log_bytes(&self) -> u64 {
        files_under(self.home.path())
            .iter()
            .filter(|f| {
                f.parent() == Some(self.home.path())
                    && f.file_name().is_some_and(|n| {
                        n.to_string_lossy().starts_with("s3.out")
                            || n.to_string_lossy().starts_with("s3.err")
                    })
            })
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Everything the endpoint has logged so far (rotated files included).
    pub fn s3_log(&self) -> String {
        let mut s = String::new();
        for name in ["s3.err.2", "s3.err.1", "s3.err", "s3.out"] {
            s.push_str(&std::fs::read_to_string(self.home.path().join(name)).unwrap_or_default());
        }
        s
    }

    /// kill -9 of kmsd (the key service goes away under the endpoint).
    pub fn crash_kmsd(&mut self) {
        if let Some(mut c) = self.kmsd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 of the object endpoint (a crash).
    pub fn crash_s3(&mut self) {
        if let Some(mut c) = self.s3.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The endpoint's `ADDR:PORT`, as `s3.addr` names it.
    pub fn addr_text(&self) -> &str {
        &self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Runs `atrest --home HOME ARGS...`.
    pub fn atrest(&self, args: &[&str]) -> Output {
        Command::new(atrest_bin())
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run atrest")
    }

    /// Runs atrest, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.atrest(args);
        assert!(
            o.status.success(),
            "atrest {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).expect("utf8 stdout")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("atrest {args:?}: not JSON ({e}): {out}"))
    }

    /// Runs atrest, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.atrest(args);
        assert!(
            !o.status.success(),
            "atrest {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// The current user's access key pair for the endpoint, as `atrest env` prints it.
    pub fn access_key(&self) -> (String, String) {
        let out = self.ok(&["env"]);
        let var = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("atrest env printed no {name}: {out}"))
                .trim_matches('\'')
                .to_string()
        };
        (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    }

    /// kmsd's audit lines so far.
    pub fn kmsd_log(&self) -> String {
        let mut s = std::fs::read_to_string(self.home.path().join("kmsd.err")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.home.path().join("kmsd.out")).unwrap_or_default());
        s
    }

    /// Creates a symmetric key with an alias; returns its ARN.
    pub fn create_key(&self, alias: &str) -> String {
        let v = self.json(&["kms", "create-key", "--description", alias]);
        let arn = v["KeyMetadata"]["Arn"].as_str().expect("Arn").to_string();
        let id = v["KeyMetadata"]["KeyId"]
            .as_str()
            .expect("KeyId")
            .to_string();
        self.ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            alias,
            "--target-key-id",
            &id,
        ]);
        arn
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in [self.s3.take(), self.kmsd.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An HTTP response as curl saw it.
pub struct Curl {
    pub status: u16,
    pub body: Vec<u8>,
    pub exit: i32,
}

impl Curl {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -s URL` with extra arguments; the body is returned, the status code too.
pub fn curl(url: &str, extra: &[&str]) -> Curl {
    let dir = tempfile::tempdir().expect("tempdir");
    let body_path = dir.path().join("body");
    let o = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&body_path)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl (apt-get install curl)");
    Curl {
        status: String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        body: std::fs::read(&body_path).unwrap_or_default(),
        exit: o.status.code().unwrap_or(-1),
    }
}

/// A PNG-looking file: the PNG signature and an IHDR, then pseudo-random bytes.
pub fn png_like(len: usize, seed: u64) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    let mut x = seed | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Every file under `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    files_under(dir)
        .into_iter()
        .find(|f| std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
}

/// A program of the project's Python venv (`scripts/lib/venv.sh`, made by
/// `scripts/install-deps.sh`): the stock `aws` CLI and boto3's `python`, never whatever
/// else is on the machine. A missing venv fails the test, saying how to make it.
pub fn venv_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("ATREST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    let p = dir.join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: make the project venv with scripts/install-deps.sh",
        p.display()
    );
    p
}

impl Lab {
    /// A stock AWS client of the venv (`aws`, or `python` for boto3) set up as a user would
    /// at default settings: the current user's access key and region us-east-1 in the
    /// environment, and a HOME of its own so no config file of this machine applies.
    pub fn aws_client(&self, program: &str) -> Command {
        let (id, secret) = self.access_key();
        let home = self.home.path().join("client-home");
        std::fs::create_dir_all(&home).expect("client home");
        let mut c = Command::new(venv_bin(program));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("ATREST_TEST_ENDPOINT", self.url(""))
            .stdin(Stdio::null());
        c
    }

    /// `aws --endpoint-url URL ARGS...`.
    pub fn aws(&self, args: &[&str]) -> Output {
        self.aws_client("aws")
            .arg("--endpoint-url")
            .arg(self.url(""))
            .args(args)
            .output()
            .expect("run the venv's aws")
    }

    /// `aws ...`, asserting success; returns stdout.
    pub fn aws_ok(&self, args: &[&str]) -> String {
        let o = self.aws(args);
        assert!(
            o.status.success(),
            "aws {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `aws ...`, asserting failure; returns stderr.
    pub fn aws_fails(&self, args: &[&str]) -> String {
        let o = self.aws(args);
        assert!(
            !o.status.success(),
            "aws {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Runs a Python (boto3) script with the venv's interpreter; asserts success and
    /// returns stdout. The script finds the endpoint in `ATREST_TEST_ENDPOINT`.
    pub fn boto3(&self, script: &str, args: &[&str]) -> String {
        let o = self
            .aws_client("python")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("run the venv's python");
        assert!(
            o.status.success(),
            "boto3 script failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a boto3 script whose client is `s3` (default settings, against the lab's
    /// endpoint) and `code(f)` the error code `f()` raised, or `ok`; parses the JSON it
    /// prints.
    pub fn boto3_s3_json(&self, body: &str, args: &[&str]) -> serde_json::Value {
        let script = format!(
            "import boto3, json, os, sys\n\
             from botocore.exceptions import ClientError\n\
             s3 = boto3.client('s3', endpoint_url=os.environ['ATREST_TEST_ENDPOINT'])\n\
             def code(f):\n\
             \x20   try:\n\
             \x20       f()\n\
             \x20       return 'ok'\n\
             \x20   except ClientError as e:\n\
             \x20       return e.response['Error']['Code']\n\
             {body}"
        );
        json_of(&self.boto3(&script, args))
    }
}

/// Parses a command's JSON output, naming it when it is not JSON.
pub fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Writes `len` pseudo-random bytes (xorshift from `seed`) to `path`, streaming.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Whether two files hold the same bytes (compared a MiB at a time).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(fa), Ok(fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    if fa.metadata().map(|m| m.len()).ok() != fb.metadata().map(|m| m.len()).ok() {
        return false;
    }
    let (mut ra, mut rb) = (
        std::io::BufReader::with_capacity(1 << 20, fa),
        std::io::BufReader::with_capacity(1 << 20, fb),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = ra.read(&mut ba).unwrap();
        if n == 0 {
            return rb.read(&mut bb).unwrap() == 0;
        }
        if rb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Whether any file under `dir` contains `needle` (files read a MiB at a time, so a
/// store of large objects is scanned in bounded memory).
pub fn any_file_streams(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    use std::io::Read;
    files_under(dir).into_iter().find(|f| {
        let Ok(mut file) = std::fs::File::open(f) else {
            return false;
        };
        let mut window: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            window.extend_from_slice(&buf[..n]);
            if window.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            let keep = needle.len().saturating_sub(1).min(window.len());
            window.drain(..window.len() - keep);
        }
    })
}

/// Every event named `op` in kmsd's trail (all pages), as CloudTrail records, read with
/// the stock CLI's `cloudtrail lookup-events` through `atrest`.
pub fn kms_events(lab: &Lab, op: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let filter = format!("AttributeKey=EventName,AttributeValue={op}");
        let mut args = vec![
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            &filter,
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t]);
        }
        let page = lab.json(&args);
        for e in page["Events"].as_array().into_iter().flatten() {
            out.push(serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap());
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

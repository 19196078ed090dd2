//! Shared harness of the ec2 integration tests: a temp home, a real kmsd (the same
//! server code the kmsd binary runs, started in this process), the built `atrest`
//! binary for every CLI call, and optionally the volume service daemon
//! (`atrest mount --foreground`) as a child process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Lab {
    pub home: tempfile::TempDir,
    kmsd: Option<kmsd::testing::server::ServerHandle>,
    daemon: Option<Child>,
}

impl Lab {
    pub fn start() -> Lab {
        Lab::start_with_config("")
    }

    /// A lab whose HOME/config.toml is `config` (empty: none) before kmsd starts.
    pub fn start_with_config(config: &str) -> Lab {
        let home = tempfile::tempdir().unwrap();
        let opts = kmsd::testing::server::ServerOptions::new(home.path());
        let server = kmsd::testing::server::start(opts).unwrap();
        if !config.is_empty() {
            // The volume service and the CLI read it too; kmsd re-reads it on ReloadConfig.
            std::fs::write(home.path().join("config.toml"), config).unwrap();
            kmsd::client::KmsClient::connect(home.path().join("kmsd.sock"))
                .unwrap()
                .reload_config()
                .unwrap();
        }
        Lab {
            home,
            kmsd: Some(server),
            daemon: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.home.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_atrest"));
        c.arg("--home").arg(self.home.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `atrest ARGS` must succeed (stderr is shown if not); its output.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "atrest {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `atrest ec2 ARGS` must succeed; its JSON (Null when it prints nothing).
    /// The key's administrator lets another account use `key` and attach it to AWS
    /// resources, as the console's "Other AWS accounts" does: two statements naming
    /// `arn:aws:iam::ACCOUNT:root` appended to the key policy.
    pub fn share_key_with_account(&self, key: &str, account: &str) {
        let policy = self.ok(&[
            "kms",
            "get-key-policy",
            "--key-id",
            key,
            "--policy-name",
            "default",
        ]);
        let mut doc: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
        let root = format!("arn:aws:iam::{account}:root");
        let statements = doc["Statement"].as_array_mut().unwrap();
        statements.push(serde_json::json!({
            "Sid": format!("Allow use of the key by {account}"),
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
            "Resource": "*"
        }));
        statements.push(serde_json::json!({
            "Sid": format!("Allow attachment of persistent resources by {account}"),
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
            "Resource": "*",
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
        }));
        self.ok(&[
            "kms",
            "put-key-policy",
            "--key-id",
            key,
            "--policy-name",
            "default",
            "--policy",
            &doc.to_string(),
        ]);
    }

    pub fn ec2(&self, args: &[&str]) -> Value {
        let mut all = vec!["ec2"];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.run_ok(args);
        if out.stdout.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "atrest {args:?} printed non-JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `atrest ec2 ARGS` must fail with AWS error `code`; returns stderr.
    pub fn ec2_fails(&self, code: &str, args: &[&str]) -> String {
        let mut all = vec!["ec2"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "atrest {all:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains(&format!("An error occurred ({code})")),
            "atrest {all:?}: wanted {code}, got: {err}"
        );
        err
    }

    /// A new symmetric key with `alias`; its ARN.
    pub fn key(&self, alias: &str) -> String {
        let k = self.ok(&["kms", "create-key", "--description", alias]);
        let arn = k["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
        self.ok(&[
            "kms",
            "create-alias",
            "--alias-name",
            alias,
            "--target-key-id",
            &arn,
        ]);
        arn
    }

    pub fn volume(&self, id: &str) -> Value {
        let v = self.ec2(&["describe-volumes", "--volume-ids", id]);
        v["Volumes"][0].clone()
    }

    pub fn snapshot(&self, id: &str) -> Value {
        let v = self.ec2(&["describe-snapshots", "--snapshot-ids", id]);
        v["Snapshots"][0].clone()
    }

    pub fn instance(&self, id: &str) -> Value {
        let v = self.ec2(&["describe-instances", "--instance-ids", id]);
        v["Reservations"][0]["Instances"][0].clone()
    }

    /// Creates a volume and waits until it is available; its ID.
    pub fn new_volume(&self, args: &[&str]) -> String {
        let mut all = vec!["create-volume", "--availability-zone", "us-east-1a"];
        all.extend_from_slice(args);
        let v = self.ec2(&all);
        let id = v["VolumeId"].as_str().unwrap().to_string();
        self.ec2(&["wait", "volume-available", "--volume-ids", &id]);
        id
    }

    /// A new key with `alias` and a 1 GiB volume encrypted with it: (key ARN, volume ID).
    pub fn encrypted_volume(&self, alias: &str) -> (String, String) {
        let key = self.key(alias);
        let vol = self.new_volume(&["--size", "1", "--encrypted", "--kms-key-id", alias]);
        (key, vol)
    }

    /// `run-instances` on an existing root volume in us-east-1a, as `principal` if
    /// given; the instance ID.
    pub fn run_on_root(&self, root: &str, principal: Option<&str>) -> String {
        let mut all = Vec::new();
        if let Some(p) = principal {
            all.extend(["--as", p]);
        }
        all.extend([
            "ec2",
            "run-instances",
            "--root-volume-id",
            root,
            "--placement",
            "AvailabilityZone=us-east-1a",
        ]);
        let r = self.ok(&all);
        r["Instances"][0]["InstanceId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A volume's data key, decrypted through kmsd as the test user (`None` if the volume
    /// is not encrypted).
    pub fn volume_key(&self, volume_id: &str) -> Option<atrest::volume::XtsKey> {
        use atrest::volume::{VolumeImage, XtsKey};
        let h = VolumeImage::read_header(&self.image_path(volume_id)).unwrap();
        if !h.cipher().is_encrypted() {
            return None;
        }
        let c = kmsd::client::KmsClient::connect(self.path().join("kmsd.sock")).unwrap();
        let plain = c
            .decrypt(
                &h.params.wrapped_key,
                &h.params.encryption_context,
                Some(&h.params.key_arn),
            )
            .unwrap();
        Some(XtsKey::from_bytes(&plain.plaintext).unwrap())
    }

    /// Opens a volume's image with its data key (no changed-block tracking).
    pub fn open_image(&self, volume_id: &str) -> atrest::volume::VolumeImage {
        let key = self.volume_key(volume_id);
        atrest::volume::VolumeImage::open(&self.image_path(volume_id), key).unwrap()
    }

    /// Opens a volume's image as the volume service serves it: with changed-block tracking.
    pub fn open_tracked(&self, volume_id: &str) -> atrest::volume::VolumeImage {
        let key = self.volume_key(volume_id);
        atrest::volume::VolumeImage::open_tracked(&self.image_path(volume_id), key).unwrap()
    }

    pub fn image_path(&self, volume_id: &str) -> PathBuf {
        self.path().join("volumes").join(format!("{volume_id}.img"))
    }

    /// Starts `atrest mount --foreground` and waits for ec2.sock to answer.
    pub fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// Starts `WRAPPER... atrest mount --foreground` (e.g. `prlimit --nofile=128 --`,
    /// which execs it: the daemon keeps the wrapper's pid) and waits for ec2.sock.
    pub fn start_daemon_with(&mut self, wrapper: &[&str]) {
        let log = std::fs::File::create(self.path().join("daemon-test.log")).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_atrest"));
                c.arg("--home").arg(self.home.path());
                c
            }
            None => self.cmd(),
        };
        let child = cmd
            .args(["mount", "--foreground"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let start = Instant::now();
        loop {
            let out = self.run(&["ec2", "describe-volumes"]);
            if out.status.success() && self.path().join("ec2.sock").exists() {
                if let Ok(s) = std::os::unix::net::UnixStream::connect(self.path().join("ec2.sock"))
                {
                    drop(s);
                    break;
                }
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("atrest mount exited ({st}): {}", self.daemon_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "daemon did not start: {}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path().join("daemon-test.log")).unwrap_or_default()
    }

    /// SIGTERM to the daemon; waits for it to exit cleanly.
    pub fn stop_daemon(&mut self) {
        self.stop_daemon_with(libc::SIGTERM);
    }

    /// The daemon's pid (while this lab runs one).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// `sig` to the daemon; waits for it to exit with status 0.
    pub fn stop_daemon_with(&mut self, sig: i32) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(c.id() as i32, sig) };
            let start = Instant::now();
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(
                        st.success(),
                        "atrest mount exited with {st} on signal {sig}: {}",
                        self.daemon_log()
                    );
                    break;
                }
                if start.elapsed() > Duration::from_secs(60) {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!(
                        "atrest mount did not stop on signal {sig}: {}",
                        self.daemon_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL to the daemon (a crash).
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn disable_key(&self, key: &str) {
        self.ok(&["kms", "disable-key", "--key-id", key]);
    }

    pub fn enable_key(&self, key: &str) {
        self.ok(&["kms", "enable-key", "--key-id", key]);
    }

    /// Polls `f` until it is true (or panics after `secs`).
    /// Waits until a volume made from a snapshot holds all its chunks: with the volume
    /// service running it is `available` while its copier still fills it (a lazy restore),
    /// and only then is its image file the whole volume.
    pub fn until_restored(&self, volume_id: &str) {
        let image = self.image_path(volume_id);
        self.until(
            120,
            &format!("the restore of {volume_id} to finish"),
            || !atrest::volume::lazy::is_restoring(&image),
        );
    }

    pub fn until(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; daemon log:\n{}",
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            terminate(&mut c, Duration::from_secs(30));
        }
        if let Some(s) = self.kmsd.take() {
            s.shutdown();
        }
        // A test that failed after killing the daemon leaves its FUSE mount stale:
        // detach it so the temp dir can go.
        let mnt =
            std::ffi::CString::new(self.path().join("mnt").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: umount2 on a NUL-terminated path; failure (not mounted) is fine.
        unsafe { libc::umount2(mnt.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The demo guest (kernel, initrd, root.img), built once by scripts/make-guest.sh into
/// a cache shared by the test processes (make-guest.sh serializes on a lock).
/// SIGTERM to our own child, up to `grace` for it to exit, then SIGKILL; reaped.
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn guest_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("ATREST_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest"));
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-guest.sh"))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run scripts/make-guest.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/make-guest.sh {} failed (the instance tests need it):\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A root filesystem image whose init prints `marker`.
pub fn root_image(dir: &Path, marker: &str) -> PathBuf {
    let image = dir.join("root.img");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-guest.sh"))
        .args(["--marker", marker, "--root-image"])
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/make-guest.sh: {e}"));
    assert!(
        out.status.success(),
        "make-guest.sh --root-image failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// SHA-256 of a file (through `sha256sum`: hashing a 1 GiB sparse image in a debug
/// build would take a minute).
pub fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

impl Lab {
    pub fn state_of(&self, instance_id: &str) -> String {
        self.instance(instance_id)["State"]["Name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits for `state` (through the CLI's own waiter when it has one).
    pub fn wait_state(&self, instance_id: &str, state: &str, secs: u64) {
        self.until(secs, &format!("{instance_id} to be {state}"), || {
            self.state_of(instance_id) == state
        });
    }

    pub fn served_path(&self, instance_id: &str, device: &str) -> PathBuf {
        self.path().join("mnt").join(instance_id).join(device)
    }
}

//! Starts a real kmsd binary on a temp home for integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kmsd::client::KmsClient;

pub struct Daemon {
    pub home: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Daemon {
    /// A kmsd with a movable clock on a fresh home.
    pub fn start() -> Daemon {
        let home = tempfile::tempdir().unwrap();
        let mut d = Daemon { home, child: None };
        d.spawn();
        d
    }

    pub fn socket(&self) -> PathBuf {
        self.home.path().join("kmsd.sock")
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Starts kmsd on this home and waits until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.path().join("kmsd-test.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kmsd"))
            .arg("--home")
            .arg(self.home.path())
            .arg("--allow-clock-control")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_socket(&self.socket());
    }

    pub fn client(&self) -> KmsClient {
        KmsClient::connect(self.socket()).unwrap()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("kmsd did not come up at {}", path.display());
}

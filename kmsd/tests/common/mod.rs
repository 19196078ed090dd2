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

    /// A kmsd with a movable clock on a fresh home with this `config.toml`.
    pub fn start_with_config(config: &str) -> Daemon {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        let mut d = Daemon { home, child: None };
        d.spawn();
        d
    }

    /// Where kmsd's log (stderr) goes.
    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("kmsd-test.log")
    }

    /// kmsd's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Starts kmsd on this home and waits until it answers.
    pub fn spawn(&mut self) {
        self.spawn_under(&[]);
    }

    /// Starts kmsd as an argument of `wrapper` (e.g. `prlimit --nofile=128 --`).
    pub fn spawn_under(&mut self, wrapper: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let kmsd = env!("CARGO_BIN_EXE_kmsd");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(kmsd);
                c
            }
            None => Command::new(kmsd),
        };
        let child = cmd
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

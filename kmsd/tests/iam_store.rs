//! The IAM store's file (`HOME/kms/iam.json`): its bytes against a golden file (the
//! layout docs/FORMAT.md documents, which must keep opening), and kill -9 in the middle
//! of a stream of changes: every acknowledged change survives, the file always opens,
//! and the temp file an interrupted write left behind is swept.
//!
//! The crash test re-runs its own binary as the child (selected by an environment
//! variable): the child adds users one by one and prints `ACK <name>` after each
//! change returns; the parent kills it with SIGKILL mid-stream, several times.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use kmsd::testing::iam::store::{to_bytes, IamStore, IamStoreError};
use kmsd::testing::iam::*;

const CHILD_ENV: &str = "ATREST_IAM_CRASH_CHILD_DIR";
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/iam-store.json");

fn golden_file() -> IamFile {
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}"#;
    let decrypt = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}]}"#;
    let mut a = AccountIam::default();
    a.users.insert(
        "UserA".into(),
        UserRecord {
            id: "AIDAEXAMPLEUSERA0001".into(),
            path: "/".into(),
            create_date_ms: 1_795_000_000_000,
            declared: true,
            permissions: Permissions {
                inline_policies: BTreeMap::from([("kms".into(), decrypt.into())]),
                attached_policies: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            },
        },
    );
    a.groups.insert(
        "developers".into(),
        GroupRecord {
            id: "AGPAEXAMPLEGROUP0001".into(),
            path: "/teams/".into(),
            create_date_ms: 1_795_000_001_000,
            members: vec!["UserA".into()],
            permissions: Permissions {
                inline_policies: BTreeMap::new(),
                attached_policies: vec![
                    "arn:aws:iam::111122223333:policy/KmsKeyUsagePolicy".into()
                ],
            },
        },
    );
    a.roles.insert(
        "builder".into(),
        RoleRecord {
            id: "AROAEXAMPLEROLE00001".into(),
            path: "/".into(),
            create_date_ms: 1_795_000_002_000,
            declared: false,
            assume_role_policy: trust.into(),
            description: Some("CI builds".into()),
            max_session_duration: 7200,
            permissions: Permissions::default(),
        },
    );
    a.policies.insert(
        "KmsKeyUsagePolicy".into(),
        ManagedPolicyRecord {
            id: "ANPAEXAMPLEPOLICY001".into(),
            path: "/".into(),
            create_date_ms: 1_795_000_003_000,
            update_date_ms: 1_795_000_003_000,
            description: None,
            default_version_id: "v1".into(),
            versions: vec![PolicyVersionRecord {
                version_id: "v1".into(),
                document: decrypt.into(),
                create_date_ms: 1_795_000_003_000,
            }],
        },
    );
    IamFile {
        format: FORMAT,
        accounts: BTreeMap::from([("111122223333".into(), a)]),
    }
}

#[test]
fn the_golden_store_opens_and_is_written_byte_for_byte() {
    let golden = std::fs::read(GOLDEN).unwrap();
    let f = golden_file();
    assert_eq!(
        String::from_utf8(to_bytes(&f)).unwrap(),
        String::from_utf8(golden.clone()).unwrap()
    );
    assert_eq!(parse_file(&golden).unwrap(), f);
    let compiled = compile(&f).unwrap();
    // UserA: its inline policy, ReadOnlyAccess, and its group's managed policy.
    assert_eq!(compiled["arn:aws:iam::111122223333:user/UserA"].len(), 3);
    assert!(compiled["arn:aws:iam::111122223333:role/builder"].is_empty());
    // A store opens from the golden bytes.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(IAM_FILE), &golden).unwrap();
    assert_eq!(*IamStore::open(dir.path()).unwrap().snapshot(), f);
    // A file that does not parse is refused, naming it.
    std::fs::write(dir.path().join(IAM_FILE), &golden[..golden.len() / 2]).unwrap();
    let e = IamStore::open(dir.path()).unwrap_err();
    assert!(matches!(e, IamStoreError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("iam.json"), "{e}");
}

fn child(dir: &Path) {
    let s = IamStore::open(dir).unwrap();
    let start = s
        .snapshot()
        .accounts
        .get("111122223333")
        .map_or(0, |a| a.users.len());
    for i in start.. {
        let name = format!("u{i:06}");
        s.change(
            |f| {
                f.accounts
                    .entry("111122223333".into())
                    .or_default()
                    .users
                    .insert(
                        name.clone(),
                        UserRecord {
                            id: new_id("AIDA"),
                            path: "/".into(),
                            create_date_ms: 1,
                            declared: false,
                            permissions: Permissions::default(),
                        },
                    );
                Ok::<_, IamStoreError>(((), true))
            },
            |_, _| Ok(()),
        )
        .unwrap();
        println!("ACK {name}");
    }
}

#[test]
fn kill_9_mid_change_loses_nothing_acknowledged() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut acked_total = 0;
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_mid_change_loses_nothing_acknowledged",
                "--nocapture",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        // A different number of changes each round, so the kill lands at different
        // points of a write (most of a change is its fsyncs).
        while acked.len() < 15 + round * 7 {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(name) = line.strip_prefix("ACK ") {
                acked.push(name.to_string());
            }
        }
        child.kill().unwrap(); // SIGKILL
        for line in lines {
            if let Some(name) = line.unwrap().strip_prefix("ACK ") {
                acked.push(name.to_string());
            }
        }
        child.wait().unwrap();
        acked_total += acked.len();

        let s = IamStore::open(tmp.path()).unwrap();
        let users = &s.snapshot().accounts["111122223333"].users;
        for name in &acked {
            assert!(users.contains_key(name), "round {round}: {name} lost");
        }
        // Changes are whole: the users on disk are u000000.. with no gap, at most
        // one more than acknowledged (written, killed before it printed).
        let expected: Vec<String> = (0..users.len()).map(|i| format!("u{i:06}")).collect();
        assert_eq!(users.keys().cloned().collect::<Vec<_>>(), expected);
        assert!(users.len() <= acked_total + round + 1);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

//! The trail's durability classes against a real kmsd: kill -9 under load loses no
//! answered call and no acknowledged change; a full file system refuses requests before
//! any key is used and kmsd recovers by itself once space returns, in both sync modes.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Daemon;
use kmsd::client::{ClientError, DataKeySize};
use kmsd::protocol::{CreateKeyRequest, DataKeySpec, EncryptionContext, ErrorCode, KeyState};
use kmsd::testing::trail::segment::{read_all, StoredEvent};
use serde_json::Value;

/// The embedded default configuration with `[trail] sync` set to `sync`.
fn config_with_sync(sync: &str) -> String {
    let text = kmsd::testing::server::EMBEDDED_DEFAULT
        .replace("sync = \"interval\"", &format!("sync = \"{sync}\""));
    assert!(text.contains(&format!("sync = \"{sync}\"")));
    text
}

fn ctx(pairs: &[(&str, String)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn context_of(e: &StoredEvent) -> BTreeMap<String, String> {
    e.record
        .request_parameters
        .as_ref()
        .and_then(|p| p.get("encryptionContext"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// What the clients saw answered before the kill.
#[derive(Default)]
struct Answered {
    /// Decrypts answered, by client.
    decrypts: HashMap<usize, u64>,
    /// GenerateDataKey calls answered, as (client, call number).
    data_keys: HashSet<(usize, u64)>,
    /// Aliases whose creation was acknowledged.
    aliases: Vec<String>,
}

/// kill -9 of kmsd under 8 clients of Decrypt and GenerateDataKey (default sync mode)
/// and one client making state changes: after a restart every answered call is in the
/// trail, every acknowledged alias exists and its CreateAlias is in the trail, and the
/// chain validates. Three rounds on one home.
#[test]
fn kill_9_under_load_loses_no_answered_call_and_no_acknowledged_change() {
    let mut d = Daemon::start();
    let trail = d.home().join("trail");
    let setup = d.client();
    let key = setup
        .create_key(CreateKeyRequest::default())
        .unwrap()
        .key_id;
    // One Decrypt blob per client, under that client's own encryption context.
    let blobs: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            setup
                .generate_data_key_without_plaintext(
                    &key,
                    DataKeySize::Spec(DataKeySpec::Aes256),
                    &ctx(&[("client", i.to_string())]),
                )
                .unwrap()
                .ciphertext_blob
                .into_vec()
        })
        .collect();
    let mut all = Answered::default();
    for round in 0..3u64 {
        let answered = Arc::new(Mutex::new(Answered::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for (i, blob) in blobs.iter().enumerate() {
            let c = setup.clone();
            let (key, blob) = (key.clone(), blob.clone());
            let (answered, stop) = (Arc::clone(&answered), Arc::clone(&stop));
            workers.push(std::thread::spawn(move || {
                for n in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if i % 2 == 0 {
                        let cx = ctx(&[("client", i.to_string())]);
                        if c.decrypt(&blob, &cx, None).is_err() {
                            return; // the daemon died mid-call
                        }
                        *answered.lock().unwrap().decrypts.entry(i).or_default() += 1;
                    } else {
                        let cx = ctx(&[("client", i.to_string()), ("n", format!("{round}-{n}"))]);
                        let size = DataKeySize::Spec(DataKeySpec::Aes256);
                        if c.generate_data_key(&key, size, &cx).is_err() {
                            return;
                        }
                        answered
                            .lock()
                            .unwrap()
                            .data_keys
                            .insert((i, round * 1_000_000 + n));
                    }
                }
            }));
        }
        {
            let c = setup.clone();
            let key = key.clone();
            let (answered, stop) = (Arc::clone(&answered), Arc::clone(&stop));
            workers.push(std::thread::spawn(move || {
                for n in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let alias = format!("alias/crash-{round}-{n}");
                    if c.create_alias(&alias, &key).is_err() {
                        return;
                    }
                    answered.lock().unwrap().aliases.push(alias);
                }
            }));
        }
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        let got = std::mem::take(&mut *answered.lock().unwrap());
        assert!(
            !got.decrypts.is_empty() && !got.data_keys.is_empty() && !got.aliases.is_empty(),
            "round {round}: some kind of call was never answered before the kill"
        );
        eprintln!(
            "round {round}: {} Decrypt, {} GenerateDataKey, {} CreateAlias answered before kill -9",
            got.decrypts.values().sum::<u64>(),
            got.data_keys.len(),
            got.aliases.len()
        );
        for (i, n) in got.decrypts {
            *all.decrypts.entry(i).or_default() += n;
        }
        all.data_keys.extend(got.data_keys);
        all.aliases.extend(got.aliases);

        d.spawn();
        let report = kmsd::testing::trail::validate(&trail).unwrap();
        assert!(report.is_ok(), "round {round}: {:?}", report.broken);
        let events = read_all(&trail).unwrap();
        let mut decrypts: HashMap<usize, u64> = HashMap::new();
        let mut data_keys = HashSet::new();
        let mut aliases = HashSet::new();
        for e in &events {
            if e.record.error_code.is_some() {
                continue;
            }
            let cx = context_of(e);
            let client = cx.get("client").and_then(|c| c.parse::<usize>().ok());
            match (e.record.event_name.as_str(), client) {
                ("Decrypt", Some(i)) => *decrypts.entry(i).or_default() += 1,
                ("GenerateDataKey", Some(i)) => {
                    if let Some((r, n)) = cx.get("n").and_then(|n| n.split_once('-')) {
                        let (r, n): (u64, u64) = (r.parse().unwrap(), n.parse().unwrap());
                        data_keys.insert((i, r * 1_000_000 + n));
                    }
                }
                ("CreateAlias", _) => {
                    let p = e.record.request_parameters.as_ref().unwrap();
                    aliases.insert(p["aliasName"].as_str().unwrap().to_string());
                }
                _ => {}
            }
        }
        for (i, n) in &all.decrypts {
            let recorded = decrypts.get(i).copied().unwrap_or(0);
            assert!(
                recorded >= *n,
                "round {round}: client {i} had {n} Decrypts answered, {recorded} in the trail"
            );
        }
        let lost: Vec<_> = all.data_keys.difference(&data_keys).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} answered GenerateDataKey calls are not in the trail, e.g. {:?}",
            lost.len(),
            lost.first()
        );
        let c = d.client();
        for a in &all.aliases {
            assert!(
                aliases.contains(a),
                "round {round}: {a} acknowledged, not in the trail"
            );
            assert_eq!(
                c.describe_key(a).unwrap().key_id,
                key,
                "round {round}: {a} acknowledged, not applied"
            );
        }
    }
}

/// A small file system mounted at a home's `trail/` for one kmsd; unmounted (after the
/// daemon stops) on drop.
struct TrailFs {
    daemon: Option<Daemon>,
    mountpoint: PathBuf,
    loop_image: Option<PathBuf>,
}

impl TrailFs {
    /// `kind` is `tmpfs` or `ext4` (an image on a loop device).
    fn start(kind: &str, config: &str) -> TrailFs {
        let home = tempfile::tempdir().unwrap();
        let trail = home.path().join("trail");
        std::fs::create_dir(&trail).unwrap();
        std::fs::write(home.path().join("config.toml"), config).unwrap();
        let mut fs = TrailFs {
            daemon: None,
            mountpoint: trail.clone(),
            loop_image: None,
        };
        let ok = if kind == "tmpfs" {
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=768k,mode=0700", "tmpfs"])
                .arg(&trail)
                .status()
                .unwrap()
        } else {
            let image = home.path().join("trail.img");
            let f = std::fs::File::create(&image).unwrap();
            f.set_len(8 << 20).unwrap();
            drop(f);
            let mkfs = Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&image)
                .status()
                .expect("mkfs.ext4 (e2fsprogs, installed by scripts/install-deps.sh)");
            assert!(mkfs.success());
            fs.loop_image = Some(image.clone());
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&trail)
                .status()
                .unwrap()
        };
        assert!(ok.success(), "mount {kind} (the test runs as root)");
        let mut d = Daemon { home, child: None };
        d.spawn();
        fs.daemon = Some(d);
        fs
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// Fills the file system; returns the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.mountpoint.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for TrailFs {
    fn drop(&mut self) {
        drop(self.daemon.take());
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}

fn is_trail_refusal(e: &ClientError) -> bool {
    matches!(e, ClientError::Kms(k) if k.code == ErrorCode::KMSInternalException
        && k.message.contains("audit trail"))
}

/// The trail's file system fills up: requests are answered while the space reserved
/// for their records lasts, then every request is refused (a data key, a read, a
/// change, a new key) and nothing is answered after the first refusal; once space
/// returns kmsd serves again by itself, the refused change was not made, and the trail
/// holds exactly the answered calls on a valid chain.
fn full_trail(kind: &str, sync: &str) {
    let fs = TrailFs::start(kind, &config_with_sync(sync));
    let d = fs.daemon();
    let trail = fs.mountpoint.clone();
    let c = d.client();
    let key = c.create_key(CreateKeyRequest::default()).unwrap();
    let none = EncryptionContext::new();
    c.encrypt(&key.key_id, b"before", &none).unwrap();
    let filler = fs.fill();
    let mut answered = 0usize;
    let mut refused = 0usize;
    let started = Instant::now();
    while refused < 20 {
        match c.generate_data_key(&key.key_id, DataKeySize::Bytes(32), &none) {
            Ok(_) => {
                assert_eq!(refused, 0, "{kind}/{sync}: answered after a refusal");
                answered += 1;
            }
            Err(e) if is_trail_refusal(&e) => refused += 1,
            Err(e) => panic!("{kind}/{sync}: {e}"),
        }
        assert!(
            answered < 50_000 && started.elapsed() < Duration::from_secs(60),
            "{kind}/{sync}: the full disk never refused a request ({answered} answered)"
        );
    }
    for (what, r) in [
        ("DescribeKey", c.describe_key(&key.key_id).map(|_| ())),
        ("DisableKey", c.disable_key(&key.key_id)),
        (
            "CreateKey",
            c.create_key(CreateKeyRequest::default()).map(|_| ()),
        ),
        ("Encrypt", c.encrypt(&key.key_id, b"x", &none).map(|_| ())),
    ] {
        match r {
            Err(e) if is_trail_refusal(&e) => {}
            other => panic!("{kind}/{sync}: {what} on a full trail: {other:?}"),
        }
    }

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        match c.describe_key(&key.key_id) {
            Ok(m) => break m.key_state,
            Err(e) if is_trail_refusal(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!(
                "{kind}/{sync}: kmsd did not recover: {e}; its log:\n{}",
                std::fs::read_to_string(d.home().join("kmsd-test.log")).unwrap_or_default()
            ),
        }
    };
    assert_eq!(
        state,
        KeyState::Enabled,
        "{kind}/{sync}: the refused DisableKey changed the key"
    );
    assert_eq!(c.status().unwrap().trail.unwrap().problem, None);
    assert_eq!(
        c.list_keys().unwrap().len(),
        1,
        "{kind}/{sync}: the refused CreateKey made a key"
    );
    c.encrypt(&key.key_id, b"after", &none).unwrap();
    let report = kmsd::testing::trail::validate(&trail).unwrap();
    assert!(report.is_ok(), "{kind}/{sync}: {:?}", report.broken);
    let names: Vec<String> = read_all(&trail)
        .unwrap()
        .into_iter()
        .map(|e| e.record.event_name)
        .collect();
    // Refused requests could not be recorded; every answered one was.
    let mut expected = vec!["CreateKey".to_string(), "Encrypt".to_string()];
    expected.extend(std::iter::repeat_n("GenerateDataKey".to_string(), answered));
    expected.extend(["DescribeKey", "ListKeys", "Encrypt"].map(String::from));
    assert_eq!(names, expected, "{kind}/{sync}");
    eprintln!("{kind}/{sync}: {answered} answered from the reserved space, then refusals");
}

#[test]
fn full_trail_on_tmpfs_default_mode() {
    full_trail("tmpfs", "interval");
}

#[test]
fn full_trail_on_tmpfs_every_event() {
    full_trail("tmpfs", "every-event");
}

#[test]
fn full_trail_on_ext4_default_mode() {
    full_trail("ext4", "interval");
}

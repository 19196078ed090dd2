//! The XTS sector crypto against IEEE 1619 vectors and two independent oracles (OpenSSL's
//! libcrypto through the `openssl` crate, and the RustCrypto `xts-mode` crate), on BOTH
//! implementations: AWS-LC (the default) and the portable pure-Rust fallback.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::KeyInit;
use aes::Aes256;
use atrest::volume::xts::{Backend, Xts, BACKEND_ENV, TWEAK_UNIT};
use atrest::volume::{KeyError, XtsKey};
use rand::{Rng, RngCore, SeedableRng};

struct Vector {
    name: String,
    key: Vec<u8>,
    seq: u64,
    pt: Vec<u8>,
    ct: Vec<u8>,
}

fn load_vectors() -> Vec<Vector> {
    let text = include_str!("vectors/ieee1619_xts_aes256.txt");
    let mut out = Vec::new();
    let mut cur: Option<Vector> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(" = ").expect("field line");
        match k {
            "Vector" => {
                if let Some(v) = cur.take() {
                    out.push(v);
                }
                cur = Some(Vector {
                    name: v.to_string(),
                    key: vec![],
                    seq: 0,
                    pt: vec![],
                    ct: vec![],
                });
            }
            "Key" => cur.as_mut().unwrap().key = hex::decode(v).unwrap(),
            "DataUnitSeqNumber" => cur.as_mut().unwrap().seq = v.parse().unwrap(),
            "PT" => cur.as_mut().unwrap().pt = hex::decode(v).unwrap(),
            "CT" => cur.as_mut().unwrap().ct = hex::decode(v).unwrap(),
            other => panic!("unknown field {other}"),
        }
    }
    out.extend(cur);
    out
}

const BACKENDS: [Backend; 2] = [Backend::AwsLc, Backend::Portable];

fn xts(key: &XtsKey, backend: Backend) -> Xts {
    let x = Xts::with_backend(key, backend).expect("backend available");
    assert_eq!(x.backend(), backend);
    x
}

#[test]
fn ieee1619_xts_aes256_vectors() {
    let vectors = load_vectors();
    assert_eq!(vectors.len(), 5, "vectors 10..14");
    for (v, backend) in vectors
        .iter()
        .flat_map(|v| BACKENDS.iter().map(move |&b| (v, b)))
    {
        let xts = xts(&XtsKey::from_bytes(&v.key).unwrap(), backend);
        let mut buf = v.pt.clone();
        xts.encrypt_data_unit(&mut buf, v.seq).unwrap();
        assert_eq!(buf, v.ct, "vector {} encrypt ({backend:?})", v.name);
        xts.decrypt_data_unit(&mut buf, v.seq).unwrap();
        assert_eq!(buf, v.pt, "vector {} decrypt ({backend:?})", v.name);
        // The same unit through the sector API: a 512-byte sector at payload offset seq*512.
        let mut buf = v.pt.clone();
        xts.encrypt_sectors(&mut buf, 512, v.seq).unwrap();
        assert_eq!(buf, v.ct, "vector {} as a sector ({backend:?})", v.name);
        let mut out = vec![0u8; buf.len()];
        xts.encrypt_sectors_into(&v.pt, &mut out, 512, v.seq)
            .unwrap();
        assert_eq!(out, v.ct, "vector {} encrypted into ({backend:?})", v.name);
        xts.decrypt_stored_sectors(&mut buf, 512, v.seq).unwrap();
        assert_eq!(buf, v.pt, "vector {} stored ({backend:?})", v.name);
    }
}

fn oracle(key: &[u8]) -> xts_mode::Xts128<Aes256> {
    xts_mode::Xts128::new(
        Aes256::new(GenericArray::from_slice(&key[..32])),
        Aes256::new(GenericArray::from_slice(&key[32..])),
    )
}

/// OpenSSL's XTS on one sector with dm-crypt's plain64 tweak.
fn openssl_sector(key: &[u8], unit: u64, data: &[u8], encrypt: bool) -> Vec<u8> {
    use openssl::symm::{Cipher, Crypter, Mode};
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&unit.to_le_bytes());
    let mode = if encrypt {
        Mode::Encrypt
    } else {
        Mode::Decrypt
    };
    let mut c = Crypter::new(Cipher::aes_256_xts(), mode, key, Some(&iv)).unwrap();
    let mut out = vec![0u8; data.len() + 16];
    let n = c.update(data, &mut out).unwrap();
    let m = c.finalize(&mut out[n..]).unwrap();
    out.truncate(n + m);
    out
}

/// Property: for random keys, sector sizes, offsets, lengths (up to 1 MiB, so requests
/// that run on several cores too) and contents, both implementations equal the
/// one-block-at-a-time `xts-mode` crate and OpenSSL, with dm-crypt plain64 tweaks.
#[test]
fn both_paths_equal_the_xts_mode_and_openssl_oracles() {
    for backend in BACKENDS {
        oracle_cases(backend);
    }
}

fn oracle_cases(backend: Backend) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1619);
    for case in 0..200 {
        let mut key = [0u8; 64];
        rng.fill_bytes(&mut key);
        let xk = XtsKey::from_bytes(&key).unwrap();
        let sector_size: usize = if rng.gen_bool(0.5) { 512 } else { 4096 };
        // Every 25th case is large enough (256 KiB..1 MiB) to run on several cores.
        let sectors = if case % 25 == 0 {
            rng.gen_range((256 << 10) / sector_size..=(1 << 20) / sector_size)
        } else {
            rng.gen_range(1..=4usize)
        };
        // Payload byte offset of the first sector: anywhere in a 64 TiB volume, sometimes near u64 max units.
        let first_sector: u64 = match case % 3 {
            0 => rng.gen_range(0..1024),
            1 => rng.gen_range(0..(64u64 << 40) / sector_size as u64),
            _ => u64::MAX / sector_size as u64 - sectors as u64 - rng.gen_range(0..8),
        };
        let offset = first_sector * sector_size as u64;
        let mut data = vec![0u8; sector_size * sectors];
        rng.fill_bytes(&mut data);

        let x = xts(&xk, backend);
        let mut ours = data.clone();
        x.encrypt_sectors(&mut ours, sector_size, offset / TWEAK_UNIT)
            .unwrap();

        let mut theirs = data.clone();
        let o = oracle(&key);
        for (k, sector) in theirs.chunks_mut(sector_size).enumerate() {
            let unit = (offset + (k * sector_size) as u64) / 512;
            o.encrypt_sector(sector, xts_mode::get_tweak_default(unit as u128));
        }
        assert_eq!(
            ours, theirs,
            "case {case} ({backend:?}): encrypt differs from xts-mode"
        );
        for (k, (p, c)) in data
            .chunks(sector_size)
            .zip(ours.chunks(sector_size))
            .enumerate()
            .step_by(37)
        {
            let unit = (offset + (k * sector_size) as u64) / 512;
            assert_eq!(
                openssl_sector(&key, unit, p, true),
                c,
                "case {case} ({backend:?}) sector {k}: encrypt differs from OpenSSL"
            );
            assert_eq!(openssl_sector(&key, unit, c, false), p);
        }

        x.decrypt_sectors(&mut ours, sector_size, offset / TWEAK_UNIT)
            .unwrap();
        assert_eq!(
            ours, data,
            "case {case} ({backend:?}): decrypt does not invert"
        );
    }
}

/// `ATREST_XTS` picks the implementation of a whole process: checked in child processes
/// (this same test binary), since the choice is made once per process.
#[test]
fn atrest_xts_env_selects_the_implementation() {
    if let Ok(expected) = std::env::var("ATREST_XTS_TEST_EXPECT") {
        // Child: the backend the parent asked for, for the selection and for a new key.
        assert_eq!(Backend::selected().name(), expected);
        assert_eq!(Xts::new(&XtsKey::generate()).backend().name(), expected);
        return;
    }
    for (value, expected) in [
        (None, "aws-lc"),
        (Some("portable"), "portable"),
        (Some("auto"), "aws-lc"),
        (Some("no-such-backend"), "aws-lc"),
    ] {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "atrest_xts_env_selects_the_implementation",
            "--test-threads=1",
        ])
        .env("ATREST_XTS_TEST_EXPECT", expected)
        .env_remove(BACKEND_ENV);
        if let Some(v) = value {
            cmd.env(BACKEND_ENV, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{BACKEND_ENV}={value:?} should select {expected}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn equal_key_halves_are_rejected() {
    let mut k = [0x5au8; 64];
    assert_eq!(XtsKey::from_bytes(&k).unwrap_err(), KeyError::EqualHalves);
    k[0] = 0;
    k[32] = 0;
    assert_eq!(XtsKey::from_bytes(&k).unwrap_err(), KeyError::EqualHalves);
}

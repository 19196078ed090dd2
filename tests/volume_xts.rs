//! The XTS sector crypto against IEEE 1619 vectors and the RustCrypto `xts-mode` oracle.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::KeyInit;
use aes::Aes256;
use atrest::volume::xts::{Xts, TWEAK_UNIT};
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

#[test]
fn ieee1619_xts_aes256_vectors() {
    let vectors = load_vectors();
    assert_eq!(vectors.len(), 5, "vectors 10..14");
    for v in vectors {
        let xts = Xts::new(&XtsKey::from_bytes(&v.key).unwrap());
        let mut buf = v.pt.clone();
        xts.encrypt_data_unit(&mut buf, v.seq).unwrap();
        assert_eq!(buf, v.ct, "vector {} encrypt", v.name);
        xts.decrypt_data_unit(&mut buf, v.seq).unwrap();
        assert_eq!(buf, v.pt, "vector {} decrypt", v.name);
        // The same unit through the sector API: a 512-byte sector at payload offset seq*512.
        let mut buf = v.pt.clone();
        xts.encrypt_sectors(&mut buf, 512, v.seq).unwrap();
        assert_eq!(buf, v.ct, "vector {} as a 512-byte sector", v.name);
    }
}

fn oracle(key: &[u8]) -> xts_mode::Xts128<Aes256> {
    xts_mode::Xts128::new(
        Aes256::new(GenericArray::from_slice(&key[..32])),
        Aes256::new(GenericArray::from_slice(&key[32..])),
    )
}

/// Property: for random keys, sector sizes, offsets and contents, the batched fast path
/// equals the one-block-at-a-time `xts-mode` crate with dm-crypt plain64 tweaks.
#[test]
fn fast_path_equals_xts_mode_oracle() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1619);
    for case in 0..300 {
        let mut key = [0u8; 64];
        rng.fill_bytes(&mut key);
        let xk = XtsKey::from_bytes(&key).unwrap();
        let sector_size: usize = if rng.gen_bool(0.5) { 512 } else { 4096 };
        let sectors = rng.gen_range(1..=4usize);
        // Payload byte offset of the first sector: anywhere in a 64 TiB volume, sometimes near u64 max units.
        let first_sector: u64 = match case % 3 {
            0 => rng.gen_range(0..1024),
            1 => rng.gen_range(0..(64u64 << 40) / sector_size as u64),
            _ => u64::MAX / sector_size as u64 - rng.gen_range(8..16),
        };
        let offset = first_sector * sector_size as u64;
        let mut data = vec![0u8; sector_size * sectors];
        rng.fill_bytes(&mut data);

        let mut ours = data.clone();
        Xts::new(&xk)
            .encrypt_sectors(&mut ours, sector_size, offset / TWEAK_UNIT)
            .unwrap();

        let mut theirs = data.clone();
        let o = oracle(&key);
        for (k, sector) in theirs.chunks_mut(sector_size).enumerate() {
            let unit = (offset + (k * sector_size) as u64) / 512;
            o.encrypt_sector(sector, xts_mode::get_tweak_default(unit as u128));
        }
        assert_eq!(ours, theirs, "case {case}: encrypt differs from xts-mode");

        Xts::new(&xk)
            .decrypt_sectors(&mut ours, sector_size, offset / TWEAK_UNIT)
            .unwrap();
        assert_eq!(ours, data, "case {case}: decrypt does not invert");
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

//! validate-logs finds the first broken link: edits, deletions, reordering, truncation,
//! missing segments; and stays OK for an intact trail and a crash-torn tail.

mod trail_support;

use kmsd::testing::trail::chain::{chain_line, parse_line};
use kmsd::testing::trail::{validate, BreakKind};
use trail_support::*;

const SEG: u64 = 4000;

fn fresh(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trail");
    let clock = ManualClock::new();
    drop(write_events(&dir, n, SEG, &clock));
    (tmp, dir)
}

#[test]
fn intact_trail_is_ok_with_counts() {
    let (_t, dir) = fresh(30);
    let segs = segments(&dir);
    assert!(
        segs.len() >= 4,
        "expected several segments, got {}",
        segs.len()
    );
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, 30);
    assert_eq!(r.segments, segs.len());
    assert_eq!((r.first_seq, r.last_seq), (Some(0), Some(29)));
    assert_eq!(r.torn_tail_bytes, 0);
}

#[test]
fn edited_byte_is_named_with_file_line_and_event_id() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[1].clone();
    let mut lines = read_lines(&seg);
    let id = event_id_of_line(&lines[2]);
    // One byte of the record: us-east-1 -> us-east-2.
    lines[2] = lines[2].replacen("us-east-1", "us-east-2", 1);
    write_lines(&seg, &lines);
    let r = validate(&dir).unwrap();
    let b = r.broken.expect("edit must be detected");
    assert_eq!(b.kind, BreakKind::EditedRecord);
    assert_eq!(b.segment, seg);
    assert_eq!(b.line, 3);
    assert_eq!(b.event_id.as_deref(), Some(id.as_str()));
}

#[test]
fn edit_with_recomputed_hash_is_caught_at_the_rewritten_line() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[1].clone();
    let mut lines = read_lines(&seg);
    let p = parse_line(lines[2].as_bytes()).unwrap();
    let forged = String::from_utf8(p.record.to_vec())
        .unwrap()
        .replace("Alice", "Mallory");
    let (_, line) = chain_line(p.seq, &p.prev, forged.as_bytes());
    lines[2] = String::from_utf8(line).unwrap().trim_end().to_string();
    write_lines(&seg, &lines);
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("rewrite must be detected");
    assert_eq!(b.kind, BreakKind::EditedRecord);
    assert_eq!((b.segment, b.line), (seg, 3));
}

#[test]
fn deleted_line_is_reported_at_the_gap() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[0].clone();
    let mut lines = read_lines(&seg);
    lines.remove(2); // line 3, the second event
    write_lines(&seg, &lines);
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("deletion must be detected");
    assert_eq!(b.kind, BreakKind::DeletedLines, "{b}");
    assert_eq!((b.segment, b.line, b.seq), (seg, 3, Some(2)));
}

#[test]
fn swapped_pair_is_reported_as_reordered() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[1].clone();
    let mut lines = read_lines(&seg);
    lines.swap(1, 2);
    write_lines(&seg, &lines);
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("swap must be detected");
    assert_eq!(b.kind, BreakKind::Reordered, "{b}");
    assert_eq!((b.segment, b.line), (seg, 2));
}

#[test]
fn segment_cut_mid_line_is_truncated() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[1].clone();
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 40]).unwrap();
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("truncation must be detected");
    assert_eq!(b.kind, BreakKind::Truncated, "{b}");
    assert_eq!(b.segment, seg);
}

#[test]
fn segment_missing_its_last_lines_is_truncated() {
    let (_t, dir) = fresh(30);
    let seg = segments(&dir)[1].clone();
    let mut lines = read_lines(&seg);
    let n = lines.len();
    lines.truncate(n - 1);
    write_lines(&seg, &lines);
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("truncation must be detected");
    assert_eq!(b.kind, BreakKind::Truncated, "{b}");
    assert_eq!((b.segment, b.line), (seg, n));
}

#[test]
fn deleted_middle_segment_is_missing() {
    let (_t, dir) = fresh(30);
    let segs = segments(&dir);
    std::fs::remove_file(&segs[2]).unwrap();
    let b = validate(&dir)
        .unwrap()
        .broken
        .expect("missing segment must be detected");
    assert_eq!(b.kind, BreakKind::MissingSegment, "{b}");
    assert_eq!((b.segment.clone(), b.line), (segs[3].clone(), 1));
    assert!(b.detail.contains("missing"), "{b}");
}

#[test]
fn deleted_oldest_segment_without_anchor_is_missing() {
    let (_t, dir) = fresh(30);
    let segs = segments(&dir);
    std::fs::remove_file(&segs[0]).unwrap();
    let b = validate(&dir).unwrap().broken.expect("must be detected");
    assert_eq!(b.kind, BreakKind::MissingSegment, "{b}");
    assert_eq!(b.segment, segs[1]);
}

#[test]
fn garbage_line_is_malformed() {
    let (_t, dir) = fresh(10);
    let seg = segments(&dir)[0].clone();
    let mut lines = read_lines(&seg);
    lines.insert(2, "{\"hello\":1}".to_string());
    write_lines(&seg, &lines);
    let b = validate(&dir).unwrap().broken.expect("must be detected");
    assert_eq!((b.kind, b.line), (BreakKind::Malformed, 3));
}

#[test]
fn torn_tail_of_newest_segment_is_ok_but_reported() {
    let (_t, dir) = fresh(10);
    let last = segments(&dir).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":10,\"prev\":\"ab").unwrap();
    let r = validate(&dir).unwrap();
    assert!(r.is_ok(), "{:?}", r.broken);
    assert_eq!(r.events, 10);
    assert_eq!(r.torn_tail_bytes, 20);
}

#[test]
fn empty_or_missing_trail_is_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let r = validate(&tmp.path().join("nothing")).unwrap();
    assert!(r.is_ok());
    assert_eq!(r.events, 0);
}

/// Any single changed byte in any event line is caught (the one exception, the final
/// newline of the newest segment, is a torn tail by construction), and nothing panics.
#[test]
fn random_byte_changes_in_event_lines_are_always_caught() {
    use rand::{Rng, SeedableRng};
    let (_t, dir) = fresh(30);
    let segs = segments(&dir);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..400 {
        let si = rng.gen_range(0..segs.len());
        let seg = &segs[si];
        let original = std::fs::read(seg).unwrap();
        let header_end = original.iter().position(|b| *b == b'\n').unwrap() + 1;
        if header_end == original.len() {
            continue;
        }
        let pos = rng.gen_range(header_end..original.len());
        let mut mutated = original.clone();
        let new = loop {
            let b: u8 = rng.gen();
            if b != original[pos] {
                break b;
            }
        };
        mutated[pos] = new;
        std::fs::write(seg, &mutated).unwrap();
        let r = validate(&dir).unwrap();
        let last_newline = si == segs.len() - 1 && pos == original.len() - 1;
        if last_newline {
            assert!(r.torn_tail_bytes > 0 || r.broken.is_some());
        } else {
            assert!(
                r.broken.is_some(),
                "byte {pos} of {} changed {:#x}->{new:#x} not caught",
                seg.display(),
                original[pos]
            );
        }
        std::fs::write(seg, &original).unwrap();
    }
    assert!(validate(&dir).unwrap().is_ok());
}

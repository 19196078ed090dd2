//! The stable-Rust fuzz smoke: every cargo-fuzz target (`fuzz/` for atrest and plumbing,
//! `kmsd/fuzz/` for kmsd) run through the same entry function on its checked-in seed
//! corpus and on thousands of deterministic mutations of it, so CI exercises every parser
//! without a nightly toolchain. A panic in any target fails the test, naming the target and
//! saving the input under `target/tmp/fuzz-smoke-failures/`.
//!
//! `ATREST_FUZZ_SMOKE_ITERS` (default 3000 per target) and `ATREST_FUZZ_SMOKE_SEED` widen a
//! run by hand; the default is fixed so CI is deterministic. `ATREST_FUZZ_SMOKE_TRACE=FILE`
//! writes each input to FILE.<target> before running it, for what kills the process (a stack
//! overflow aborts; it cannot be caught). Real fuzzing is cargo-fuzz's
//! (docs/SECURITY.md, "Fuzzing").

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

type Entry = fn(&[u8]);

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens the parsers here care about, spliced in by the mutator.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"=",
    b"&",
    b"%",
    b"%00",
    b"%zz",
    b"+",
    b"\n",
    b"\r\n",
    b"\0",
    b"\\",
    b"\\u0000",
    b"<",
    b">",
    b"</",
    b"/>",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[",
    b"-",
    b"--",
    b".",
    b"..",
    b"/",
    b"0",
    b"00",
    b"-1",
    b"1e999",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9223372036854775807",
    b"null",
    b"true",
    b"false",
    b"\"\"",
    b"[]",
    b"{}",
    b"bytes=",
    b"bytes=-",
    b",",
    b"AWS4-HMAC-SHA256",
    b"Credential=",
    b"SignedHeaders=",
    b"Signature=",
    b"/aws4_request",
    b".member.1",
    b".entry.1.key",
    b".1",
    b"Action=",
    b"X-Amz-Date",
    b"20261205T000000Z",
    b"\xff\xfe",
    b"\xc3\x28",
    b"\xf0\x9f\x92\xa9",
    b"@",
    b"*",
    b"|",
    b"`",
    b"'",
    b"&&",
    b"||",
    b"[?",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(10) {
            0 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let at = rng.below(b.len());
                b[at] = [0, 0xff, 0x7f, 0x80, b'0', b'9', b' '][rng.below(7)];
            }
            2 if !b.is_empty() => {
                let at = rng.below(b.len());
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            3 => b.truncate(rng.below(b.len() + 1)),
            4 | 5 => {
                let at = rng.below(b.len() + 1);
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            6 => {
                let at = rng.below(b.len() + 1);
                let n = 1 + rng.below(32);
                let extra: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, extra);
            }
            7 if !b.is_empty() => {
                // Repeat a slice (deep nesting, long runs).
                let at = rng.below(b.len());
                let end = (at + 1 + rng.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    b.splice(at..at, piece.iter().copied());
                }
            }
            8 => {
                // Splice in a slice of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = (from + 1 + rng.below(256)).min(other.len());
                    let at = rng.below(b.len() + 1);
                    b.splice(at..at, other[from..to].iter().copied());
                }
            }
            _ => {
                let n = rng.below(256);
                b = (0..n).map(|_| rng.next() as u8).collect();
            }
        }
    }
    b.truncate(256 << 10);
    b
}

fn seeds_of(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("seed directory {}: {e}", dir.display()))
        .map(|e| e.expect("seed entry").path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("seed file"))
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

thread_local! {
    /// Set while a target runs on this thread: its panic is recorded here, not printed
    /// (thousands of inputs, one report).
    static CAUGHT: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records a target's panic message and location, and
/// leaves every other panic to the default hook.
fn quiet_targets() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = CAUGHT.with(|c| match c.borrow_mut().as_mut() {
                Some(slot) => {
                    *slot = Some(info.to_string());
                    true
                }
                None => false,
            });
            if !recorded {
                default(info);
            }
        }));
    });
}

/// Runs `entry` on `input`; the panic's message if it panicked.
fn panics(entry: Entry, input: &[u8]) -> Option<String> {
    CAUGHT.with(|c| *c.borrow_mut() = Some(None));
    let result = catch_unwind(AssertUnwindSafe(|| entry(input)));
    let message = CAUGHT.with(|c| c.borrow_mut().take().flatten());
    result
        .err()
        .map(|_| message.unwrap_or_else(|| "panicked".into()))
}

/// Runs every target of one cargo-fuzz crate; returns the failures, one line each.
fn run_crate(fuzz_dir: &Path, targets: &[(&str, Entry)]) -> Vec<String> {
    let iters = env_u64("ATREST_FUZZ_SMOKE_ITERS", 3000);
    let seed = env_u64("ATREST_FUZZ_SMOKE_SEED", 0x5eed_f022);
    let save = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke-failures");
    let trace = std::env::var_os("ATREST_FUZZ_SMOKE_TRACE").map(PathBuf::from);
    let mut failures = Vec::new();
    quiet_targets();
    for (name, entry) in targets {
        let seeds = seeds_of(&fuzz_dir.join("seeds").join(name));
        if seeds.is_empty() {
            failures.push(format!("{name}: no seeds in {}", fuzz_dir.display()));
            continue;
        }
        let mut rng = Rng(seed ^ (name.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let inputs = seeds
            .iter()
            .cloned()
            .chain((0..iters).map(|_| mutate(&mut rng, &seeds)));
        let start = std::time::Instant::now();
        for (i, input) in inputs.enumerate() {
            if let Some(trace) = &trace {
                // What aborts the process (a stack overflow) cannot be caught: say which
                // input runs first.
                use std::io::Write;
                let mut f = std::fs::File::create(trace.with_extension(name)).expect("trace file");
                f.write_all(&input).expect("trace file");
            }
            if let Some(message) = panics(*entry, &input) {
                std::fs::create_dir_all(&save).expect("failure directory");
                let file = save.join(format!("{name}-{i}.bin"));
                std::fs::write(&file, &input).expect("save the failing input");
                failures.push(format!(
                    "{name}: input {i} {message}\n  saved to {}; once fixed, add it to {}/seeds/{name}/",
                    file.display(),
                    fuzz_dir.display()
                ));
                break;
            }
        }
        eprintln!(
            "{name}: {} seeds + {iters} mutations in {:.2?}",
            seeds.len(),
            start.elapsed()
        );
    }
    failures
}

/// The cargo-fuzz crate's targets (its `fuzz_targets/*.rs` and `[[bin]]` entries) are
/// exactly the entry table's, so neither driver misses a parser.
fn same_targets(fuzz_dir: &Path, targets: &[(&str, Entry)]) {
    let mut table: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
    table.sort_unstable();
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir.join("fuzz_targets"))
        .expect("fuzz_targets")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    files.sort();
    assert_eq!(
        files,
        table,
        "{}/fuzz_targets vs the entry table",
        fuzz_dir.display()
    );
    let manifest = std::fs::read_to_string(fuzz_dir.join("Cargo.toml")).expect("Cargo.toml");
    let doc: toml::Table = manifest
        .parse()
        .expect("the fuzz crate's Cargo.toml parses");
    let mut bins: Vec<String> = doc
        .get("bin")
        .and_then(|b| b.as_array())
        .expect("[[bin]] entries")
        .iter()
        .filter_map(|b| Some(b.get("name")?.as_str()?.to_string()))
        .collect();
    bins.sort();
    assert_eq!(bins, table, "{}/Cargo.toml [[bin]]s", fuzz_dir.display());
}

fn check(fuzz_dir: &str, targets: &[(&str, Entry)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(fuzz_dir);
    same_targets(&dir, targets);
    let failures = run_crate(&dir, targets);
    assert!(
        failures.is_empty(),
        "fuzz smoke failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn atrest_parsers_survive_their_corpus_and_mutations() {
    check("fuzz", atrest::fuzzing::TARGETS);
}

#[test]
fn kmsd_parsers_survive_their_corpus_and_mutations() {
    check("kmsd/fuzz", kmsd::testing::fuzzing::TARGETS);
}

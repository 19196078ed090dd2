//! kmsd: the key management daemon (the library's [`kmsd::run`]).

fn main() {
    kmsd::run();
}

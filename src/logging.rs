//! Logging through `tracing`, filtered by `RUST_LOG` (default `warn`), on stderr through
//! plumbing's bounded writer: the daemons' log files rotate at a size cap, repeated lines
//! are rate-limited and long lines cut (see `plumbing::logging`).
//!
//! `s3s` is silent unless `RUST_LOG` names it: it logs every refused request at ERROR with
//! the error's debug form, which carries what the client sent (a 16 MiB body once).

pub fn init() {
    plumbing::logging::init("warn", &["s3s"]);
}

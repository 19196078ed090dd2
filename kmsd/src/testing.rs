//! kmsd's test-only surface: what tests and fuzz targets need of kmsd's internals,
//! named item by item. Compiled only with the cargo feature `testing`, which kmsd's and
//! atrest's test targets and kmsd/fuzz turn on as a dev-dependency; the kmsd and atrest
//! binaries are built without it, and scripts/walls.sh refuses `kmsd::testing` in
//! atrest's `src/`.
//!
//! - [`server`]: kmsd in the test's own process (`start`), with a trail sink of the
//!   test's choosing (fault injection) and the embedded default config to edit;
//! - [`trail`]: the trail writer, its segment and chain formats and retention, for the
//!   trail's own tests (crash, durability, validation, lookup, bench);
//! - [`iam`]: the IAM store's file, for its golden file and fuzz target;
//! - [`blob`] and [`policy`]: the ciphertext blob parser and the policy fuzz driver;
//! - [`fuzzing`]: the entry of every kmsd fuzz target (kmsd/fuzz, tests/fuzz_smoke.rs).

pub mod fuzzing;

/// kmsd in-process.
pub mod server {
    pub use crate::config::EMBEDDED_DEFAULT;
    pub use crate::server::{start, ServerError, ServerHandle, ServerOptions};
    pub use crate::service::audit::TrailAuditSink;
}

/// The trail's writer and formats.
pub mod trail {
    pub use crate::trail::{
        validate, BreakKind, Clock, EventClass, FaultHook, IoStep, LookupQuery, SyncMode,
        TrailConfig, TrailError, TrailWriter,
    };

    pub mod chain {
        pub use crate::trail::chain::{chain_line, parse_line, SegmentHeader};
    }
    pub mod lookup {
        pub use crate::trail::lookup::{lookup_dir, LookupEvent};
    }
    pub mod record {
        pub use crate::trail::record::{TrailRecord, UserIdentity, EC2_SOURCE};
    }
    pub mod retention {
        pub use crate::trail::retention::{
            newest_time, read_anchor, segment_newest_time, ANCHOR_FILE,
        };
    }
    pub mod segment {
        pub use crate::trail::segment::{file_name, list, parse_file_name, read_all, StoredEvent};
    }
}

/// The IAM store's file (`HOME/kms/iam.json`).
pub mod iam {
    pub use crate::iam::{
        compile, new_id, parse_file, AccountIam, GroupRecord, IamFile, ManagedPolicyRecord,
        Permissions, PolicyVersionRecord, RoleRecord, UserRecord, FORMAT, IAM_FILE,
    };
    pub mod store {
        pub use crate::iam::store::{to_bytes, IamStore, IamStoreError};
    }
}

/// The ciphertext blob's header.
pub mod blob {
    pub use crate::blob::parse;
}

/// The policy engine's fuzz driver.
pub mod policy {
    pub use crate::policy::fuzz_support::exercise;
}

//! voyc-import: move call recordings into Voyc in bulk.
//!
//! Data flows one way: manifest → rows → validation → plan (journal, `--limit`) → pool →
//! client → outcomes → journal + report. `main.rs` parses the command line, resolves it into
//! [`Settings`] and hands them to [`run`]; everything else is private to the crate, except the
//! few items the fuzz targets and their replay in `tests/` check.

mod cli;
mod commands;
mod descriptors;
mod human;
mod journal;
mod manifest;
mod merge;
mod objects;
mod outcome;
mod plan;
mod progress;
mod report;
mod scan;
mod secret;
mod settings;
mod shard;
mod state_dir;
mod target;
mod upload;
mod validate;

use std::process::ExitCode;

pub use cli::Cli;
pub use commands::run;
pub use progress::json_error;
pub use settings::Settings;

/// What the fuzz targets (`fuzz/`) check, and `tests/cli/fuzz_regressions.rs` replays.
pub mod fuzzing {
    pub use crate::manifest::Format;
    pub use crate::target::{UploadTarget, without_query};
    pub use crate::upload::response::parse as parse_call1_response;
    pub use crate::upload::server_error::{MAX_CHARS, api_message, s3_error};
    pub use crate::validate::{ManifestSettings, Verdict, check_manifest};
}

/// How a run ended; decides the process exit code (the exit codes of docs/upload.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every row uploaded, now or in an earlier run (or: the manifest is valid).
    Success,
    /// Some rows failed, were skipped as invalid, or were not attempted.
    Partial,
    /// Usage, configuration or validation error; nothing was uploaded.
    Usage,
    /// Interrupted by a signal; the report and journal were written.
    Interrupted,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Partial => 1,
            Status::Usage => 2,
            Status::Interrupted => 130,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status.code())
    }
}

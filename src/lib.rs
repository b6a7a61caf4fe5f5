//! voyc-import: move call recordings into Voyc in bulk.
//!
//! Data flows one way: manifest → rows → validation → (journal filter) → pool → client →
//! outcomes → journal + report. `main.rs` only parses the command line and calls [`run`].

pub mod cli;
pub mod commands;
pub mod journal;
pub mod manifest;
pub mod progress;
pub mod report;
pub mod secret;
pub mod upload;
pub mod validate;

use std::process::ExitCode;

/// How a run ended; decides the process exit code (see the README's table).
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

/// Runs one command line to completion.
pub fn run(cli: cli::Cli) -> anyhow::Result<Status> {
    match cli.command {
        cli::Command::Validate(args) => validate::command(&args),
        cli::Command::Upload(args) => upload::command::command(&args),
        cli::Command::Sandbox(args) => commands::sandbox::command(&args),
    }
}

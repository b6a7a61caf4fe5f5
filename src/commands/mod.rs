//! One module per command; [`run`] picks the one the settings name.

mod merge_reports;
mod sandbox;
mod scan;
mod upload;
mod validate;

use std::io::Write as _;

use anyhow::Context as _;

use crate::Status;
use crate::descriptors;
use crate::settings::Settings;

/// Runs one resolved command line to completion.
pub fn run(settings: Settings) -> anyhow::Result<Status> {
    // Before anything is opened: the soft limit on open files up to the hard one.
    let open_files = descriptors::raise_limit();
    match settings {
        Settings::Validate(manifest) => validate::command(&manifest),
        Settings::Upload(upload) => upload::command(&upload, open_files),
        Settings::Sandbox(config) => sandbox::command(*config),
        Settings::MergeReports(merge) => merge_reports::command(&merge),
        Settings::Scan(scan) => scan::command(&scan),
        Settings::Print(text) => print(&text),
    }
}

/// Writes generated text to stdout; a reader that went away (`... | head`) is no error.
fn print(text: &[u8]) -> anyhow::Result<Status> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to standard output")
        }
        _ => Ok(Status::Success),
    }
}

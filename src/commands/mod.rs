//! One module per command; [`run`] picks the one the settings name.

mod sandbox;
mod upload;
mod validate;

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
        Settings::Sandbox(args) => sandbox::command(&args),
    }
}

//! One module per command; [`run`] picks the one the settings name.

mod sandbox;
mod upload;
mod validate;

use crate::Status;
use crate::settings::Settings;

/// Runs one resolved command line to completion.
pub fn run(settings: Settings) -> anyhow::Result<Status> {
    match settings {
        Settings::Validate(manifest) => validate::command(&manifest),
        Settings::Upload(upload) => upload::command(&upload),
        Settings::Sandbox(config) => sandbox::command(*config),
    }
}

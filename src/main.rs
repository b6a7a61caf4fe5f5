//! The `voyc-import` binary: parse the command line, resolve it into checked settings, run
//! them, and turn the outcome into an exit code.

use std::process::ExitCode;

use voyc_import::{Cli, Settings, Status};

fn main() -> ExitCode {
    let cli = Cli::from_env();
    match Settings::resolve(cli).and_then(voyc_import::run) {
        Ok(status) => status.into(),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, as a sentence.
            eprintln!("error: {err:#}");
            Status::Usage.into()
        }
    }
}

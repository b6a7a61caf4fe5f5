//! The `voyc-import` binary: parse the command line, resolve it into checked settings, run
//! them, and turn the outcome into an exit code.

use std::io::Write as _;
use std::process::ExitCode;

use voyc_import::{Cli, Settings, Status};

fn main() -> ExitCode {
    let cli = Cli::from_env();
    match Settings::resolve(cli).and_then(voyc_import::run) {
        Ok(status) => status.into(),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, as a sentence. A terminal
            // gone with a hang-up is no reason to panic.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            Status::Usage.into()
        }
    }
}

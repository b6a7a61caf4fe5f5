//! The `voyc-import` binary: parse the command line, resolve it into checked settings, run
//! them, and turn the outcome into an exit code.

use std::io::Write as _;
use std::process::ExitCode;

use voyc_import::{Cli, Settings, Status};

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let json = cli.wants_json_log();
    match Settings::resolve(cli).and_then(voyc_import::run) {
        Ok(status) => status.into(),
        // A log shipper reading `upload --log-format json` gets only JSON lines.
        Err(err) if json => {
            voyc_import::json_error(&format!("error: {err:#}"));
            Status::Usage.into()
        }
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, as a sentence. A terminal
            // gone with a hang-up is no reason to panic.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            Status::Usage.into()
        }
    }
}

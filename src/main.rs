//! The `voyc-import` binary: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = voyc_import::cli::Cli::parse();
    match voyc_import::run(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, as a sentence.
            eprintln!("error: {err:#}");
            voyc_import::Status::Usage.into()
        }
    }
}

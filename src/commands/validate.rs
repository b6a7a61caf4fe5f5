//! `voyc-import validate`: every problem of a manifest printed like a compiler does, then a
//! summary, without sending anything.

use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;

use anyhow::Context as _;

use crate::Status;
use crate::validate::{ManifestSettings, check_manifest};

/// `voyc-import validate`: check every row, print every problem as it is found (in line
/// order), then a summary; exit 2 if there is any error, 0 otherwise (warnings included).
pub fn command(settings: &ManifestSettings) -> anyhow::Result<Status> {
    let shown = settings.shown();
    let today = chrono::Local::now().date_naive();
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut out: Box<dyn Write> = if terminal {
        Box::new(stdout.lock())
    } else {
        Box::new(io::BufWriter::new(stdout.lock()))
    };
    let mut failed: Option<io::Error> = None;
    let summary = check_manifest(settings, today, |verdict| {
        for problem in verdict.problems() {
            if let Err(e) = writeln!(out, "{shown}:{}: {problem}", problem.line) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    let status = if summary.is_valid() && !summary.stopped {
        Status::Success
    } else {
        Status::Usage
    };
    let written = match failed {
        Some(e) => Err(e),
        None => writeln!(out, "{summary}").and_then(|()| out.flush()),
    };
    match written {
        // A reader that went away (`validate … | head`) is no error of ours.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(status),
        Err(e) => Err(e).context("cannot write to standard output"),
        Ok(()) => Ok(status),
    }
}

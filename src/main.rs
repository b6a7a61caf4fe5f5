//! The `voyc-import` binary: parse the command line, resolve it into checked settings, run
//! them, and turn the outcome into an exit code.

use std::io::Write as _;
use std::process::ExitCode;

use voyc_import::{Cli, Settings, Status};

/// The threads that check a manifest's rows. Checking waits on the disk far more than it
/// computes (a stat, an open and a read of each file, and the journal's pages): a rerun of a
/// million rows whose files had left the page cache took 100 s on two threads and 45 s on
/// sixteen, on two cores (BENCHMARKS.md, "The scale run"). `RAYON_NUM_THREADS` decides if set.
const CHECK_THREADS: usize = 16;

fn main() -> ExitCode {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // glibc gives threads up to 8 heaps a core, each keeping what was freed in it: with the
    // checking threads, 75% more memory at 10^5 rows for nothing. One heap a core, as the
    // cores are what the threads share.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: sets a malloc parameter before any other thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX)) };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // Fails only if a pool exists already, which then serves as it is.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(cores.max(CHECK_THREADS))
            .thread_name(|i| format!("voyc-check-{i}"))
            .build_global();
    }
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

//! Open-file limits. A run holds a file and a connection or two per row in flight, besides the
//! journal and the validation pass; a default soft limit of 1024 (or less) is easily reached at
//! `--concurrency 512`. So the soft limit is raised to the hard one at start, as Go and many
//! servers do, the rows in flight are bounded by what the limit allows, and running out of
//! descriptors anyway (another process, a limit set lower still) is a reason to wait, never a
//! verdict on a row.

use std::io;

/// Descriptors kept for what is open whatever the concurrency: standard streams, the runtime,
/// the journal (database, WAL, shared memory), the report, the lock, and some slack; the
/// validation pass adds one file per thread of its own.
const RESERVED: u64 = 48;
/// What one row in flight may hold at once: its file, a connection to the API and one to S3.
const PER_ROW: u64 = 3;

/// Raises the soft limit on open files to the hard limit, where the system allows it, and
/// returns the limit now in force (`None` where there is none to read).
#[cfg(unix)]
pub fn raise_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let mut raised = limit;
        raised.rlim_cur = limit.rlim_max;
        // macOS refuses more than OPEN_MAX for an unlimited hard limit: keep what we have then.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    match limit.rlim_cur {
        libc::RLIM_INFINITY => None,
        // `rlim_t` is u64 on Linux, not on every Unix.
        #[allow(clippy::useless_conversion)]
        soft => u64::try_from(soft).ok(),
    }
}

/// Windows has no per-process descriptor limit to raise (handles are limited by memory).
#[cfg(not(unix))]
pub fn raise_limit() -> Option<u64> {
    None
}

/// The rows that may be in flight at once under a limit of `limit` open files; at least one.
pub fn concurrency_within(limit: Option<u64>, wanted: usize) -> usize {
    match limit {
        None => wanted,
        Some(limit) => {
            let validation = rayon::current_num_threads() as u64;
            let fits = limit.saturating_sub(RESERVED + validation) / PER_ROW;
            wanted
                .min(usize::try_from(fits).unwrap_or(usize::MAX))
                .max(1)
        }
    }
}

/// The process (`EMFILE`) or the system (`ENFILE`) has no descriptor left: it passes once
/// others are closed, so it says nothing about the file or the server.
pub fn out_of_descriptors(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        // ERROR_TOO_MANY_OPEN_FILES
        error.raw_os_error() == Some(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rows_in_flight_fit_in_the_limit_and_never_drop_to_none() {
        assert_eq!(concurrency_within(None, 512), 512);
        assert_eq!(concurrency_within(Some(20_000), 512), 512);
        let threads = rayon::current_num_threads() as u64;
        assert_eq!(
            concurrency_within(Some(1024), 512) as u64,
            (1024 - RESERVED - threads) / 3
        );
        assert_eq!(concurrency_within(Some(16), 8), 1);
    }

    #[test]
    fn emfile_and_enfile_are_running_out_of_descriptors_and_enoent_is_not() {
        #[cfg(unix)]
        {
            assert!(out_of_descriptors(&io::Error::from_raw_os_error(
                libc::EMFILE
            )));
            assert!(out_of_descriptors(&io::Error::from_raw_os_error(
                libc::ENFILE
            )));
        }
        assert!(!out_of_descriptors(&io::Error::from(
            io::ErrorKind::NotFound
        )));
    }
}

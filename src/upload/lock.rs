//! One upload at a time per report. Two runs of the same manifest at once (a nightly cron job
//! that overlaps the last one, say) would share the report and, by default, the journal: each
//! would send the rows the other has not recorded yet, and the last to finish would overwrite
//! the other's report. Imports that only share a journal (`--journal`, one report each) may run
//! side by side, as docs/journal.md says.
//!
//! The lock is an exclusive `flock` on a hidden file beside the report, `.NAME.lock`, which the
//! kernel releases however the process ends (kill -9 included) and which the run removes when
//! it ends. Holding it, a run also removes the temporary report a killed run left.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Held for the whole run; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl RunLock {
    /// Takes the lock for `report`, or says which run holds it.
    pub fn acquire(report: &Path) -> anyhow::Result<RunLock> {
        let folder = crate::report::report_folder(report)?;
        let not_writable = || {
            format!(
                "cannot write the report {}: its folder {} is not writable",
                report.display(),
                folder.display()
            )
        };
        let name = report
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let path = report.with_file_name(format!(".{name}.lock"));
        loop {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).truncate(false).write(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(&path).with_context(not_writable)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => bail!(
                    "another voyc-import upload is writing the report {} (it holds {}); wait for it to finish (a rerun then skips what it uploaded), or give this run its own --report",
                    report.display(),
                    path.display()
                ),
                Err(std::fs::TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            // The run before may have removed the file between our open and our lock: the lock
            // counts only on the file the path names now.
            if names_this_file(&path, &file) {
                remove_stale_reports(folder, &name);
                return Ok(RunLock { path, _file: file });
            }
        }
    }
}

/// A run killed with `kill -9` leaves its report's temporary file (`.NAME.XXXXXX.tmp`, see
/// `ReportWriter`). Whoever holds the lock is the only run writing this report, so any such
/// file is an orphan: removed, so that repeated kills do not fill the disk.
fn remove_stale_reports(folder: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(random) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        // tempfile's six random characters, and nothing else: `.r.csv.jsonl.AbC123.tmp`
        // belongs to another report.
        if random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(unix)]
fn names_this_file(path: &Path, file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(named), Ok(held)) => named.dev() == held.dev() && named.ino() == held.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn names_this_file(path: &Path, _file: &File) -> bool {
    path.exists()
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so no other run can lock the old file and think it alone.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_on_the_same_report_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("out/night.report.csv");
        let first = RunLock::acquire(&report).unwrap();
        assert!(dir.path().join("out/.night.report.csv.lock").is_file());
        let refused = RunLock::acquire(&report).unwrap_err().to_string();
        assert!(
            refused.starts_with(&format!(
                "another voyc-import upload is writing the report {}",
                report.display()
            )),
            "{refused}"
        );
        // Another report in the same folder is another lock.
        let other = RunLock::acquire(&dir.path().join("out/other.csv")).unwrap();
        drop(first);
        assert!(!dir.path().join("out/.night.report.csv.lock").exists());
        let again = RunLock::acquire(&report).unwrap();
        drop((again, other));
        assert_eq!(
            std::fs::read_dir(dir.path().join("out")).unwrap().count(),
            0
        );
    }

    #[test]
    fn the_temporary_report_of_a_killed_run_is_removed_and_no_other_file() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".r.csv.AbC123.tmp");
        let others = [
            ".r.csv.jsonl.AbC123.tmp",
            ".r.csv.lock.tmp",
            "r.csv.AbC123.tmp",
        ];
        std::fs::write(&stale, "line,file\n").unwrap();
        for other in others {
            std::fs::write(dir.path().join(other), "").unwrap();
        }
        let lock = RunLock::acquire(&dir.path().join("r.csv")).unwrap();
        assert!(!stale.exists());
        for other in others {
            assert!(dir.path().join(other).exists(), "{other}");
        }
        drop(lock);
    }

    #[test]
    fn a_lock_file_left_by_a_killed_run_does_not_stop_the_next() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".r.csv.lock"), "").unwrap();
        let lock = RunLock::acquire(&dir.path().join("r.csv")).unwrap();
        drop(lock);
        assert!(!dir.path().join(".r.csv.lock").exists());
    }
}

//! The files under a folder, listed in parallel: each one's path relative to the folder
//! (folders joined with `/` on every system, as a pattern writes them) and its size. A source
//! that lists objects (an `s3://`, `gs://` or `az://` prefix) gives the same [`Listing`], so
//! that matching and writing the manifest do not care where the names came from.
//!
//! Plain `std::fs::read_dir` on rayon's pool: each folder is read by one task, its sub-folders
//! are spawned as tasks of their own, and the sizes of a folder's files are read in parallel
//! (a flat folder of 10^6 files is the common export). Links to folders are not followed (a
//! loop would never end); links to files are listed as the files they point to.

use std::fs;
use std::path::Path;

use rayon::prelude::*;

use crate::validate::io_text;

/// One file found: its path relative to the folder scanned, `/` between folders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub size: u64,
}

/// Something under the folder that is not listed, and why: a folder that cannot be read, a
/// name that is not UTF-8, a named pipe, a link to a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlisted {
    /// Relative to the folder scanned, as [`Entry::path`] (a name that is not UTF-8 is shown
    /// with its bad bytes replaced).
    pub path: String,
    pub reason: String,
}

/// Every file under a folder, and everything that could not be listed; in no particular order.
#[derive(Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub unlisted: Vec<Unlisted>,
}

impl Listing {
    fn join(mut self, mut other: Listing) -> Listing {
        if self.entries.len() < other.entries.len() {
            std::mem::swap(&mut self, &mut other);
        }
        self.entries.append(&mut other.entries);
        self.unlisted.append(&mut other.unlisted);
        self
    }
}

/// Every file under `root`, however deep. `root` itself must be a readable folder (the caller
/// checks); anything below that cannot be read is in [`Listing::unlisted`].
pub fn list_folder(root: &Path) -> Listing {
    list(root, String::new())
}

/// Every object under an `s3://BUCKET/PREFIX/` (or `gs://`, `az://`), however deep, with paths
/// relative to the prefix: the same listing as a folder's (see [`crate::objects`] for how it is
/// read). `Err` is one sentence: the prefix cannot be listed at all (no such bucket, access
/// denied, the store unreachable, credentials refused).
pub fn list_objects(
    prefix: &crate::objects::ObjectUrl,
    options: &crate::objects::SourceOptions,
) -> anyhow::Result<Listing> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let sources =
        crate::objects::ObjectSources::new(options.clone(), crate::objects::Purpose::Check);
    runtime
        .block_on(sources.list_under(prefix))
        .map_err(|problem| anyhow::anyhow!("{problem}"))
}

/// The folder `root/rel` and everything below it.
fn list(root: &Path, rel: String) -> Listing {
    let dir = root.join(&rel);
    let mut listing = Listing::default();
    let unreadable = |rel: &str, e: &std::io::Error| Unlisted {
        path: rel.to_string(),
        reason: format!("cannot read this folder: {}", io_text(e)),
    };
    let read = match fs::read_dir(&dir) {
        Ok(read) => read,
        Err(e) => {
            listing.unlisted.push(unreadable(&rel, &e));
            return listing;
        }
    };
    let mut files = Vec::new();
    let mut folders = Vec::new();
    for entry in read {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                listing.unlisted.push(unreadable(&rel, &e));
                break;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            listing.unlisted.push(Unlisted {
                path: joined(&rel, &name.to_string_lossy()),
                reason: "the name is not valid UTF-8, so a manifest cannot hold it; rename it"
                    .to_string(),
            });
            continue;
        };
        let path = joined(&rel, name);
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => folders.push(path),
            // Its size, and what a link points to, are read below, in parallel.
            Ok(kind) if kind.is_file() || kind.is_symlink() => files.push(path),
            Ok(_) => listing.unlisted.push(Unlisted {
                path,
                reason: "is not a regular file (a named pipe, a socket or a device)".to_string(),
            }),
            Err(e) => listing.unlisted.push(Unlisted {
                path,
                reason: format!("cannot be read: {}", io_text(&e)),
            }),
        }
    }
    let files: Vec<Result<Entry, Unlisted>> =
        files.into_par_iter().map(|path| file(root, path)).collect();
    for file in files {
        match file {
            Ok(entry) => listing.entries.push(entry),
            Err(unlisted) => listing.unlisted.push(unlisted),
        }
    }
    folders
        .into_par_iter()
        .map(|folder| list(root, folder))
        .reduce(Listing::default, Listing::join)
        .join(listing)
}

/// A file's entry, following a link to what it points to.
fn file(root: &Path, path: String) -> Result<Entry, Unlisted> {
    match fs::metadata(root.join(&path)) {
        Ok(meta) if meta.is_file() => Ok(Entry {
            path,
            size: meta.len(),
        }),
        Ok(meta) if meta.is_dir() => Err(Unlisted {
            path,
            reason:
                "is a link to a folder; links to folders are not followed (scan the folder itself)"
                    .to_string(),
        }),
        Ok(_) => Err(Unlisted {
            path,
            reason: "is not a regular file (a named pipe, a socket or a device)".to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Unlisted {
            path,
            reason: "is a link to nothing (what it pointed to is gone)".to_string(),
        }),
        Err(e) => Err(Unlisted {
            path,
            reason: format!("cannot be read: {}", io_text(&e)),
        }),
    }
}

fn joined(rel: &str, name: &str) -> String {
    match rel.is_empty() {
        true => name.to_string(),
        false => format!("{rel}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut listing: Listing) -> (Vec<(String, u64)>, Vec<Unlisted>) {
        listing.entries.sort_by(|a, b| a.path.cmp(&b.path));
        listing.unlisted.sort_by(|a, b| a.path.cmp(&b.path));
        let entries = listing
            .entries
            .into_iter()
            .map(|e| (e.path, e.size))
            .collect();
        (entries, listing.unlisted)
    }

    #[test]
    fn every_file_at_every_depth_is_listed_with_its_size_and_slashes() {
        let dir = tempfile::tempdir().unwrap();
        for (path, size) in [("a.wav", 3), ("2024/03/05/b.wav", 5), ("2024/03/c.wav", 0)] {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, vec![0u8; size]).unwrap();
        }
        fs::create_dir_all(dir.path().join("empty/folder")).unwrap();
        let (entries, unlisted) = sorted(list_folder(dir.path()));
        assert_eq!(
            entries,
            [
                ("2024/03/05/b.wav".to_string(), 5),
                ("2024/03/c.wav".to_string(), 0),
                ("a.wav".to_string(), 3)
            ]
        );
        assert!(unlisted.is_empty(), "{unlisted:?}");
    }

    #[cfg(unix)]
    #[test]
    fn links_to_files_are_listed_and_links_to_folders_are_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("calls")).unwrap();
        fs::write(dir.path().join("calls/a.wav"), b"abcd").unwrap();
        std::os::unix::fs::symlink("calls/a.wav", dir.path().join("link.wav")).unwrap();
        std::os::unix::fs::symlink("calls", dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink("gone.wav", dir.path().join("dangling.wav")).unwrap();
        let (entries, unlisted) = sorted(list_folder(dir.path()));
        assert_eq!(
            entries,
            [("calls/a.wav".to_string(), 4), ("link.wav".to_string(), 4)]
        );
        let reasons: Vec<(&str, &str)> = unlisted
            .iter()
            .map(|u| (u.path.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "dangling.wav",
                    "is a link to nothing (what it pointed to is gone)"
                ),
                (
                    "loop",
                    "is a link to a folder; links to folders are not followed (scan the folder itself)"
                )
            ]
        );
    }

    #[test]
    fn a_folder_that_cannot_be_read_is_reported_with_the_reason() {
        // (Permissions cannot make a folder unreadable to root, who may run the tests; a folder
        // gone between being listed and being read fails the same way.)
        let dir = tempfile::tempdir().unwrap();
        let listing = list(dir.path(), "2024/gone".to_string());
        assert!(listing.entries.is_empty());
        assert_eq!(
            listing.unlisted,
            [Unlisted {
                path: "2024/gone".into(),
                reason: "cannot read this folder: no such file or directory".into()
            }]
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_name_that_is_not_utf8_and_a_named_pipe_are_reported_not_listed() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ok.wav"), b"x").unwrap();
        fs::write(
            dir.path().join(std::ffi::OsStr::from_bytes(b"Jos\xe9.wav")),
            b"x",
        )
        .unwrap();
        let fifo =
            std::ffi::CString::new(dir.path().join("pipe.wav").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let (entries, unlisted) = sorted(list_folder(dir.path()));
        assert_eq!(entries, [("ok.wav".to_string(), 1)]);
        let reasons: Vec<(&str, &str)> = unlisted
            .iter()
            .map(|u| (u.path.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "Jos\u{fffd}.wav",
                    "the name is not valid UTF-8, so a manifest cannot hold it; rename it"
                ),
                (
                    "pipe.wav",
                    "is not a regular file (a named pipe, a socket or a device)"
                )
            ]
        );
    }
}

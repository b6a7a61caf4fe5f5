//! `voyc-import scan`: a folder of recordings whose names carry their metadata, turned into a
//! CSV manifest that `validate` and `upload` take as it is. Every file is either a row or a
//! line on stderr saying why it is not; nothing is dropped silently.
//!
//! Paths in a manifest resolve against the manifest's own folder. So with `--out FILE` in a
//! folder that holds DIR, the paths are written relative to FILE's folder (the manifest and
//! the recordings can move together); otherwise (stdout, whose file is unknown, or a manifest
//! written elsewhere) they are absolute, which resolve wherever the manifest is read. The
//! objects under an `s3://` (`gs://`, `az://`) prefix are written as their own URLs.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rayon::prelude::*;

use crate::Status;
use crate::human;
use crate::objects::ObjectUrl;
use crate::scan::walk::{self, Entry};
use crate::settings::{ScanSettings, ScanSource};
use crate::validate::fields::REQUIRED;

/// Paths matched in parallel at a time, then written in order; bounds what is held besides
/// the listing itself.
const CHUNK: usize = 8192;

pub fn command(settings: &ScanSettings) -> anyhow::Result<Status> {
    let columns: Vec<&str> = settings
        .pattern
        .fields()
        .iter()
        .map(String::as_str)
        .chain(settings.fills.iter().map(|(key, _)| key.as_str()))
        .collect();
    if !settings.quiet {
        for hint in settings.pattern.hints() {
            eprintln!("warning: {hint}");
        }
        let missing: Vec<&str> = REQUIRED
            .into_iter()
            .filter(|key| !columns.contains(key))
            .collect();
        if !missing.is_empty() {
            eprintln!(
                "warning: the manifest will have no {} {}, which upload requires; read {} from the paths or pass --set KEY=VALUE (to scan, or later to upload)",
                missing.join(", "),
                human::plural(missing.len() as u64, "column", "columns"),
                human::plural(missing.len() as u64, "it", "them"),
            );
        }
    }

    let (place, mut listing) = match &settings.source {
        ScanSource::Folder(dir) => {
            let place = Place::of(dir, settings.out.as_deref())?;
            (place, walk::list_folder(dir))
        }
        ScanSource::Objects { prefix, options } => {
            let place = Place::of_objects(prefix, settings.out.as_deref())?;
            (place, walk::list_objects(prefix, options)?)
        }
    };
    if let Some(own) = &place.own_file {
        // A manifest written into the folder scanned (by an earlier run) is not a recording.
        listing.entries.retain(|entry| &entry.path != own);
    }
    listing
        .entries
        .par_sort_unstable_by(|a, b| a.path.cmp(&b.path));
    listing.unlisted.sort_by(|a, b| a.path.cmp(&b.path));

    let stderr = io::stderr();
    let mut errors = io::BufWriter::new(stderr.lock());
    let shown = |rel: &str| -> String {
        let path = match &settings.source {
            ScanSource::Objects { prefix, .. } => format!("{prefix}{rel}"),
            ScanSource::Folder(dir) => match (rel.is_empty(), dir == Path::new(".")) {
                (true, _) => dir.display().to_string(),
                (false, true) => rel.to_string(),
                (false, false) => dir.join(rel).display().to_string(),
            },
        };
        human::one_line(&path).into_owned()
    };
    for unlisted in &listing.unlisted {
        let _ = writeln!(errors, "{}: {}", shown(&unlisted.path), unlisted.reason);
    }

    let mut out = Output::open(settings.out.as_deref(), place.dir.as_deref())?;
    let mut written =
        out.write(|csv| write_rows(csv, settings, &place, &listing.entries, &mut errors, &shown));
    if let Ok(counts) = &written {
        written = out.finish().map(|()| *counts);
    }
    let counts = match written {
        Ok(counts) => counts,
        // A reader that went away (`scan … | head`) is no error of ours.
        Err(e) if is_broken_pipe(&e) => return Ok(Status::Partial),
        Err(e) => return Err(e),
    };

    let total = listing.entries.len() as u64;
    let bytes: u64 = listing.entries.iter().map(|e| e.size).sum();
    let unmatched = total - counts.matched;
    let unlisted = listing.unlisted.len() as u64;
    let status = match unmatched + unlisted {
        0 => Status::Success,
        _ => Status::Partial,
    };
    if !(settings.quiet && status == Status::Success) {
        let mut summary = format!(
            "scanned {} ({}) in {}: {} matched, {} did not",
            match &settings.source {
                ScanSource::Folder(_) => human::count_of(total, "file", "files"),
                ScanSource::Objects { .. } => human::count_of(total, "object", "objects"),
            },
            human::bytes(bytes),
            shown(""),
            human::count(counts.matched),
            human::count(unmatched),
        );
        if unlisted > 0 {
            summary.push_str(&format!(
                ", {} could not be listed",
                human::count_of(unlisted, "entry", "entries")
            ));
        }
        match &settings.out {
            Some(path) => summary.push_str(&format!(
                "; {} written to {}",
                human::count_of(counts.matched, "row", "rows"),
                human::one_line(&path.display().to_string())
            )),
            None => summary.push_str(&format!(
                "; {} written to standard output",
                human::count_of(counts.matched, "row", "rows")
            )),
        }
        let _ = writeln!(errors, "{summary}");
    }
    if total == 0 && unlisted == 0 {
        // A mistyped prefix lists as an empty one (S3 has no folders to be missing): said even
        // with --quiet, so that a nightly job does not upload nothing every night unseen.
        let what = match &settings.source {
            ScanSource::Folder(_) => "no files: if recordings were expected, check the folder",
            ScanSource::Objects { .. } => {
                "no objects: if recordings were expected, check the bucket and prefix (names are case-sensitive)"
            }
        };
        let _ = writeln!(errors, "warning: {} holds {what}", shown(""));
    }
    let _ = errors.flush();
    Ok(status)
}

#[derive(Clone, Copy, Default)]
struct Counts {
    matched: u64,
}

/// The header, then one row per matching file in path order; a line on `errors` for each
/// file that does not match.
fn write_rows(
    csv: &mut csv::Writer<Box<dyn Write>>,
    settings: &ScanSettings,
    place: &Place,
    entries: &[Entry],
    errors: &mut dyn Write,
    shown: &dyn Fn(&str) -> String,
) -> anyhow::Result<Counts> {
    let mut header = vec!["file"];
    header.extend(settings.pattern.fields().iter().map(String::as_str));
    header.extend(settings.fills.iter().map(|(key, _)| key.as_str()));
    csv.write_record(&header)?;
    let mut counts = Counts::default();
    let mut record: Vec<String> = Vec::with_capacity(header.len());
    for chunk in entries.chunks(CHUNK) {
        let matched: Vec<Result<Vec<String>, String>> = chunk
            .par_iter()
            .map(|entry| settings.pattern.matches(&entry.path))
            .collect();
        for (entry, result) in chunk.iter().zip(matched) {
            match result {
                Ok(values) => {
                    record.clear();
                    record.push(place.file(&entry.path));
                    record.extend(values);
                    record.extend(settings.fills.iter().map(|(_, value)| value.clone()));
                    csv.write_record(&record)?;
                    counts.matched += 1;
                }
                Err(reason) => {
                    let _ = writeln!(errors, "{}: {reason}", shown(&entry.path));
                }
            }
        }
    }
    csv.flush()?;
    Ok(counts)
}

/// Where the manifest goes, and so how its `file` column is written.
struct Place {
    /// The folder of `--out`, where the manifest is first written and then renamed.
    dir: Option<PathBuf>,
    /// What goes before each relative path: `prefix/` + path (relative to the manifest's
    /// folder), or an absolute folder.
    base: Base,
    /// The manifest's own path relative to DIR, when it is written inside DIR.
    own_file: Option<String>,
}

enum Base {
    /// Relative to the manifest's folder: DIR's path from there (empty when it is that folder).
    Relative(String),
    Absolute(PathBuf),
    /// `s3://BUCKET/PREFIX/` (or `gs://`, `az://`): each object's own URL, which upload reads as it is.
    Url(String),
}

impl Place {
    fn of(dir: &Path, out: Option<&Path>) -> anyhow::Result<Place> {
        let dir_real = dir
            .canonicalize()
            .with_context(|| format!("cannot read the folder {}", dir.display()))?;
        let Some(out) = out else {
            return Ok(Place {
                dir: None,
                base: Base::Absolute(absolute(dir, &dir_real)?),
                own_file: None,
            });
        };
        let out_dir = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let out_real = out_dir.canonicalize().with_context(|| {
            format!(
                "--out {}: cannot open its folder {}",
                out.display(),
                out_dir.display()
            )
        })?;
        let own_file = match (out_real.strip_prefix(&dir_real), out.file_name()) {
            (Ok(rel), Some(name)) => slashed(&rel.join(name)),
            _ => None,
        };
        let base = match dir_real.strip_prefix(&out_real).ok().and_then(slashed) {
            Some(prefix) => Base::Relative(prefix),
            None => Base::Absolute(absolute(dir, &dir_real)?),
        };
        Ok(Place {
            dir: Some(out_dir),
            base,
            own_file,
        })
    }

    /// Where a manifest of the objects under `prefix` goes: its `file` values are the objects'
    /// full URLs (`s3://`, `gs://`, `az://`), which resolve wherever the manifest is, whatever its `--base-dir`.
    /// Its folder is checked before anything is listed.
    fn of_objects(prefix: &ObjectUrl, out: Option<&Path>) -> anyhow::Result<Place> {
        let dir = match out {
            None => None,
            Some(out) => {
                let dir = match out.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                dir.canonicalize().with_context(|| {
                    format!(
                        "--out {}: cannot open its folder {}",
                        out.display(),
                        dir.display()
                    )
                })?;
                Some(dir)
            }
        };
        Ok(Place {
            dir,
            base: Base::Url(prefix.to_string()),
            own_file: None,
        })
    }

    /// The `file` value of a path relative to DIR.
    fn file(&self, rel: &str) -> String {
        match &self.base {
            Base::Relative(prefix) if prefix.is_empty() => rel.to_string(),
            Base::Relative(prefix) => format!("{prefix}/{rel}"),
            Base::Absolute(dir) => dir.join(rel).to_string_lossy().into_owned(),
            Base::Url(prefix) => format!("{prefix}{rel}"),
        }
    }
}

/// DIR as an absolute path that a manifest can hold (UTF-8). On Unix the resolved path; on
/// Windows the path as given made absolute, as the resolved one is a `\\?\` path.
fn absolute(dir: &Path, real: &Path) -> anyhow::Result<PathBuf> {
    let path = if cfg!(windows) {
        std::path::absolute(dir).unwrap_or_else(|_| real.to_path_buf())
    } else {
        real.to_path_buf()
    };
    if path.to_str().is_none() {
        bail!(
            "the folder {} has a path that is not UTF-8, which a manifest cannot hold; write the manifest into it with --out so that its paths are relative",
            dir.display()
        );
    }
    Ok(path)
}

/// A relative path as a manifest writes it, `/` between its folders; `None` if it is not UTF-8.
fn slashed(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Standard output, or a temporary file beside `--out` that becomes it once complete (a
/// failed scan never leaves half a manifest for a nightly upload to pick up).
enum Output {
    Stdout(Option<csv::Writer<Box<dyn Write>>>),
    File {
        csv: Option<csv::Writer<Box<dyn Write>>>,
        temp: Option<tempfile::TempPath>,
        out: PathBuf,
    },
}

impl Output {
    fn open(out: Option<&Path>, dir: Option<&Path>) -> anyhow::Result<Output> {
        let Some(out) = out else {
            let stdout: Box<dyn Write> = Box::new(io::BufWriter::new(io::stdout()));
            return Ok(Output::Stdout(Some(csv::Writer::from_writer(stdout))));
        };
        let dir = dir.unwrap_or(Path::new("."));
        let (file, temp) = tempfile::Builder::new()
            .prefix(".voyc-scan-")
            .suffix(".csv.tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write --out {}", out.display()))?
            .into_parts();
        let file: Box<dyn Write> = Box::new(io::BufWriter::new(file));
        Ok(Output::File {
            csv: Some(csv::Writer::from_writer(file)),
            temp: Some(temp),
            out: out.to_path_buf(),
        })
    }

    fn write<T>(
        &mut self,
        rows: impl FnOnce(&mut csv::Writer<Box<dyn Write>>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (csv, what) = match self {
            Output::Stdout(csv) => (csv, "cannot write to standard output".to_string()),
            Output::File { csv, out, .. } => (csv, format!("cannot write --out {}", out.display())),
        };
        rows(csv.as_mut().expect("written once")).context(what)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        match self {
            Output::Stdout(csv) => {
                let csv = csv.take().expect("finished once");
                let mut inner = csv
                    .into_inner()
                    .map_err(|e| anyhow::Error::new(e.into_error()))?;
                inner.flush().context("cannot write to standard output")
            }
            Output::File { csv, temp, out } => {
                let cannot = || format!("cannot write --out {}", out.display());
                let csv = csv.take().expect("finished once");
                let mut inner = csv
                    .into_inner()
                    .map_err(|e| anyhow::Error::new(e.into_error()))
                    .with_context(cannot)?;
                inner.flush().with_context(cannot)?;
                drop(inner);
                let temp = temp.take().expect("finished once");
                temp.persist(&*out)
                    .map_err(|e| anyhow::Error::new(e.error))
                    .with_context(cannot)
            }
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<csv::Error>().is_some_and(|e| {
                matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe)
            })
    })
}

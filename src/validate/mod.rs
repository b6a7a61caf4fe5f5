//! Validation: every rule a manifest and its rows must satisfy before anything is sent, and the
//! `validate` command that prints every problem like a compiler does.
//!
//! [`check_manifest`] is the one pass over a manifest that both `validate` and `upload` use:
//! it streams rows in manifest order, checking them (fields and audio files) in parallel a
//! batch at a time, and hands each row's [`Verdict`] to the caller; a valid row carries the
//! exact JSON body call 1 sends.

pub mod fields;
mod files;
mod rows;
mod settings;
pub mod sniff;
mod times;

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::NaiveDate;
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::manifest::{Manifest, Unreadable};
use crate::objects::{self, ObjectSources, Purpose};
pub use fields::Severity;
use files::FileId;
pub(crate) use files::{describe_start, io_text, open_regular, shown};
pub(crate) use rows::is_near;
use rows::{Context, Examined};
pub use settings::ManifestSettings;
pub(crate) use settings::parse_fills;
pub use sniff::AudioFormat;
pub use times::TimeSettings;

/// Rows checked in parallel at a time; bounds memory, however long the manifest.
const BATCH_ROWS: usize = 2048;
/// The first batch is small, so that the first rows reach `upload`'s workers at once.
const FIRST_BATCH_ROWS: usize = 64;

/// A row that passed every check: what `upload` needs to send it.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedRow {
    /// The line the row starts on in the manifest (the CSV header is line 1).
    pub line: u64,
    /// The audio path exactly as the manifest wrote it (trimmed).
    pub file: String,
    /// The audio path resolved against the base folder.
    pub path: PathBuf,
    /// The file's size in bytes when it was checked.
    pub size: u64,
    /// When the file was last modified, as checked (where the system says).
    pub modified: Option<std::time::SystemTime>,
    /// An object in a store (`s3://`, `gs://`, `az://`), as checked; `path` is then its URL, for messages.
    pub object: Option<crate::objects::RemoteObject>,
    /// `None` when its first bytes were not read: the journal has the row uploaded (see
    /// [`Known`]).
    pub format: Option<AudioFormat>,
    /// The exact JSON body of call 1: `serde_json::to_vec(&row.body)` is what is sent.
    pub body: Map<String, Value>,
    /// That body's bytes and the identity the row is first looked up by, when `upload` made
    /// them before planning the row (with its journal look-ahead); `None` from validation.
    pub prepared: Option<Box<crate::plan::Prepared>>,
}

/// One thing wrong with a manifest or a row, worded for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The manifest line it is about (a row's first line; line 1 for a CSV header).
    pub line: u64,
    pub severity: Severity,
    /// The column (key) at fault, after `--map`; `None` when it is the whole row or manifest.
    pub column: Option<String>,
    /// The offending value as written, when there is one.
    pub value: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Problem {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn new(line: u64, severity: Severity, column: Option<&str>, message: String) -> Problem {
        Problem {
            line,
            severity,
            column: column.map(str::to_string),
            value: None,
            message,
        }
    }
}

/// `warning: call_date "2030-01-01": date is in the future (today is …)`; the caller puts
/// `PATH:LINE: ` in front. Always one line: a control character a column name or message
/// may hold (a quoted CSV header can hold a line break) is escaped (`\n`, `\t`, `\u{1b}`).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A column name is shown as the manifest has it, but no longer than a value.
        let column = self
            .column
            .as_deref()
            .map(|column| match fields::cut_point(column) {
                Some(cut) => format!("{}…", &column[..cut]),
                None => column.to_string(),
            });
        let text = match (&column, &self.value) {
            (Some(column), Some(value)) => {
                format!("{column} {}: {}", fields::quote(value), self.message)
            }
            (Some(column), None) => format!("{column}: {}", self.message),
            (None, Some(value)) => format!("{}: {}", fields::quote(value), self.message),
            (None, None) => self.message.clone(),
        };
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&crate::human::one_line(&text))
    }
}

/// What [`check_manifest`] says about each part of a manifest, in manifest order.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A problem with the manifest as a whole or its header (missing or duplicated column,
    /// another encoding), not with one row. These come before any row's verdict. While the
    /// manifest has such an error, no row is [`Verdict::Valid`]: a row whose only fault is the
    /// manifest's is `Invalid` with no problems of its own.
    Manifest(Problem),
    /// The manifest holds no rows at all (an empty file, or a header and nothing below it):
    /// an error of the manifest, unless the caller allows a day without calls
    /// (`upload --allow-empty`). It comes last, and alone of its kind.
    Empty(Problem),
    /// A row that can be sent (warnings do not stop it).
    Valid {
        row: CheckedRow,
        warnings: Vec<Problem>,
    },
    /// A row that cannot be sent; its problems (errors and warnings) in column order.
    Invalid {
        line: u64,
        /// The audio path as written, when the row has one.
        file: Option<String>,
        problems: Vec<Problem>,
    },
    /// A row of another shard (`upload --shard`): its fields were checked, its file was not
    /// looked at; its problems are the fields' (an error there is an error of the manifest for
    /// every shard, unless rows may be skipped).
    OtherShard { line: u64, problems: Vec<Problem> },
}

impl Verdict {
    /// Every problem this verdict carries, errors and warnings, in the order to print them.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Verdict::Manifest(problem) | Verdict::Empty(problem) => std::slice::from_ref(problem),
            Verdict::Valid { warnings, .. } => warnings,
            Verdict::Invalid { problems, .. } | Verdict::OtherShard { problems, .. } => problems,
        }
    }
}

/// Counts over one pass of [`check_manifest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows seen (not the header, not blank lines), of this shard with `upload --shard`.
    pub rows: u64,
    /// With `upload --shard`: the rows of other shards, whose fields alone were checked.
    pub other_shard_rows: u64,
    pub valid_rows: u64,
    pub invalid_rows: u64,
    /// Rows with at least one error of their own.
    pub rows_with_errors: u64,
    /// Errors in all, the manifest's own included.
    pub errors: u64,
    /// Errors about the manifest as a whole or its header (see [`Verdict::Manifest`]).
    pub manifest_errors: u64,
    pub warnings: u64,
    /// The visitor asked to stop before the end; the counts cover what was seen.
    pub stopped: bool,
}

impl Summary {
    /// No errors at all: every row may be sent.
    pub fn is_valid(&self) -> bool {
        self.errors == 0
    }

    fn count(&mut self, verdict: &Verdict) {
        let errors = verdict.problems().iter().filter(|p| p.is_error()).count() as u64;
        self.errors += errors;
        if let Verdict::OtherShard { .. } = verdict {
            // Its errors refuse the manifest in every shard; its warnings are its own shard's.
            self.other_shard_rows += 1;
            self.rows_with_errors += u64::from(errors > 0);
            return;
        }
        self.warnings += verdict.problems().len() as u64 - errors;
        match verdict {
            Verdict::Manifest(_) | Verdict::Empty(_) => self.manifest_errors += errors,
            Verdict::Valid { .. } => {
                self.rows += 1;
                self.valid_rows += 1;
            }
            Verdict::Invalid { .. } => {
                self.rows += 1;
                self.invalid_rows += 1;
                self.rows_with_errors += u64::from(errors > 0);
            }
            Verdict::OtherShard { .. } => {}
        }
    }
}

/// `12 rows checked: 7 problems in 6 rows, 0 warnings`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = crate::human::count_of;
        let rows = self.rows + self.other_shard_rows;
        write!(f, "{} checked: ", count(rows, "row", "rows"))?;
        let row_errors = self.errors - self.manifest_errors;
        let in_rows = format!("in {}", count(self.rows_with_errors, "row", "rows"));
        match (self.manifest_errors, row_errors) {
            (0, 0) => f.write_str("all valid")?,
            (0, _) => write!(f, "{} {in_rows}", count(row_errors, "problem", "problems"))?,
            (m, 0) => write!(f, "{} in the manifest", count(m, "problem", "problems"))?,
            (m, r) => write!(
                f,
                "{} ({} in the manifest, {} {in_rows})",
                count(m + r, "problem", "problems"),
                crate::human::count(m),
                crate::human::count(r)
            )?,
        }
        write!(f, ", {}", count(self.warnings, "warning", "warnings"))
    }
}

/// Asks `known` about the batch's rows whose files are unread, then reads the files of those
/// it does not say are uploaded.
fn learn(known: Known<'_>, examined: &mut [Examined]) {
    let (asked, rows): (Vec<usize>, Vec<Unread<'_>>) = examined
        .iter()
        .enumerate()
        .filter_map(|(i, row)| Some((i, row.unread()?)))
        .unzip();
    if !asked.is_empty() {
        let answers = known(&rows);
        drop(rows);
        for (&i, prepared) in asked.iter().zip(answers) {
            examined[i].prepared = prepared.map(Box::new);
        }
    }
    examined.par_iter_mut().for_each(Examined::read_head);
}

/// Checks a whole manifest, streaming: each row's verdict goes to `visit` in manifest order,
/// and `visit` may stop the pass early. Memory holds one batch of rows, and of each audio
/// file only its first bytes. `today` decides which dates are in the future.
///
/// `Err` is a manifest that cannot be read at all, or flags that cannot work (a usage
/// error); problems inside the manifest come as verdicts and are counted in the summary.
pub fn check_manifest(
    settings: &ManifestSettings,
    today: NaiveDate,
    visit: impl FnMut(Verdict) -> ControlFlow<()>,
) -> anyhow::Result<Summary> {
    check_manifest_looking_ahead(settings, today, None, |_| {}, visit)
}

/// A row whose audio file is local, that is valid as far as its fields and its file's
/// metadata tell, and whose file's first bytes are not read yet.
pub struct Unread<'r> {
    /// The path as written.
    pub file: &'r str,
    pub size: u64,
    /// The call-1 body, whole.
    pub body: &'r Map<String, Value>,
}

/// What `upload` knows of a batch's [`Unread`] rows before their files are read: for each, in
/// order, what it made of the row (its identity, and the journal's state of it), or `None`.
/// The row keeps it, and its file is read only if that does not say it is uploaded
/// ([`crate::plan::Prepared::settled`]): a rerun does not open the files it sends nothing of.
pub type Known<'k> = &'k (dyn Fn(&[Unread<'_>]) -> Vec<Option<crate::plan::Prepared>> + Sync);

/// [`check_manifest`], showing `ahead` each batch of rows' verdicts (up to a few thousand)
/// before the first of them goes to `visit`: to look the batch's rows up in the journal at
/// once, say (and keep in each row what that made, for `visit`). With `known`, the rows'
/// files are read only where it says they must be.
pub fn check_manifest_looking_ahead(
    settings: &ManifestSettings,
    today: NaiveDate,
    known: Option<Known<'_>>,
    mut ahead: impl FnMut(&mut [Verdict]),
    mut visit: impl FnMut(Verdict) -> ControlFlow<()>,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    let mut emit = |verdict: Verdict, summary: &mut Summary| {
        summary.count(&verdict);
        let flow = visit(verdict);
        summary.stopped = flow.is_break();
        flow
    };
    let opened = Manifest::open(&settings.manifest, settings.format)
        .with_context(|| format!("cannot read the manifest {}", settings.manifest.display()))?;
    let mut manifest = match opened {
        Ok(manifest) => manifest,
        Err(unreadable) => {
            let message = match &unreadable {
                Unreadable::Empty => "the manifest is empty: no header and no rows".to_string(),
                Unreadable::Encoding(name) => format!(
                    "the manifest is not UTF-8 text: it looks like {name}; save it as UTF-8"
                ),
            };
            let problem = Problem::new(1, Severity::Error, None, message);
            let verdict = match unreadable {
                Unreadable::Empty => Verdict::Empty(problem),
                Unreadable::Encoding(_) => Verdict::Manifest(problem),
            };
            let _ = emit(verdict, &mut summary);
            return Ok(summary);
        }
    };
    let (mut context, header_problems) = Context::new(settings, manifest.header(), today)?;
    context.defer_heads = known.is_some();
    for problem in header_problems {
        if emit(Verdict::Manifest(problem), &mut summary).is_break() {
            return Ok(summary);
        }
    }
    let mut seen = Seen::default();
    let objects = Objects::new(settings);
    let read_error = |e| {
        anyhow::Error::new(e).context(format!(
            "cannot read the manifest {}",
            settings.manifest.display()
        ))
    };
    let mut batch = Vec::with_capacity(FIRST_BATCH_ROWS);
    let mut more = manifest
        .read_rows(FIRST_BATCH_ROWS, &mut batch)
        .map_err(read_error)?;
    // A pipeline of two stages: while one batch's verdicts go to `ahead` and `visit` (journal
    // lookups, planning, the report), the next batch is examined and the one after it read,
    // on another thread. Verdicts still reach `visit` in manifest order, and a batch's
    // verdicts all reach it before a problem of the next batch's store stops the pass.
    let mut ready: Option<Vec<Verdict>> = None;
    loop {
        let batch_now = std::mem::take(&mut batch);
        let reading = more;
        let (examined, stopped) = std::thread::scope(|scope| {
            let checking = scope.spawn(|| {
                let mut next = Vec::new();
                let (examined, read) = rayon::join(
                    || {
                        let mut examined = batch_now
                            .par_iter()
                            .map(|raw| context.examine(raw))
                            .collect::<Vec<Examined>>();
                        if let Some(known) = known {
                            learn(known, &mut examined);
                        }
                        objects.look_at(&mut examined).map(|()| {
                            examined
                                .into_iter()
                                .map(|row| seen.conclude(&context, row))
                                .collect::<Vec<Verdict>>()
                        })
                    },
                    || {
                        reading.then(|| {
                            next.reserve(BATCH_ROWS);
                            manifest.read_rows(BATCH_ROWS, &mut next)
                        })
                    },
                );
                (examined, read, next)
            });
            let mut stopped = false;
            if let Some(mut verdicts) = ready.take() {
                ahead(&mut verdicts);
                for verdict in verdicts {
                    if emit(verdict, &mut summary).is_break() {
                        stopped = true;
                        break;
                    }
                }
            }
            let examined = checking
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (examined, stopped)
        });
        if stopped {
            return Ok(summary);
        }
        let (examined, read, next) = examined;
        ready = Some(examined?);
        match read {
            None => break,
            Some(read) => more = read.map_err(read_error)?,
        }
        batch = next;
    }
    if let Some(mut verdicts) = ready.take() {
        ahead(&mut verdicts);
        for verdict in verdicts {
            if emit(verdict, &mut summary).is_break() {
                return Ok(summary);
            }
        }
    }
    if summary.rows + summary.other_shard_rows == 0 {
        let message = match manifest.header() {
            Some(_) => "no rows: the manifest has a header but nothing below it",
            None => "no rows: the manifest has no JSON objects",
        };
        let line = manifest.header().map_or(1, |h| h.line);
        let _ = emit(
            Verdict::Empty(Problem::new(line, Severity::Error, None, message.into())),
            &mut summary,
        );
    }
    Ok(summary)
}

/// The objects (`s3://`, `gs://`, `az://`) of a pass: looked at a batch at a time,
/// [`objects::IN_FLIGHT`] at once, on a runtime of their own that is started only if a row
/// names an object.
struct Objects<'a> {
    settings: &'a ManifestSettings,
    started: std::sync::OnceLock<Result<(tokio::runtime::Runtime, ObjectSources), String>>,
}

impl<'a> Objects<'a> {
    fn new(settings: &'a ManifestSettings) -> Objects<'a> {
        Objects {
            settings,
            started: std::sync::OnceLock::new(),
        }
    }

    /// Looks at the objects of a batch's rows (HEAD, then the first bytes), and gives each
    /// row what was found, as a local file's inspection. `Err` is a problem of the store as a
    /// whole (credentials, an endpoint that does not answer): every row would have it.
    fn look_at(&self, rows: &mut [Examined]) -> anyhow::Result<()> {
        let asked: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].remote.is_some())
            .collect();
        if asked.is_empty() {
            return Ok(());
        }
        let (runtime, sources) = self
            .started
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the async runtime: {e}"))?;
                let sources = ObjectSources::new(self.settings.sources.clone(), Purpose::Check);
                Ok((runtime, sources))
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let urls: Vec<objects::ObjectUrl> = asked
            .iter()
            .filter_map(|&i| rows[i].remote.clone())
            .collect();
        let looked = runtime.block_on(objects::inspect_all(
            sources,
            &urls,
            sniff::SNIFF_LEN,
            files::check_size,
        ));
        for ((&i, url), looked) in asked.iter().zip(urls).zip(looked) {
            if let Err(problem) = &looked
                && matches!(problem.kind, objects::Kind::Store | objects::Kind::Passing)
            {
                anyhow::bail!(
                    "{}:{}: {}",
                    self.settings.shown(),
                    rows[i].line,
                    problem.message
                );
            }
            let row = &mut rows[i];
            row.remote = None;
            row.inspected(
                PathBuf::from(url.to_string()),
                files::inspect_object(looked),
            );
        }
        Ok(())
    }
}

/// What the in-order part of the pass remembers: which files were listed on which line.
#[derive(Default)]
struct Seen {
    /// The line each file was first listed on. Local files by device and inode in a map of
    /// their own, 24 bytes an entry (keyed by a whole `FileId`, whose object URL makes it far
    /// larger, `validate` of a million rows peaked at 193 MB; now 97 MB).
    #[cfg(unix)]
    inodes: HashMap<(u64, u64), u64>,
    files: HashMap<FileId, u64>,
    /// JSONL keys already looked at for a misspelt reserved key (each is hinted once).
    keys: std::collections::HashSet<String>,
}

impl Seen {
    fn conclude(&mut self, context: &Context, mut row: Examined) -> Verdict {
        let first = match row.id.take() {
            #[cfg(unix)]
            Some(FileId::Inode { device, inode }) => {
                Some(*self.inodes.entry((device, inode)).or_insert(row.line))
            }
            Some(id) => Some(*self.files.entry(id).or_insert(row.line)),
            None => None,
        };
        if let Some(first) = first.filter(|&first| first != row.line) {
            row.problems.push(Problem {
                line: row.line,
                severity: Severity::Error,
                column: Some("file".into()),
                value: row.file.clone(),
                message: format!("already listed on line {first}"),
            });
        }
        if context.hints_per_row() {
            let new_keys: Vec<String> = row
                .body
                .keys()
                .filter(|key| !self.keys.contains(*key))
                .cloned()
                .collect();
            for key in new_keys {
                if let Some(problem) = context.optional_key_hint(row.line, &key, &row.body) {
                    row.problems.push(problem);
                }
                self.keys.insert(key);
            }
        }
        row.conclude(context)
    }
}

#[cfg(test)]
mod tests;

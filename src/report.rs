//! The results report: every manifest row exactly once, in manifest order, with its status.
//!
//! Columns (a stable contract: docs/upload.md, "The report"): `line, file, status, conversation_id, attempts,
//! bytes, sha256, duration_ms, error, notes`, as CSV or JSONL by the report's extension.
//! Rows are written as they are settled into a temporary file in the report's folder, which
//! is renamed over the report at the end (or on interruption), so a reader never sees half a
//! report. Outcomes arrive out of order from the pool; a reorder buffer keyed by the row's
//! position holds them until their turn, and the pool never runs more than a bounded window
//! ahead of the oldest unsettled row, so the buffer stays small however long the manifest.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::human;
use crate::outcome::{End, Outcome};

/// The report's columns, in order.
pub const COLUMNS: [&str; 10] = [
    "line",
    "file",
    "status",
    "conversation_id",
    "attempts",
    "bytes",
    "sha256",
    "duration_ms",
    "error",
    "notes",
];

/// What happened to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Both calls succeeded in this run.
    Uploaded,
    /// The journal says an earlier run uploaded it; nothing was sent.
    AlreadyUploaded,
    Failed,
    /// Skipped by `--skip-invalid`; `error` holds the problems.
    Invalid,
    /// Not tried: interrupted, stopped early, or beyond `--limit`.
    NotAttempted,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Uploaded => "uploaded",
            RowStatus::AlreadyUploaded => "already_uploaded",
            RowStatus::Failed => "failed",
            RowStatus::Invalid => "invalid",
            RowStatus::NotAttempted => "not_attempted",
        }
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    /// The manifest line the row starts on (header = line 1).
    pub line: u64,
    /// The audio path as written in the manifest.
    pub file: String,
    pub status: RowStatus,
    pub conversation_id: Option<String>,
    /// Requests made for this row in this run (1 when the first try of each call worked,
    /// plus one per retry; 0 when nothing was sent).
    pub attempts: u32,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// Things worth knowing that are not errors, joined with `; `.
    #[serde(serialize_with = "join_notes")]
    pub notes: Vec<String>,
}

fn join_notes<S: serde::Serializer>(notes: &[String], s: S) -> Result<S::Ok, S::Error> {
    if notes.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_str(&notes.join("; "))
    }
}

impl ReportRow {
    /// A row with only its place and status; the rest filled by the caller.
    pub fn new(line: u64, file: impl Into<String>, status: RowStatus) -> ReportRow {
        ReportRow {
            line,
            file: file.into(),
            status,
            conversation_id: None,
            attempts: 0,
            bytes: None,
            sha256: None,
            duration_ms: None,
            error: None,
            notes: Vec::new(),
        }
    }
}

/// The one place a row's outcome becomes its line in the report.
impl From<Outcome> for ReportRow {
    fn from(outcome: Outcome) -> ReportRow {
        let (status, conversation, bytes, sha256, error) = match outcome.end {
            End::Uploaded {
                conversation,
                bytes,
                sha256,
            } => (
                RowStatus::Uploaded,
                Some(conversation),
                Some(bytes),
                Some(sha256),
                None,
            ),
            End::AlreadyUploaded {
                conversation,
                bytes,
                sha256,
            } => (
                RowStatus::AlreadyUploaded,
                conversation,
                bytes,
                sha256,
                None,
            ),
            End::Failed {
                conversation,
                error,
            } => (RowStatus::Failed, conversation, None, None, Some(error)),
            End::Invalid { error } => (RowStatus::Invalid, None, None, None, Some(error)),
            End::NotAttempted { conversation } => {
                (RowStatus::NotAttempted, conversation, None, None, None)
            }
        };
        ReportRow {
            conversation_id: conversation.map(|c| c.0),
            attempts: outcome.attempts,
            bytes,
            sha256,
            duration_ms: outcome
                .duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            error,
            notes: outcome.notes,
            ..ReportRow::new(outcome.line, outcome.file, status)
        }
    }
}

impl ReportRow {
    /// A row from its ten cells, in [`COLUMNS`] order (`None` for an empty cell).
    fn from_cells(cells: &[Option<String>]) -> Result<ReportRow, String> {
        let [
            line,
            file,
            status,
            conversation_id,
            attempts,
            bytes,
            sha256,
            duration_ms,
            error,
            notes,
        ] = cells
        else {
            return Err(format!(
                "expected {} columns, found {}",
                COLUMNS.len(),
                cells.len()
            ));
        };
        let number = |name: &str, cell: &Option<String>| -> Result<Option<u64>, String> {
            cell.as_deref()
                .map(|text| {
                    text.parse()
                        .map_err(|_| format!("{name} {text:?} is not a whole number"))
                })
                .transpose()
        };
        let line = number("line", line)?.ok_or("line is empty")?;
        let status = status.as_deref().unwrap_or_default();
        Ok(ReportRow {
            line,
            file: file.clone().unwrap_or_default(),
            status: RowStatus::parse(status)
                .ok_or_else(|| format!("status {status:?} is not one of a report's"))?,
            conversation_id: conversation_id.clone(),
            attempts: number("attempts", attempts)?
                .map_or(Ok(0), u32::try_from)
                .map_err(|_| "attempts is too large".to_string())?,
            bytes: number("bytes", bytes)?,
            sha256: sha256.clone(),
            duration_ms: number("duration_ms", duration_ms)?,
            error: error.clone(),
            // Joined with "; " when written: kept as one note, it is written back the same.
            notes: notes.iter().cloned().collect(),
        })
    }

    fn csv_record(&self) -> [String; 10] {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let number = |value: Option<u64>| value.map(|n| n.to_string()).unwrap_or_default();
        [
            self.line.to_string(),
            self.file.clone(),
            self.status.as_str().to_string(),
            text(&self.conversation_id),
            self.attempts.to_string(),
            number(self.bytes),
            text(&self.sha256),
            number(self.duration_ms),
            text(&self.error),
            self.notes.join("; "),
        ]
    }
}

impl RowStatus {
    /// The status as a report writes it.
    pub fn parse(text: &str) -> Option<RowStatus> {
        Some(match text {
            "uploaded" => RowStatus::Uploaded,
            "already_uploaded" => RowStatus::AlreadyUploaded,
            "failed" => RowStatus::Failed,
            "invalid" => RowStatus::Invalid,
            "not_attempted" => RowStatus::NotAttempted,
            _ => return None,
        })
    }
}

/// Reads a report this tool wrote (CSV or JSONL, by its extension) back into its rows, in
/// the order they stand; any other file is an error that says where it stops being one.
pub fn read_report(path: &Path) -> anyhow::Result<Vec<ReportRow>> {
    let format = ReportFormat::from_path(path)?;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the report {}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let mut rows = Vec::new();
    match format {
        ReportFormat::Csv => {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(reader);
            let header = csv
                .headers()
                .with_context(|| format!("cannot read the report {}", path.display()))?;
            if header.iter().ne(COLUMNS) {
                bail!(
                    "{}: not a report of voyc-import: its header is not {}",
                    path.display(),
                    COLUMNS.join(",")
                );
            }
            for record in csv.records() {
                let record =
                    record.with_context(|| format!("cannot read the report {}", path.display()))?;
                let line = record.position().map_or(0, |p| p.line());
                let cells: Vec<Option<String>> = record
                    .iter()
                    .map(|cell| (!cell.is_empty()).then(|| cell.to_string()))
                    .collect();
                rows.push(
                    ReportRow::from_cells(&cells)
                        .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", path.display()))?,
                );
            }
        }
        ReportFormat::Jsonl => {
            use std::io::BufRead as _;
            for (n, text) in reader.lines().enumerate() {
                let text =
                    text.with_context(|| format!("cannot read the report {}", path.display()))?;
                if text.trim().is_empty() {
                    continue;
                }
                let at = |e: String| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1);
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&text)
                        .map_err(|e| at(format!("not a JSON object: {e}")))?;
                let cells: Vec<Option<String>> = COLUMNS
                    .iter()
                    .map(|column| match object.get(*column) {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::String(text)) => Some(text.clone()),
                        Some(other) => Some(other.to_string()),
                    })
                    .collect();
                rows.push(ReportRow::from_cells(&cells).map_err(at)?);
            }
        }
    }
    Ok(rows)
}

/// CSV or JSONL, from the report's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Jsonl,
}

impl ReportFormat {
    pub fn from_path(path: &Path) -> anyhow::Result<ReportFormat> {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => Ok(ReportFormat::Csv),
            Some("jsonl" | "ndjson") => Ok(ReportFormat::Jsonl),
            _ => bail!(
                "--report {}: the report must end in .csv or .jsonl (it decides the format)",
                path.display()
            ),
        }
    }
}

/// `<manifest stem>.report.csv` in the working directory.
pub fn default_report_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".to_string());
    PathBuf::from(format!("{stem}.report.csv"))
}

/// The report path plus `.journal`.
pub fn default_journal_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// How many rows ended in each status, and the bytes sent in this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub uploaded: u64,
    pub already_uploaded: u64,
    pub failed: u64,
    pub invalid: u64,
    pub not_attempted: u64,
    /// Bytes uploaded in this run.
    pub bytes: u64,
}

impl Counts {
    pub fn add(&mut self, row: &ReportRow) {
        match row.status {
            RowStatus::Uploaded => {
                self.uploaded += 1;
                self.bytes += row.bytes.unwrap_or(0);
            }
            RowStatus::AlreadyUploaded => self.already_uploaded += 1,
            RowStatus::Failed => self.failed += 1,
            RowStatus::Invalid => self.invalid += 1,
            RowStatus::NotAttempted => self.not_attempted += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.uploaded + self.already_uploaded + self.failed + self.invalid + self.not_attempted
    }

    /// Every row uploaded, now or in an earlier run.
    pub fn all_uploaded(&self) -> bool {
        self.failed == 0 && self.invalid == 0 && self.not_attempted == 0
    }
}

enum Sink {
    Csv(Box<csv::Writer<BufWriter<std::fs::File>>>),
    Jsonl(BufWriter<std::fs::File>),
}

/// Writes the report in manifest order from outcomes that arrive in any order.
pub struct ReportWriter {
    path: PathBuf,
    temp: tempfile::TempPath,
    sink: Sink,
    next: u64,
    pending: BTreeMap<u64, ReportRow>,
    counts: Counts,
}

/// The folder a report goes in, created if need be.
pub fn report_folder(report: &Path) -> anyhow::Result<&Path> {
    let folder = match report.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder).with_context(|| {
        format!(
            "cannot write the report {}: cannot create its folder {}",
            report.display(),
            folder.display()
        )
    })?;
    Ok(folder)
}

/// A report that could not be written at the end of a run: the rows' counts all the same (for
/// the summary), why, and where its rows are if the finished file could be kept under its
/// temporary name.
pub struct Unwritten {
    pub counts: Counts,
    pub error: anyhow::Error,
    /// The complete temporary report, kept because it could not be renamed into place.
    pub kept: Option<PathBuf>,
}

impl fmt::Debug for Unwritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl fmt::Display for Unwritten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl ReportWriter {
    /// Creates the temporary file beside `path`, with the CSV header on disk: this is also the
    /// check, made before anything is uploaded, that the report's folder is writable and that
    /// the report can take the place of what `path` names (not a folder).
    pub fn create(path: &Path) -> anyhow::Result<ReportWriter> {
        let format = ReportFormat::from_path(path)?;
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            let what = if meta.is_dir() {
                "a folder"
            } else {
                "not a regular file"
            };
            bail!(
                "cannot write the report {}: it is {what}; give --report the path of a file",
                path.display()
            );
        }
        let folder = report_folder(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        // A report is an ordinary file (it holds no secret): the umask decides, as for any
        // file the user writes, rather than the 0600 of a temporary file.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = builder.tempfile_in(folder).with_context(|| {
            format!(
                "cannot write the report {}: its folder {} is not writable",
                path.display(),
                folder.display()
            )
        })?;
        let (file, temp) = temp.into_parts();
        let buffered = BufWriter::with_capacity(64 << 10, file);
        let mut sink = match format {
            ReportFormat::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(buffered))),
            ReportFormat::Jsonl => Sink::Jsonl(buffered),
        };
        let header = match &mut sink {
            Sink::Csv(writer) => writer
                .write_record(COLUMNS)
                .map_err(anyhow::Error::from)
                .and_then(|()| writer.flush().map_err(anyhow::Error::from)),
            Sink::Jsonl(_) => Ok(()),
        };
        header.with_context(|| format!("cannot write the report {}", path.display()))?;
        Ok(ReportWriter {
            path: path.to_path_buf(),
            temp,
            sink,
            next: 0,
            pending: BTreeMap::new(),
            counts: Counts::default(),
        })
    }

    /// Takes the outcome of the row at position `seq` (0 for the manifest's first row) and
    /// writes every row whose turn has come. Returns how many rows were written.
    pub fn push(&mut self, seq: u64, row: ReportRow) -> anyhow::Result<u64> {
        if seq < self.next || self.pending.contains_key(&seq) {
            bail!("row {} (line {}) was reported twice", seq + 1, row.line);
        }
        self.pending.insert(seq, row);
        let mut written = 0;
        while let Some(row) = self.pending.remove(&self.next) {
            // Counted first: a row that cannot be written still counts in the summary.
            self.counts.add(&row);
            self.next += 1;
            written += 1;
            self.write(&row)?;
        }
        Ok(written)
    }

    /// Counts a row for the summary once the report can no longer be written.
    pub fn count(&mut self, row: &ReportRow) {
        self.counts.add(row);
    }

    /// Gives up on a report that failed while being written (a full disk, say): the temporary
    /// file is removed, the counts kept.
    pub fn abandon(mut self, error: anyhow::Error) -> Unwritten {
        for row in std::mem::take(&mut self.pending).values() {
            self.counts.add(row);
        }
        Unwritten {
            counts: self.counts,
            error,
            kept: None,
        }
    }

    fn write(&mut self, row: &ReportRow) -> anyhow::Result<()> {
        let result = match &mut self.sink {
            Sink::Csv(writer) => writer
                .write_record(row.csv_record())
                .map_err(anyhow::Error::from),
            Sink::Jsonl(writer) => serde_json::to_writer(&mut *writer, row)
                .map_err(anyhow::Error::from)
                .and_then(|()| writer.write_all(b"\n").map_err(anyhow::Error::from)),
        };
        result.with_context(|| format!("cannot write the report {}", self.path.display()))
    }

    /// Rows waiting for an earlier one.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Flushes, syncs and renames the report into place. Fails if a row is missing, or if the
    /// file cannot be written or renamed; a complete file that cannot be renamed (the report's
    /// path became a folder, its folder read-only) is kept under its temporary name.
    pub fn finish(self) -> Result<Counts, Unwritten> {
        if let Some((&seq, row)) = self.pending.iter().next() {
            let error = anyhow::anyhow!(
                "the report is missing row {} (the one before line {}); it was not written",
                self.next + 1,
                row.line.min(seq + 2)
            );
            return Err(Unwritten {
                counts: self.counts,
                error,
                kept: None,
            });
        }
        let context = || format!("cannot write the report {}", self.path.display());
        let flushed = match self.sink {
            Sink::Csv(writer) => writer
                .into_inner()
                .map_err(|err| anyhow::anyhow!("{}", err.error()))
                .and_then(|buffered| {
                    buffered
                        .into_inner()
                        .map_err(|err| anyhow::anyhow!("{}", err.error()))
                }),
            Sink::Jsonl(writer) => writer
                .into_inner()
                .map_err(|err| anyhow::anyhow!("{}", err.error())),
        };
        let synced = flushed.and_then(|file| file.sync_all().map_err(anyhow::Error::from));
        if let Err(error) = synced {
            return Err(Unwritten {
                counts: self.counts,
                error: error.context(context()),
                kept: None,
            });
        }
        match self.temp.persist(&self.path) {
            Ok(()) => Ok(self.counts),
            Err(err) => {
                let error = anyhow::Error::from(err.error).context(context());
                Err(Unwritten {
                    counts: self.counts,
                    error,
                    kept: err.path.keep().ok(),
                })
            }
        }
    }
}

/// How a run ended, for the summary line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Done,
    Interrupted,
    /// Stopped before the end for a reason printed just before (a refused token, say), which
    /// says what to do.
    Stopped,
    /// Every row settled, but the report could not be written (the error is printed before).
    NotWritten,
}

/// `done: 26,245 uploaded, 21,961 already uploaded, 4 failed in 11m02s (33.7 MiB/s); report x.csv`
/// or `interrupted: ...; report x.csv; run the same command to resume`.
pub fn summary_line(counts: &Counts, elapsed: Duration, report: &Path, ending: Ending) -> String {
    let mut parts = vec![format!("{} uploaded", human::count(counts.uploaded))];
    for (n, label) in [
        (counts.already_uploaded, "already uploaded"),
        (counts.failed, "failed"),
        (counts.invalid, "invalid"),
        (counts.not_attempted, "not attempted"),
    ] {
        if n > 0 {
            parts.push(format!("{} {label}", human::count(n)));
        }
    }
    let list = parts.join(", ");
    let report = human::one_line(&report.display().to_string()).into_owned();
    match ending {
        Ending::Done => {
            let rate = counts.bytes as f64 / elapsed.as_secs_f64().max(0.001);
            format!(
                "done: {list} in {} ({}/s); report {report}",
                human::elapsed(elapsed),
                human::bytes(rate as u64)
            )
        }
        Ending::Interrupted => {
            format!("interrupted: {list}; report {report}; run the same command to resume")
        }
        Ending::Stopped => format!("stopped: {list}; report {report}"),
        Ending::NotWritten => format!("stopped: {list}; the report {report} was not written"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64, status: RowStatus) -> ReportRow {
        ReportRow::new(line, format!("calls/{line}.wav"), status)
    }

    #[test]
    fn rows_that_arrive_out_of_order_are_written_in_manifest_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut writer = ReportWriter::create(&path).unwrap();
        assert_eq!(writer.push(2, row(4, RowStatus::Failed)).unwrap(), 0);
        assert_eq!(writer.push(1, row(3, RowStatus::Invalid)).unwrap(), 0);
        assert_eq!(writer.pending(), 2);
        assert!(!path.exists(), "nothing at the report path until the end");
        assert_eq!(writer.push(0, row(2, RowStatus::Uploaded)).unwrap(), 3);
        assert_eq!(writer.pending(), 0);
        let counts = writer.finish().unwrap();
        assert_eq!((counts.uploaded, counts.invalid, counts.failed), (1, 1, 1));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "line,file,status,conversation_id,attempts,bytes,sha256,duration_ms,error,notes"
        );
        assert!(lines[1].starts_with("2,calls/2.wav,uploaded,"));
        assert!(lines[2].starts_with("3,calls/3.wav,invalid,"));
        assert!(lines[3].starts_with("4,calls/4.wav,failed,"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the temporary file was renamed");
    }

    #[test]
    fn csv_cells_with_commas_quotes_and_newlines_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut writer = ReportWriter::create(&path).unwrap();
        let mut failed = ReportRow::new(2, "calls/a,b.wav", RowStatus::Failed);
        failed.attempts = 1;
        failed.error = Some("call 1: HTTP 400: agent: \"x\" is\nbad".into());
        failed.notes = vec!["one".into(), "two".into()];
        writer.push(0, failed).unwrap();
        writer.finish().unwrap();
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[1], "calls/a,b.wav");
        assert_eq!(&record[4], "1");
        assert_eq!(&record[8], "call 1: HTTP 400: agent: \"x\" is\nbad");
        assert_eq!(&record[9], "one; two");
    }

    #[test]
    fn a_jsonl_report_has_every_column_in_order_with_nulls_for_empty_cells() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let mut writer = ReportWriter::create(&path).unwrap();
        let mut uploaded = row(2, RowStatus::Uploaded);
        uploaded.conversation_id = Some("c-1".into());
        uploaded.attempts = 1;
        uploaded.bytes = Some(10);
        uploaded.sha256 = Some("ab".into());
        uploaded.duration_ms = Some(5);
        writer.push(0, uploaded).unwrap();
        writer.push(1, row(3, RowStatus::NotAttempted)).unwrap();
        writer.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"line":2,"file":"calls/2.wav","status":"uploaded","conversation_id":"c-1","attempts":1,"bytes":10,"sha256":"ab","duration_ms":5,"error":null,"notes":null}"#
        );
        assert_eq!(
            lines[1],
            r#"{"line":3,"file":"calls/3.wav","status":"not_attempted","conversation_id":null,"attempts":0,"bytes":null,"sha256":null,"duration_ms":null,"error":null,"notes":null}"#
        );
    }

    #[test]
    fn a_report_with_a_missing_row_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut writer = ReportWriter::create(&path).unwrap();
        writer.push(1, row(3, RowStatus::Uploaded)).unwrap();
        let err = writer.finish().unwrap_err().to_string();
        assert!(err.contains("missing row 1"), "{err}");
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp removed"
        );
    }

    #[test]
    fn a_report_path_that_is_a_folder_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        std::fs::create_dir(&path).unwrap();
        let err = format!("{:#}", ReportWriter::create(&path).err().unwrap());
        assert!(
            err.ends_with("it is a folder; give --report the path of a file"),
            "{err}"
        );
    }

    #[test]
    fn a_report_that_cannot_be_renamed_into_place_is_kept_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let mut writer = ReportWriter::create(&path).unwrap();
        writer.push(0, row(2, RowStatus::Uploaded)).unwrap();
        std::fs::create_dir(&path).unwrap();
        let unwritten = writer.finish().unwrap_err();
        assert_eq!(unwritten.counts.uploaded, 1);
        let kept = unwritten.kept.expect("the temporary report is kept");
        let text = std::fs::read_to_string(&kept).unwrap();
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("2,calls/2.wav,uploaded")
        );
    }

    #[test]
    fn a_row_reported_twice_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ReportWriter::create(&dir.path().join("r.csv")).unwrap();
        writer.push(0, row(2, RowStatus::Uploaded)).unwrap();
        assert!(writer.push(0, row(2, RowStatus::Uploaded)).is_err());
    }

    #[test]
    fn a_report_folder_that_cannot_be_made_is_found_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = ReportWriter::create(&file.join("r.csv")).err().unwrap();
        assert!(
            format!("{err:#}").contains("cannot create its folder"),
            "{err:#}"
        );
        let made = ReportWriter::create(&dir.path().join("new/folder/r.csv")).unwrap();
        made.finish().unwrap();
        assert!(dir.path().join("new/folder/r.csv").exists());
    }

    #[test]
    fn the_report_format_comes_from_the_extension() {
        assert_eq!(
            ReportFormat::from_path(Path::new("a.CSV")).unwrap(),
            ReportFormat::Csv
        );
        assert_eq!(
            ReportFormat::from_path(Path::new("a.jsonl")).unwrap(),
            ReportFormat::Jsonl
        );
        assert_eq!(
            ReportFormat::from_path(Path::new("a.ndjson")).unwrap(),
            ReportFormat::Jsonl
        );
        assert!(ReportFormat::from_path(Path::new("a.txt")).is_err());
    }

    #[test]
    fn default_paths_follow_the_contract() {
        let report = default_report_path(Path::new("/data/archive-2019.csv"));
        assert_eq!(report, Path::new("archive-2019.report.csv"));
        assert_eq!(
            default_journal_path(&report),
            Path::new("archive-2019.report.csv.journal")
        );
    }

    #[test]
    fn the_summary_lines_match_the_examples() {
        let counts = Counts {
            uploaded: 26_245,
            already_uploaded: 21_961,
            failed: 4,
            bytes: 35_336_192 * 662,
            ..Counts::default()
        };
        assert_eq!(
            summary_line(
                &counts,
                Duration::from_secs(662),
                Path::new("archive-2019.report.csv"),
                Ending::Done
            ),
            "done: 26,245 uploaded, 21,961 already uploaded, 4 failed in 11m02s (33.7 MiB/s); report archive-2019.report.csv"
        );
        let counts = Counts {
            uploaded: 21_961,
            failed: 2,
            not_attempted: 26_247,
            ..Counts::default()
        };
        assert_eq!(
            summary_line(
                &counts,
                Duration::from_secs(60),
                Path::new("archive-2019.report.csv"),
                Ending::Interrupted
            ),
            "interrupted: 21,961 uploaded, 2 failed, 26,247 not attempted; report archive-2019.report.csv; run the same command to resume"
        );
    }
}

//! From raw manifest rows to call-1 bodies and problems: `--map` renames, `--set` fills, the
//! `file` column taken out, empty values dropped, reserved fields checked and typed, the
//! audio file inspected. Also the header's own problems (missing, duplicated or misspelt
//! columns), found once for the whole manifest.

use chrono::NaiveDate;
use serde_json::{Map, Number, Value};

use super::fields::{self, FieldProblem, REQUIRED, RESERVED, Severity};
use super::files::{self, FileId};
use super::settings::{Location, ManifestSettings};
use super::{CheckedRow, Problem, Verdict};
use crate::manifest::Format;
use crate::manifest::{Header, MAX_COLUMNS, Name, RawRow, column_label, json_kind};

/// The reserved keys that may be left out.
const OPTIONAL: [&str; 3] = ["direction", "language", "speakers"];

/// Everything a row's checks need to know, shared read-only by the parallel checks.
pub(crate) struct Context<'a> {
    settings: &'a ManifestSettings,
    today: NaiveDate,
    /// CSV only: the header as read, and as the checks see it.
    header: Option<Header>,
    layout: Option<Layout>,
    /// The header has an error, so no row may be valid.
    manifest_invalid: bool,
    /// Leave the first bytes of an otherwise valid row's local file unread, for
    /// [`Examined::read_head`] (see [`super::Known`]).
    pub defer_heads: bool,
}

/// A CSV header after `--map`.
struct Layout {
    /// Each column's name after `--map`; `None` for a column to skip (a repeated name).
    names: Vec<Option<String>>,
    has_file: bool,
    /// Required keys the header lacks (already reported once, on the header's line).
    missing: Vec<&'static str>,
}

/// One row after the checks that can run in parallel, before the in-order ones.
pub(crate) struct Examined {
    pub line: u64,
    /// The audio path as written.
    pub file: Option<String>,
    pub problems: Vec<Problem>,
    /// The body as far as it could be built (for JSONL hints and, if valid, for sending).
    pub body: Map<String, Value>,
    pub id: Option<FileId>,
    /// The file's path, size and format (`None` while its first bytes are unread).
    accepted: Option<(std::path::PathBuf, u64, Option<super::AudioFormat>)>,
    modified: Option<std::time::SystemTime>,
    /// An object still to be looked at (its HEAD and first bytes), with the batch's others.
    pub remote: Option<crate::objects::ObjectUrl>,
    object: Option<crate::objects::RemoteObject>,
    /// A row of another shard (`upload --shard`): its file is not looked at.
    elsewhere: bool,
    /// What `upload` made of the row before planning it (see [`super::Known`]).
    pub prepared: Option<Box<crate::plan::Prepared>>,
}

impl<'a> Context<'a> {
    /// The context for a manifest, and the header's problems (CSV). `Err` is a usage error:
    /// a `--map` naming a column that is not there, or giving two columns one name.
    pub fn new(
        settings: &'a ManifestSettings,
        header: Option<&Header>,
        today: NaiveDate,
    ) -> anyhow::Result<(Context<'a>, Vec<Problem>)> {
        let (layout, problems) = match header {
            Some(header) => {
                let (layout, problems) = Layout::new(header, settings)?;
                (Some(layout), problems)
            }
            None => (None, Vec::new()),
        };
        let context = Context {
            settings,
            today,
            header: header.cloned(),
            layout,
            manifest_invalid: problems.iter().any(Problem::is_error),
            defer_heads: false,
        };
        Ok((context, problems))
    }

    /// JSONL has no header, so misspelt keys are looked for row by row.
    pub fn hints_per_row(&self) -> bool {
        self.settings.format == Format::Jsonl
    }

    /// Everything about one row that does not depend on other rows.
    pub fn examine(&self, raw: &RawRow) -> Examined {
        let mut row = Examined {
            line: raw.line,
            file: None,
            problems: Vec::new(),
            body: Map::new(),
            id: None,
            accepted: None,
            modified: None,
            remote: None,
            object: None,
            elsewhere: false,
            prepared: None,
        };
        let cells = match raw.cells(self.header.as_ref()) {
            Ok(cells) => cells,
            Err(e) => {
                row.problems.push(Problem {
                    line: raw.line,
                    severity: Severity::Error,
                    column: e.column,
                    value: e.value,
                    message: e.message,
                });
                // The report still names the row's file where it can be read.
                let file_column = self.layout.as_ref().and_then(|layout| {
                    layout
                        .names
                        .iter()
                        .position(|name| name.as_deref() == Some("file"))
                });
                if let (Some(index), Some(header)) = (file_column, &self.header) {
                    row.file = raw.field_text(index, header).map(str::to_string);
                }
                row.elsewhere = self
                    .settings
                    .elsewhere(row.file.as_deref().unwrap_or_default().trim());
                return row;
            }
        };
        let mut file: Option<Value> = None;
        for (name, value) in cells {
            let key = match &name {
                Name::Column(index, _) => match self.column_name(*index) {
                    Some(key) => key,
                    None => continue,
                },
                Name::Key(key) => self.settings.rename(key),
            };
            if let (Name::Column(index, _), true) = (&name, key.is_empty()) {
                if !fields::is_blank(&value) {
                    row.error(
                        Some(&column_label(*index, "")),
                        Some(shown(&value)),
                        "this column has no name in the header, so its value has nowhere to go",
                    );
                }
                continue;
            }
            if key == "file" && file.is_none() {
                file = Some(value);
            } else if key == "file" || row.body.contains_key(key) {
                // Only JSONL gets here: CSV names were made unique with the header. Name the
                // key --map renamed, whichever of the two came first.
                let renamed = self.settings.renamed_to(key).unwrap_or(name.as_str());
                row.error(
                    Some(key),
                    None,
                    format!("given twice on this line (once as {renamed:?}, renamed by --map)"),
                );
            } else if !fields::is_blank(&value) {
                row.body.insert(key.to_string(), value);
            } else if let Some(fill) = self.settings.fill(key) {
                row.body.insert(key.to_string(), Value::String(fill.into()));
            } else if REQUIRED.contains(&key) {
                // Kept so the check below says "required, but empty"; never sent.
                row.body.insert(key.to_string(), value);
            }
        }
        for (key, fill) in &self.settings.fills {
            if !row.body.contains_key(key) {
                row.body.insert(key.clone(), Value::String(fill.clone()));
            }
        }
        let reported = self.read_times(&mut row);
        self.check_fields(&mut row, &reported);
        let target = self.check_file_value(&mut row, file);
        // Every shard checks every row's fields, so that all refuse a bad manifest alike; only
        // the shard a row belongs to opens its file (or asks for its object).
        row.elsewhere = self
            .settings
            .elsewhere(row.file.as_deref().unwrap_or_default());
        match target.filter(|_| !row.elsewhere) {
            Some(Location::File(path)) => {
                // A row with an error already has its file read whole, so that all its
                // problems are said at once.
                let head = !self.defer_heads
                    || self.manifest_invalid
                    || row.problems.iter().any(Problem::is_error);
                let inspection = files::inspect(&path, head);
                row.inspected(path, inspection);
            }
            // Looked at with the rest of the batch's objects, many at a time.
            Some(Location::Object(url)) => row.remote = Some(url),
            None => {}
        }
        type_reserved_values(&mut row.body);
        row
    }

    fn column_name(&self, index: usize) -> Option<&str> {
        let layout = self.layout.as_ref()?;
        layout.names.get(index)?.as_deref()
    }

    /// The `file` value: present, a non-empty string; returns where it points.
    fn check_file_value(&self, row: &mut Examined, file: Option<Value>) -> Option<Location> {
        match file {
            None | Some(Value::Null) => {
                let reported_for_header = self.layout.as_ref().is_some_and(|l| !l.has_file);
                if !reported_for_header {
                    row.error(Some("file"), None, "required, but missing");
                }
                None
            }
            Some(Value::String(text)) => {
                let text = text.trim();
                if text.is_empty() {
                    row.error(Some("file"), None, "required, but empty");
                    return None;
                }
                row.file = Some(text.to_string());
                match self.settings.locate(text) {
                    Ok(location) => Some(location),
                    Err(message) => {
                        row.error(Some("file"), Some(text.to_string()), message);
                        None
                    }
                }
            }
            Some(other) => {
                row.error(
                    Some("file"),
                    Some(other.to_string()),
                    format!("expected a path as a string, found {}", json_kind(&other)),
                );
                None
            }
        }
    }

    /// `call_date` and `call_time` from `--timestamp-column`, or from their own columns in
    /// `--date-format` and `--time-format`, as Voyc wants them (`YYYY-MM-DD`, `hh:mm:ss`),
    /// checked against `--timezone`. Returns the keys whose problems are already reported.
    fn read_times(&self, row: &mut Examined) -> Vec<&'static str> {
        let times = &self.settings.times;
        let mut reported = Vec::new();
        if let Some(column) = &times.timestamp_column {
            reported = vec!["call_date", "call_time"];
            for key in ["call_date", "call_time"] {
                if row.body.get(key).is_some_and(|v| !fields::is_blank(v)) {
                    row.error(
                        Some(key),
                        None,
                        format!("given on this line, but --timestamp-column {column} fills it"),
                    );
                }
            }
            match row.body.shift_remove(column.as_str()) {
                None => row.error(
                    Some(column),
                    None,
                    "required by --timestamp-column, but empty or missing",
                ),
                Some(value) => match times.read_timestamp(&value) {
                    Ok(local) => {
                        let date = local.format("%Y-%m-%d").to_string();
                        let time = local.format("%H:%M:%S").to_string();
                        row.body.insert("call_date".into(), Value::String(date));
                        row.body.insert("call_time".into(), Value::String(time));
                    }
                    Err(message) => row.error(Some(column), Some(shown(&value)), message),
                },
            }
            return reported;
        }
        let formats = [
            ("call_date", times.date_format.as_deref()),
            ("call_time", times.time_format.as_deref()),
        ];
        for (key, format) in formats {
            let (Some(format), Some(Value::String(text))) = (format, row.body.get(key)) else {
                continue;
            };
            let text = text.clone();
            let read = match key {
                "call_date" => times
                    .read_date(&text, format)
                    .map(|d| d.format("%Y-%m-%d").to_string()),
                _ => times
                    .read_time(&text, format)
                    .map(|t| t.format("%H:%M:%S").to_string()),
            };
            match read {
                Ok(iso) => {
                    row.body.insert(key.into(), Value::String(iso));
                }
                Err(message) => {
                    row.error(Some(key), Some(text), message);
                    reported.push(key);
                }
            }
        }
        if let (Some(zone), Some(date), Some(time)) = (
            times.timezone,
            row.body
                .get("call_date")
                .and_then(|v| fields::parse_date(v).ok()),
            row.body
                .get("call_time")
                .and_then(|v| fields::parse_time(v).ok()),
        ) && let Err(message) = times.exists_once(date.and_time(time), zone)
        {
            let value = row.body.get("call_time").map(shown);
            row.error(Some("call_time"), value, message);
            reported.push("call_time");
        }
        reported
    }

    /// The reserved keys, by the rules in `fields`; none of `reported`, whose problems are
    /// already said.
    fn check_fields(&self, row: &mut Examined, reported: &[&str]) {
        let missing: Vec<&str> = REQUIRED
            .into_iter()
            .filter(|key| row.body.get(*key).is_none_or(Value::is_null))
            .collect();
        for problem in fields::check_body(&row.body, self.today) {
            if reported.contains(&problem.field.as_str()) {
                continue;
            }
            let is_missing = problem.value.is_none() && missing.contains(&problem.field.as_str());
            if !is_missing {
                row.problems.push(from_field(row.line, problem));
                continue;
            }
            let key = problem.field.as_str();
            if let Some(layout) = &self.layout {
                if !layout.missing.contains(&key) {
                    row.problems.push(from_field(row.line, problem));
                }
                continue;
            }
            let near = row
                .body
                .keys()
                .find(|k| !RESERVED.contains(&k.as_str()) && is_near(k, key))
                .cloned();
            row.problems.push(match near {
                Some(near) => did_you_mean(row.line, &near, key, Place::Line),
                None => from_field(row.line, problem),
            });
        }
    }

    /// A warning for a JSONL key that looks like a misspelt optional reserved key.
    pub fn optional_key_hint(
        &self,
        line: u64,
        key: &str,
        body: &Map<String, Value>,
    ) -> Option<Problem> {
        let reserved = OPTIONAL
            .into_iter()
            .find(|r| !body.contains_key(*r) && is_near(key, r))?;
        Some(did_you_mean(line, key, reserved, Place::Line))
    }
}

impl Examined {
    /// Takes what the checks found of the row's audio file (`path`, or an object's URL as a
    /// path): its size and format, or the problem with it.
    pub fn inspected(&mut self, path: std::path::PathBuf, inspection: files::Inspection) {
        self.id = inspection.id;
        self.modified = inspection.modified;
        self.object = inspection.object;
        match inspection.outcome {
            Ok((size, format)) => {
                if let Some(format) = format {
                    self.formatted(format);
                }
                self.accepted = Some((path, size, format));
            }
            Err(message) => {
                let file = self.file.clone();
                self.error(Some("file"), file, message);
            }
        }
    }

    /// A local file whose first bytes are still to read: what the journal needs to know the
    /// row by.
    pub fn unread(&self) -> Option<super::Unread<'_>> {
        match (&self.accepted, &self.file) {
            (Some((_, size, None)), Some(file)) if self.object.is_none() => Some(super::Unread {
                file,
                size: *size,
                body: &self.body,
            }),
            _ => None,
        }
    }

    /// Reads the first bytes left unread, unless what `upload` made of the row says they need
    /// not be read: the journal has it uploaded, and nothing of it is sent again.
    pub fn read_head(&mut self) {
        if self
            .prepared
            .as_deref()
            .is_some_and(crate::plan::Prepared::settled)
        {
            return;
        }
        let Some((path, _, None)) = &self.accepted else {
            return;
        };
        match files::read_format(path) {
            Ok(format) => {
                self.formatted(format);
                if let Some((_, _, unread)) = &mut self.accepted {
                    *unread = Some(format);
                }
            }
            Err(message) => {
                self.accepted = None;
                let file = self.file.clone();
                self.error(Some("file"), file, message);
            }
        }
    }

    /// The file's format is known: a warning if its name says another.
    fn formatted(&mut self, format: super::AudioFormat) {
        if let Some(warning) = extension_warning(self.file.as_deref(), format) {
            let file = self.file.clone();
            self.problems.push(Problem {
                value: file,
                ..Problem::new(self.line, Severity::Warning, Some("file"), warning)
            });
        }
    }

    fn error(&mut self, column: Option<&str>, value: Option<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            value,
            ..Problem::new(self.line, Severity::Error, column, message.into())
        });
    }

    /// The verdict, once the in-order checks (duplicates) have added their problems.
    pub fn conclude(mut self, context: &Context) -> Verdict {
        let rank = |problem: &Problem| match problem.column.as_deref() {
            None => 0,
            Some("file") => 1,
            Some(column) => {
                2 + self
                    .body
                    .keys()
                    .position(|k| k == column)
                    .unwrap_or(usize::MAX - 2)
            }
        };
        let mut ranked: Vec<(usize, Problem)> = std::mem::take(&mut self.problems)
            .into_iter()
            .map(|p| (rank(&p), p))
            .collect();
        ranked.sort_by_key(|(rank, _)| *rank);
        let problems: Vec<Problem> = ranked.into_iter().map(|(_, p)| p).collect();
        let has_error = problems.iter().any(Problem::is_error);
        if self.elsewhere {
            return Verdict::OtherShard {
                line: self.line,
                problems,
            };
        }
        match (
            self.accepted,
            has_error || context.manifest_invalid,
            self.file,
        ) {
            (Some((path, size, format)), false, Some(file)) => Verdict::Valid {
                row: CheckedRow {
                    line: self.line,
                    file,
                    path,
                    size,
                    modified: self.modified,
                    object: self.object,
                    format,
                    body: self.body,
                    prepared: self.prepared,
                },
                warnings: problems,
            },
            (_, _, file) => Verdict::Invalid {
                line: self.line,
                file,
                problems,
            },
        }
    }
}

impl Layout {
    /// Applies `--map` to a header and finds its problems: repeated names, required columns
    /// missing (unless `--set` gives them), misspelt reserved names, text not in UTF-8.
    fn new(header: &Header, settings: &ManifestSettings) -> anyhow::Result<(Layout, Vec<Problem>)> {
        for (source, target) in &settings.renames {
            if !header.names.contains(source) {
                anyhow::bail!(
                    "--map {source}={target}: the manifest has no column {source:?}; its columns are {}",
                    list(header.names.iter().filter(|n| !n.is_empty()))
                );
            }
        }
        let line = header.line;
        let mut problems = Vec::new();
        let mut whole = |message: String| {
            problems.push(Problem::new(line, Severity::Error, None, message));
        };
        if let Some(quote) = header.unclosed_quote {
            whole(crate::manifest::unclosed_quote(quote).message);
        }
        if header.oversized {
            whole("the header row is over 1 MiB long; is this the right file?".into());
        }
        if header.names.len() > MAX_COLUMNS {
            whole(format!(
                "the header has {} columns; a manifest may have at most {MAX_COLUMNS} \
                 (is this the right file, with its columns separated by commas?)",
                header.names.len()
            ));
        }
        if header.names.iter().any(|name| name.contains('\0')) {
            whole(
                "the header holds a NUL byte, which text never does; is the manifest a binary \
                 file, or UTF-16 text without a byte-order mark?"
                    .into(),
            );
        }
        if !header.utf8 {
            problems.push(Problem::new(
                line,
                Severity::Error,
                None,
                "the header is not valid UTF-8 text; save the manifest as UTF-8 \
                 (it may be in Latin-1 or Windows-1252)"
                    .into(),
            ));
        }
        let mut names: Vec<Option<String>> = Vec::with_capacity(header.names.len());
        // First column of each name (a header may be a binary file's one huge line).
        let mut first_of: std::collections::HashMap<&str, usize> = Default::default();
        for (index, original) in header.names.iter().enumerate() {
            let name = settings.rename(original);
            let earlier = match name.is_empty() {
                true => None,
                false => first_of.get(name).copied(),
            };
            match earlier {
                None => {
                    first_of.insert(name, index);
                    names.push(Some(name.to_string()));
                }
                Some(first) if header.names[first] == *original => {
                    problems.push(Problem::new(
                        line,
                        Severity::Error,
                        Some(original),
                        format!(
                            "the header names this column twice (columns {} and {})",
                            first + 1,
                            index + 1
                        ),
                    ));
                    names.push(None);
                }
                Some(first) => anyhow::bail!(
                    "--map: columns {:?} and {:?} would both be named {name:?}",
                    header.names[first],
                    original
                ),
            }
        }
        // A manifest separated by something else (Excel's semicolons in much of Europe, tabs)
        // reads as one column named after the whole header line: say that, once, rather than
        // that every required column is missing.
        if let [only] = header.names.as_slice()
            && let Some((separator, name)) = [(';', "semicolons"), ('\t', "tabs"), ('|', "bars")]
                .into_iter()
                .find(|(c, _)| only.contains(*c))
        {
            let shown: String = only.chars().take(60).collect();
            problems.push(Problem::new(
                line,
                Severity::Error,
                None,
                format!(
                    "the header is one column, {shown:?}{}: the manifest looks separated by {name} \
                     ({separator:?}), and a CSV manifest is separated by commas; save it as CSV with \
                     commas, or as JSONL",
                    if only.chars().count() > 60 { "…" } else { "" }
                ),
            ));
            let layout = Layout {
                names,
                has_file: false,
                missing: REQUIRED.to_vec(),
            };
            return Ok((layout, problems));
        }
        let present = |key: &str| names.iter().any(|n| n.as_deref() == Some(key));
        let candidates: Vec<&str> = names
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|n| !n.is_empty() && *n != "file" && !RESERVED.contains(n))
            .collect();
        let near = |key: &str| candidates.iter().copied().find(|c| is_near(c, key));
        let has_file = present("file");
        if !has_file {
            problems.push(match near("file") {
                Some(close) => did_you_mean(line, close, "file", Place::Header),
                None => Problem::new(
                    line,
                    Severity::Error,
                    Some("file"),
                    format!(
                        "required, but no column has that name: it holds each row's audio path \
                         (rename the column, or pass --map COLUMN=file); the columns are {}",
                        list(names.iter().flatten().filter(|n| !n.is_empty()))
                    ),
                ),
            });
        }
        let mut missing = Vec::new();
        if let Some(column) = &settings.times.timestamp_column {
            if !present(column) {
                anyhow::bail!(
                    "--timestamp-column {column}: the manifest has no column {column:?}; its columns are {}",
                    list(names.iter().flatten().filter(|n| !n.is_empty()))
                );
            }
            for key in ["call_date", "call_time"] {
                if present(key) {
                    anyhow::bail!(
                        "--timestamp-column {column} fills {key}, but the manifest has a {key} column too; drop one (or rename it with --map)"
                    );
                }
            }
        }
        for key in REQUIRED {
            let derived = settings.times.timestamp_column.is_some()
                && matches!(key, "call_date" | "call_time");
            if derived {
                // Filled from the timestamp: a row without one says so on its own line.
                missing.push(key);
                continue;
            }
            if present(key) || settings.fill(key).is_some() {
                continue;
            }
            missing.push(key);
            problems.push(match near(key) {
                Some(close) => did_you_mean(line, close, key, Place::Header),
                None => Problem::new(
                    line,
                    Severity::Error,
                    Some(key),
                    format!(
                        "required, but no column has that name \
                         (add the column, or pass --map COLUMN={key} or --set {key}=VALUE)"
                    ),
                ),
            });
        }
        for key in OPTIONAL {
            if present(key) || settings.fill(key).is_some() {
                continue;
            }
            if let Some(close) = near(key) {
                problems.push(did_you_mean(line, close, key, Place::Header));
            }
        }
        let layout = Layout {
            names,
            has_file,
            missing,
        };
        Ok((layout, problems))
    }
}

/// Where a misspelt name was found: a CSV header's column, or a JSONL line's key.
#[derive(Clone, Copy)]
enum Place {
    Header,
    Line,
}

/// `call_dat: did you mean "call_date"? …`: an error when `key` is required (nothing else
/// will give it), a warning when it is optional (the value goes out as custom metadata).
fn did_you_mean(line: u64, close: &str, key: &str, place: Place) -> Problem {
    let (noun, absent) = match place {
        Place::Header => ("column", "no column has that name"),
        Place::Line => ("key", "this line has no such key"),
    };
    let (severity, why) = if key == "file" || REQUIRED.contains(&key) {
        (Severity::Error, format!("{key} is required, but {absent}"))
    } else {
        (
            Severity::Warning,
            "as it is, it is sent as custom metadata".to_string(),
        )
    };
    Problem::new(
        line,
        severity,
        Some(close),
        format!("did you mean {key:?}? {why} (rename the {noun} or pass --map {close}={key})"),
    )
}

/// `"a", "b", "c"`, shortened after a dozen.
/// `"file", "agent", … (40 in all)`: as many names as fit in about 300 characters.
fn list<'s>(names: impl Iterator<Item = &'s String>) -> String {
    const MAX_CHARS: usize = 300;
    let names: Vec<String> = names.map(|n| fields::quote(n)).collect();
    let mut shown = 0;
    let mut width = 0;
    for name in &names {
        if shown == 12 || (shown > 0 && width + name.chars().count() > MAX_CHARS) {
            break;
        }
        width += name.chars().count() + 2;
        shown += 1;
    }
    match names.len() {
        0 => "none".into(),
        n if n > shown => format!("{}, … ({n} in all)", names[..shown].join(", ")),
        _ => names.join(", "),
    }
}

fn from_field(line: u64, problem: FieldProblem) -> Problem {
    Problem {
        line,
        severity: problem.severity,
        column: Some(problem.field),
        value: problem.value,
        message: problem.message,
    }
}

/// A value as a person would have written it in a cell.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reserved values as Voyc wants them: `direction` lower-case, `speakers` a JSON number.
/// Values that fail their check are left as written (the row is invalid anyway).
fn type_reserved_values(body: &mut Map<String, Value>) {
    if let Some(direction) = body.get_mut("direction")
        && let Ok(lower) = fields::parse_direction(direction)
    {
        *direction = Value::String(lower.to_string());
    }
    if let Some(speakers) = body.get_mut("speakers")
        && let Ok(n) = fields::parse_speakers(speakers)
    {
        *speakers = Value::Number(Number::from(n));
    }
}

/// A warning when the file's extension is not one its contents are saved under.
fn extension_warning(file: Option<&str>, format: super::AudioFormat) -> Option<String> {
    let extension = std::path::Path::new(file?)
        .extension()
        .and_then(|e| e.to_str());
    if extension.is_some_and(|e| format.has_extension(e)) {
        return None;
    }
    let expected = format.extensions()[0];
    Some(match extension {
        Some(e) => format!(
            "the extension .{e} does not match the contents, which are {format} (expected .{expected})"
        ),
        None => {
            format!("the name has no extension; the contents are {format} (expected .{expected})")
        }
    })
}

/// Whether a name is within two edits of a reserved key, ignoring case (but not equal).
pub(crate) fn is_near(name: &str, key: &str) -> bool {
    if name == key || name.len().abs_diff(key.len()) > 2 {
        return false;
    }
    edit_distance(&name.to_lowercase(), key) <= 2
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbours each count one.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

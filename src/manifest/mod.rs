//! Reading manifests (CSV and JSONL) into rows that keep the line they start on.
//!
//! Reading streams: [`Manifest::read_rows`] hands out a bounded batch of raw rows at a time,
//! so memory holds one batch, never the whole file. Turning a raw row into named cells
//! ([`RawRow::cells`]) is a pure function, so callers can do it in parallel.
//!
//! Whatever the file holds, memory stays bounded: a row longer than [`MAX_ROW_BYTES`] (a
//! binary file, or a quote left open that swallows the rest of the file) is read through and
//! reported, not kept.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use crate::human;

/// How a manifest is written: CSV with a header row, or JSONL with one object per line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// The manifest's format: `--format` if given, else from the file's extension.
pub fn format_of(path: &Path, explicit: Option<Format>) -> anyhow::Result<Format> {
    if let Some(format) = explicit {
        return Ok(format);
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "csv" => Ok(Format::Csv),
        "jsonl" | "ndjson" => Ok(Format::Jsonl),
        _ => anyhow::bail!(
            "cannot tell the format of {} from its extension (expected .csv, .jsonl or .ndjson); \
             pass --format csv or --format jsonl",
            path.display()
        ),
    }
}

/// The longest row (a CSV record, a JSONL line) that is kept; a longer one is an error.
pub const MAX_ROW_BYTES: u64 = 1 << 20;
/// The most row bytes [`Manifest::read_rows`] puts in one batch (at least one row).
pub const BATCH_BYTES: usize = 4 << 20;
/// The longest value a row may hold: no call metadata is this long, a broken manifest is.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// The most columns a header (or keys a JSONL line) may have.
pub const MAX_COLUMNS: usize = 1000;

/// Why a manifest cannot be read as text at all. The manifest is otherwise readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Zero bytes.
    Empty,
    /// Text in another encoding, named for the user (e.g. "UTF-16 (little-endian)").
    Encoding(&'static str),
}

/// A CSV header row, as written (names trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The line the header starts on.
    pub line: u64,
    pub names: Vec<String>,
    /// Whether every name was valid UTF-8 (if not, `names` hold replacement characters).
    pub utf8: bool,
    /// The line a quote opened on that never closed (the header then runs to the end of the file).
    pub unclosed_quote: Option<u64>,
    /// The header row is longer than [`MAX_ROW_BYTES`] (its names are not kept).
    pub oversized: bool,
}

/// One row as read, before its cells are decoded.
#[derive(Clone, Debug)]
pub struct RawRow {
    /// The line the row starts on (the header is line 1).
    pub line: u64,
    content: Content,
}

#[derive(Clone, Debug)]
enum Content {
    Csv(Record),
    Jsonl(Vec<u8>),
    /// A row longer than [`MAX_ROW_BYTES`], read through and not kept.
    Oversized(u64),
}

/// One CSV record's fields, unescaped, back to back.
#[derive(Clone, Debug, Default)]
struct Record {
    bytes: Vec<u8>,
    /// Where each field ends in `bytes`.
    ends: Vec<usize>,
    /// The line a quote opened on that never closed: the record ran to the end of the file.
    unclosed_quote: Option<u64>,
    /// The bytes read for the record, when it was too long to keep.
    oversized: Option<u64>,
}

impl Record {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    /// A line of only spaces reads as one blank field: no row, like an empty line.
    fn is_blank(&self) -> bool {
        self.len() == 1
            && self.bytes.iter().all(u8::is_ascii_whitespace)
            && self.unclosed_quote.is_none()
            && self.oversized.is_none()
    }
}

/// Where csv-core's parser is within a record, followed byte by byte alongside it (it does not
/// say), so that a quote still open at the end of the file can be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    /// A quote inside a quoted field: the field's end, or the first of `""`.
    QuoteInQuoted,
}

impl Quoting {
    /// The state after `byte`, with csv-core's defaults: `,` between fields, `"` quotes,
    /// `""` a quote inside quotes, CR, LF or CRLF between records.
    fn next(self, byte: u8) -> Quoting {
        let ends_record = byte == b'\r' || byte == b'\n';
        match self {
            Quoting::StartRecord if ends_record => Quoting::StartRecord,
            Quoting::StartRecord | Quoting::StartField => match byte {
                b'"' => Quoting::InQuoted,
                b',' => Quoting::StartField,
                _ if ends_record => Quoting::StartRecord,
                _ => Quoting::InField,
            },
            Quoting::InField | Quoting::QuoteInQuoted => match byte {
                b'"' if self == Quoting::QuoteInQuoted => Quoting::InQuoted,
                b',' => Quoting::StartField,
                _ if ends_record => Quoting::StartRecord,
                _ => Quoting::InField,
            },
            Quoting::InQuoted if byte == b'"' => Quoting::QuoteInQuoted,
            Quoting::InQuoted => Quoting::InQuoted,
        }
    }
}

/// CSV on csv-core directly, because a row's reported line must be the line its first byte
/// is on: the `csv` crate's positions are where reading resumed, before any blank lines and
/// (with CRLF) before the previous row's LF.
struct CsvReader {
    core: csv_core::Reader,
    input: BufReader<File>,
    /// The line the next unread byte is on.
    line: u64,
    /// The last byte read was a CR counted as a line end (so a LF right after it ends no
    /// further line).
    after_cr: bool,
    /// The last byte read was a CR between records, and
    cr_between_records: bool,
    /// a byte other than LF came right after such a CR: the file ends its lines with a CR
    /// alone (old Mac style), so a CR inside a quoted value is a line break too. Otherwise a
    /// bare CR inside a value is just a character, as editors show it.
    cr_ends_lines: bool,
    quoting: Quoting,
    /// The line the last opening quote was on.
    quote_line: u64,
}

impl CsvReader {
    fn new(input: BufReader<File>) -> CsvReader {
        CsvReader {
            core: csv_core::Reader::new(),
            input,
            line: 1,
            after_cr: false,
            cr_between_records: false,
            cr_ends_lines: false,
            quoting: Quoting::StartRecord,
            quote_line: 1,
        }
    }

    /// The next non-blank record and the line it starts on.
    fn next_record(&mut self) -> io::Result<Option<(u64, Record)>> {
        loop {
            match self.next_any_record()? {
                Some((_, record)) if record.is_blank() => continue,
                other => return Ok(other),
            }
        }
    }

    fn next_any_record(&mut self) -> io::Result<Option<(u64, Record)>> {
        use csv_core::ReadRecordResult;
        let mut record = Record {
            bytes: vec![0; 256],
            ends: vec![0; 16],
            ..Record::default()
        };
        let (mut written, mut ended, mut consumed) = (0, 0, 0u64);
        let mut start: Option<u64> = None;
        loop {
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let (result, read, wrote, ends) = self.core.read_record(
                input,
                &mut record.bytes[written..],
                &mut record.ends[ended..],
            );
            for &byte in &input[..read] {
                if start.is_none() && byte != b'\n' && byte != b'\r' {
                    start = Some(self.line);
                }
                let quoting = self.quoting.next(byte);
                let opens = !matches!(self.quoting, Quoting::InQuoted | Quoting::QuoteInQuoted);
                if quoting == Quoting::InQuoted && opens {
                    self.quote_line = self.line;
                }
                self.quoting = quoting;
                // LF and CRLF end a line, and so does a lone CR between records (or anywhere
                // in a file whose lines end so), as editors count them.
                let in_value = quoting == Quoting::InQuoted;
                if self.cr_between_records && byte != b'\n' {
                    self.cr_ends_lines = true;
                }
                self.cr_between_records = byte == b'\r' && !in_value;
                let ends_line = match byte {
                    b'\r' => !in_value || self.cr_ends_lines,
                    b'\n' => !self.after_cr,
                    _ => false,
                };
                self.line += u64::from(ends_line);
                self.after_cr = byte == b'\r' && ends_line;
            }
            self.input.consume(read);
            written += wrote;
            ended += ends;
            if start.is_some() {
                consumed += read as u64;
            }
            if consumed > MAX_ROW_BYTES {
                // Too long to keep: read on to its end, keeping nothing.
                record.oversized = Some(consumed);
                (written, ended) = (0, 0);
            }
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull if record.oversized.is_some() => {}
                ReadRecordResult::OutputFull => {
                    let grown = record.bytes.len() * 2;
                    record.bytes.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull if record.oversized.is_some() => {}
                ReadRecordResult::OutputEndsFull => {
                    let grown = record.ends.len() * 2;
                    record.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    record.bytes.truncate(written);
                    record.ends.truncate(ended);
                    if at_end && self.quoting == Quoting::InQuoted {
                        record.unclosed_quote = Some(self.quote_line);
                    }
                    return Ok(Some((start.unwrap_or(self.line), record)));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

/// Why a row could not be decoded into cells; worded for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub column: Option<String>,
    pub value: Option<String>,
    pub message: String,
}

impl RowError {
    fn new(message: impl Into<String>) -> RowError {
        RowError {
            column: None,
            value: None,
            message: message.into(),
        }
    }
}

/// An open manifest, positioned after its header (CSV) or at its start (JSONL).
pub struct Manifest {
    reader: Reader,
}

enum Reader {
    Csv { csv: Box<CsvReader>, header: Header },
    Jsonl { lines: BufReader<File>, line: u64 },
}

impl Manifest {
    /// Opens a manifest and reads its header. `Ok(Err(_))` is a manifest that opened but
    /// is not UTF-8 text (or is empty); `Err(_)` is one that could not be read at all.
    pub fn open(path: &Path, format: Format) -> io::Result<Result<Manifest, Unreadable>> {
        let file = File::open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a folder, not a file",
            ));
        }
        let mut text = BufReader::with_capacity(64 * 1024, file);
        let head = text.fill_buf()?;
        if let Some(problem) = unreadable(head) {
            return Ok(Err(problem));
        }
        if head.starts_with(b"\xEF\xBB\xBF") {
            text.consume(3);
        }
        let reader = match format {
            Format::Jsonl => Reader::Jsonl {
                lines: text,
                line: 0,
            },
            Format::Csv => {
                let mut csv = CsvReader::new(text);
                let Some((line, record)) = csv.next_record()? else {
                    return Ok(Err(Unreadable::Empty));
                };
                let header = Header {
                    line,
                    names: record.iter().map(|n| lossy(n).trim().to_string()).collect(),
                    utf8: record.iter().all(|n| std::str::from_utf8(n).is_ok()),
                    unclosed_quote: record.unclosed_quote,
                    oversized: record.oversized.is_some(),
                };
                Reader::Csv {
                    csv: Box::new(csv),
                    header,
                }
            }
        };
        Ok(Ok(Manifest { reader }))
    }

    /// The CSV header; `None` for JSONL, which has none.
    pub fn header(&self) -> Option<&Header> {
        match &self.reader {
            Reader::Csv { header, .. } => Some(header),
            Reader::Jsonl { .. } => None,
        }
    }

    /// Appends up to `max` rows to `rows`; returns false once the manifest is exhausted.
    /// Blank lines are no rows.
    ///
    /// A batch also ends once its rows hold [`BATCH_BYTES`]: a row is checked as a few times
    /// its size in memory, so a manifest of wide rows (1,000 columns) keeps to the same budget
    /// as one of narrow rows.
    pub fn read_rows(&mut self, max: usize, rows: &mut Vec<RawRow>) -> io::Result<bool> {
        let mut bytes = 0;
        for _ in 0..max {
            match self.next_row()? {
                Some(row) => {
                    bytes += row.size();
                    rows.push(row);
                }
                None => return Ok(false),
            }
            if bytes >= BATCH_BYTES {
                break;
            }
        }
        Ok(true)
    }

    fn next_row(&mut self) -> io::Result<Option<RawRow>> {
        match &mut self.reader {
            Reader::Csv { csv, .. } => Ok(csv.next_record()?.map(|(line, record)| RawRow {
                line,
                content: Content::Csv(record),
            })),
            Reader::Jsonl { lines, line } => loop {
                let mut bytes = Vec::new();
                let Some(length) = read_line_capped(lines, &mut bytes)? else {
                    return Ok(None);
                };
                *line += 1;
                if length > MAX_ROW_BYTES {
                    return Ok(Some(RawRow {
                        line: *line,
                        content: Content::Oversized(length),
                    }));
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(RawRow {
                    line: *line,
                    content: Content::Jsonl(bytes),
                }));
            },
        }
    }
}

/// Reads a line up to and including its LF, keeping at most [`MAX_ROW_BYTES`] of it; the
/// line's whole length, or `None` at the end of the file.
fn read_line_capped(input: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Option<u64>> {
    let mut length = 0u64;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok((length > 0).then_some(length));
        }
        let (take, done) = match memchr_lf(available) {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        if length + (take as u64) <= MAX_ROW_BYTES {
            line.extend_from_slice(&available[..take]);
        } else {
            line.clear();
        }
        length += take as u64;
        input.consume(take);
        if done {
            return Ok(Some(length));
        }
    }
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

impl RawRow {
    /// How many bytes the row holds as read.
    fn size(&self) -> usize {
        match &self.content {
            Content::Csv(record) => record.bytes.len() + 8 * record.ends.len(),
            Content::Jsonl(bytes) => bytes.len(),
            Content::Oversized(_) => 0,
        }
    }

    /// A CSV row's field `index` as text, trimmed, when the row's cells cannot all be read (a
    /// wrong number of fields, another field that is not UTF-8): so that the report can still
    /// name the row's file. With a wrong number of fields only the first is taken, as a
    /// missing or extra comma cannot have moved it.
    pub fn field_text(&self, index: usize, header: &Header) -> Option<&str> {
        let Content::Csv(record) = &self.content else {
            return None;
        };
        if record.unclosed_quote.is_some() || record.oversized.is_some() {
            return None;
        }
        if record.len() != header.names.len() && index != 0 {
            return None;
        }
        let bytes = record.iter().nth(index)?;
        let text = std::str::from_utf8(bytes).ok()?.trim();
        (!text.is_empty() && value_problem(text).is_none()).then_some(text)
    }

    /// The row's cells as `(name, value)` in manifest order, names as the header (CSV) or the
    /// object (JSONL) has them. CSV values are strings with surrounding whitespace trimmed;
    /// JSONL values are kept as JSON. `header` is the manifest's header (CSV only).
    pub fn cells<'h>(
        &self,
        header: Option<&'h Header>,
    ) -> Result<Vec<(Name<'h>, Value)>, RowError> {
        match (&self.content, header) {
            (Content::Oversized(length), _) => Err(oversized(*length)),
            (Content::Csv(record), _) if record.unclosed_quote.is_some() => {
                Err(unclosed_quote(record.unclosed_quote.unwrap_or(self.line)))
            }
            (Content::Csv(record), _) if record.oversized.is_some() => {
                Err(oversized(record.oversized.unwrap_or_default()))
            }
            (Content::Csv(record), Some(header)) => csv_cells(record, header),
            (Content::Jsonl(bytes), _) => jsonl_cells(bytes),
            (Content::Csv(_), None) => Err(RowError::new("a CSV row without a header")),
        }
    }
}

/// A cell's name: the header's position (CSV), or the object's own key (JSONL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name<'h> {
    Column(usize, &'h str),
    Key(String),
}

impl Name<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Name::Column(_, name) => name,
            Name::Key(key) => key,
        }
    }
}

/// A row longer than [`MAX_ROW_BYTES`].
fn oversized(length: u64) -> RowError {
    RowError::new(format!(
        "this row is {} long; a row may be at most 1 MiB (is this the right file?)",
        human::bytes(length)
    ))
}

/// A quote that opened and never closed: it swallowed the rest of the file.
pub fn unclosed_quote(line: u64) -> RowError {
    RowError::new(format!(
        "a quote opens a value on line {line} and never closes, so everything after it was read \
         as that one value; close the quote (a quote inside a value is written as two: \"\")"
    ))
}

/// Why a value cannot be sent as it is, if it cannot: longer than [`MAX_VALUE_BYTES`], or
/// holding a NUL (no text does; a binary file or UTF-16 without a byte-order mark does).
fn value_problem(text: &str) -> Option<&'static str> {
    if text.len() > MAX_VALUE_BYTES {
        Some("longer than the 64 KiB a value may be (is a quote left open above it?)")
    } else if text.contains('\0') {
        Some(
            "holds a NUL byte, which text never does; is the manifest a binary file, \
             or UTF-16 text without a byte-order mark?",
        )
    } else {
        None
    }
}

fn csv_cells<'h>(record: &Record, header: &'h Header) -> Result<Vec<(Name<'h>, Value)>, RowError> {
    let (got, want) = (record.len(), header.names.len());
    if got != want {
        let hint = if got > want {
            " (does a value with a comma lack its quotes?)"
        } else {
            ""
        };
        return Err(RowError::new(format!(
            "this row has {got} {}, but the header has {want}{hint}",
            human::plural(got as u64, "field", "fields"),
        )));
    }
    let mut cells = Vec::with_capacity(want);
    for (index, (bytes, name)) in record.iter().zip(&header.names).enumerate() {
        let text = std::str::from_utf8(bytes).map_err(|_| RowError {
            column: Some(column_label(index, name)),
            value: Some(lossy(bytes).into_owned()),
            message: "not valid UTF-8 text; save the manifest as UTF-8 \
                      (it may be in Latin-1 or Windows-1252)"
                .to_string(),
        })?;
        if let Some(message) = value_problem(text) {
            return Err(RowError {
                column: Some(column_label(index, name)),
                value: Some(text.to_string()),
                message: message.to_string(),
            });
        }
        cells.push((
            Name::Column(index, name.as_str()),
            Value::String(text.trim().to_string()),
        ));
    }
    Ok(cells)
}

/// `agent`, or `column 5` for a column the header leaves unnamed.
pub fn column_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("column {}", index + 1)
    } else {
        name.to_string()
    }
}

fn jsonl_cells<'h>(bytes: &[u8]) -> Result<Vec<(Name<'h>, Value)>, RowError> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| RowError {
        column: None,
        value: Some(lossy(bytes).trim().to_string()),
        message: "not valid UTF-8 text; save the manifest as UTF-8".to_string(),
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        RowError::new(format!(
            "not valid JSON: {} (column {})",
            json_error_text(&e),
            e.column()
        ))
    })?;
    match value {
        Value::Object(object) if object.len() > MAX_COLUMNS => Err(RowError::new(format!(
            "this line has {} keys; a line may have at most {MAX_COLUMNS}",
            object.len()
        ))),
        Value::Object(object) => {
            for (key, value) in &object {
                if let Some((text, message)) = json_value_problem(key, value) {
                    return Err(RowError {
                        column: Some(key.clone()),
                        value: Some(text.to_string()),
                        message: message.to_string(),
                    });
                }
            }
            Ok(object
                .into_iter()
                .map(|(key, value)| (Name::Key(key), value))
                .collect::<Vec<_>>())
        }
        other => Err(RowError::new(format!(
            "expected a JSON object ({{\"file\": …}}), found {}",
            json_kind(&other)
        ))),
    }
}

/// The first key or string, at any depth, that [`value_problem`] refuses.
fn json_value_problem<'v>(key: &'v str, value: &'v Value) -> Option<(&'v str, &'static str)> {
    if let Some(message) = value_problem(key) {
        return Some((key, message));
    }
    match value {
        Value::String(text) => value_problem(text).map(|message| (text.as_str(), message)),
        Value::Array(items) => items.iter().find_map(|item| json_value_problem("", item)),
        Value::Object(object) => object
            .iter()
            .find_map(|(key, value)| json_value_problem(key, value)),
        _ => None,
    }
}

/// serde_json's message without its " at line L column C" tail (the line is ours to report).
fn json_error_text(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// "an array", "a string", … for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why text that starts with `head` cannot be a UTF-8 manifest, if it cannot.
fn unreadable(head: &[u8]) -> Option<Unreadable> {
    const BOMS: [(&[u8], &str); 4] = [
        (b"\xFF\xFE\x00\x00", "UTF-32 (little-endian)"),
        (b"\x00\x00\xFE\xFF", "UTF-32 (big-endian)"),
        (b"\xFF\xFE", "UTF-16 (little-endian)"),
        (b"\xFE\xFF", "UTF-16 (big-endian)"),
    ];
    if head.is_empty() {
        return Some(Unreadable::Empty);
    }
    if let Some((_, name)) = BOMS.iter().find(|(bom, _)| head.starts_with(bom)) {
        return Some(Unreadable::Encoding(name));
    }
    // Without a byte-order mark, UTF-16/32 text in Latin letters has NUL bytes between them.
    match head {
        [0, 0, 0, _, ..] | [_, 0, 0, 0, ..] => Some(Unreadable::Encoding("UTF-32")),
        [0, _, ..] | [_, 0, ..] => Some(Unreadable::Encoding("UTF-16")),
        _ => None,
    }
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn to_map(cells: Vec<(Name<'_>, Value)>) -> Map<String, Value> {
        cells
            .into_iter()
            .map(|(name, value)| (name.as_str().to_string(), value))
            .collect()
    }

    fn write(contents: &[u8], name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    /// Every row of a manifest as (line, cells as a JSON object or the error message).
    fn read_all(contents: &[u8], format: Format) -> Vec<(u64, Result<Value, String>)> {
        let (_dir, path) = write(contents, "m");
        let mut manifest = Manifest::open(&path, format).unwrap().unwrap();
        let mut rows = Vec::new();
        while manifest.read_rows(2, &mut rows).unwrap() {}
        rows.iter()
            .map(|row| {
                let cells = row
                    .cells(manifest.header())
                    .map(|c| Value::Object(to_map(c)))
                    .map_err(|e| e.message);
                (row.line, cells)
            })
            .collect()
    }

    #[test]
    fn the_format_comes_from_the_extension_unless_given() {
        assert_eq!(format_of(Path::new("a/m.CSV"), None).unwrap(), Format::Csv);
        assert_eq!(
            format_of(Path::new("m.ndjson"), None).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            format_of(Path::new("m.jsonl"), None).unwrap(),
            Format::Jsonl
        );
        let err = format_of(Path::new("m.txt"), None).unwrap_err().to_string();
        assert!(err.contains("--format csv"), "{err}");
        assert_eq!(
            format_of(Path::new("m.txt"), Some(Format::Csv)).unwrap(),
            Format::Csv
        );
    }

    #[test]
    fn csv_rows_with_old_mac_line_ends_are_numbered_too() {
        let rows = read_all(b"file\rb.wav\r\rc.wav\r\n", Format::Csv);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn a_bare_cr_inside_a_quoted_value_is_no_line_break_for_the_rows_after_it() {
        let rows = read_all(
            b"file,note\na.wav,\"x\ry\"\nb.wav,z\r\nc.wav,\"1\r\n2\"\nd.wav,w\n",
            Format::Csv,
        );
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 4, 6]);
        // Where every line ends with a lone CR, one inside a value ends a line too.
        let rows = read_all(b"file,note\ra.wav,\"x\ry\"\rb.wav,z\r", Format::Csv);
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn csv_rows_report_the_line_they_start_on_across_quoted_newlines_and_crlf() {
        let rows = read_all(
            b"\xEF\xBB\xBF file , note\r\na.wav,\"two\r\nlines\"\r\n\r\n  \r\n b.wav ,\"x, y\" \r\n",
            Format::Csv,
        );
        assert_eq!(
            rows,
            vec![
                (2, Ok(json!({"file": "a.wav", "note": "two\r\nlines"}))),
                (6, Ok(json!({"file": "b.wav", "note": "x, y"}))),
            ]
        );
    }

    #[test]
    fn a_bom_is_not_part_of_the_first_header_name() {
        let (_dir, path) = write(b"\xEF\xBB\xBFfile,agent\n", "m.csv");
        let manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        assert_eq!(manifest.header().unwrap().names, ["file", "agent"]);
    }

    #[test]
    fn a_csv_row_with_the_wrong_number_of_fields_is_an_error_for_that_row_only() {
        let rows = read_all(
            b"file,agent\na.wav,Ann,extra\nb.wav\nc.wav,Bo\n",
            Format::Csv,
        );
        assert_eq!(
            rows[0].1,
            Err("this row has 3 fields, but the header has 2 \
                 (does a value with a comma lack its quotes?)"
                .into())
        );
        assert_eq!(
            rows[1].1,
            Err("this row has 1 field, but the header has 2".into())
        );
        assert_eq!(rows[2], (4, Ok(json!({"file": "c.wav", "agent": "Bo"}))));
    }

    #[test]
    fn a_csv_cell_in_another_encoding_names_its_column() {
        let (_dir, path) = write(b"file,agent\na.wav,Jos\xE9\n", "m.csv");
        let mut manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        let mut rows = Vec::new();
        manifest.read_rows(10, &mut rows).unwrap();
        let err = rows[0].cells(manifest.header()).unwrap_err();
        assert_eq!(err.column.as_deref(), Some("agent"));
        assert_eq!(err.value.as_deref(), Some("Jos\u{FFFD}"));
        assert!(err.message.contains("UTF-8"), "{}", err.message);
    }

    #[test]
    fn jsonl_keeps_json_types_and_skips_blank_lines() {
        let rows = read_all(
            b"{\"file\":\"a.wav\",\"speakers\":2,\"vip\":true,\"crm\":{\"id\":7}}\n\n  \r\n{\"file\":\"b.wav\"}",
            Format::Jsonl,
        );
        assert_eq!(
            rows,
            vec![
                (
                    1,
                    Ok(json!({"file": "a.wav", "speakers": 2, "vip": true, "crm": {"id": 7}}))
                ),
                (4, Ok(json!({"file": "b.wav"}))),
            ]
        );
    }

    #[test]
    fn a_jsonl_line_that_is_not_an_object_is_an_error_for_that_line() {
        let rows = read_all(b"[1,2]\n{\"file\": \n\"just text\"\n", Format::Jsonl);
        assert_eq!(
            rows[0],
            (
                1,
                Err("expected a JSON object ({\"file\": …}), found an array".into())
            )
        );
        assert_eq!(
            rows[1],
            (
                2,
                Err("not valid JSON: EOF while parsing a value (column 9)".into())
            )
        );
        assert_eq!(rows[2].0, 3);
        assert!(rows[2].1.as_ref().unwrap_err().contains("a string"));
    }

    #[test]
    fn other_encodings_and_empty_files_are_named() {
        for (bytes, expected) in [
            (
                &b"\xFF\xFEf\x00i\x00"[..],
                Unreadable::Encoding("UTF-16 (little-endian)"),
            ),
            (
                b"\xFE\xFF\x00f\x00i",
                Unreadable::Encoding("UTF-16 (big-endian)"),
            ),
            (b"f\x00i\x00l\x00e\x00", Unreadable::Encoding("UTF-16")),
            (b"", Unreadable::Empty),
        ] {
            let (_dir, path) = write(bytes, "m.csv");
            assert_eq!(
                Manifest::open(&path, Format::Csv).unwrap().err(),
                Some(expected)
            );
        }
        let (_dir, path) = write(b"\n\n", "m.csv");
        assert_eq!(
            Manifest::open(&path, Format::Csv).unwrap().err(),
            Some(Unreadable::Empty)
        );
    }

    #[test]
    fn a_quote_that_never_closes_is_an_error_naming_its_line_not_a_silent_loss_of_the_rows_below() {
        // Before: the last row's agent swallowed the two rows below it, and the manifest was valid.
        let rows = read_all(
            b"file,agent\na.wav,\"Ann\nb.wav,Bob\nc.wav,Cy\n",
            Format::Csv,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].0, 2);
        let message = rows[0].1.as_ref().unwrap_err();
        assert!(
            message.starts_with("a quote opens a value on line 2 and never closes"),
            "{message}"
        );
        // A quote that opens a later field of a row is found too, on its own line.
        let rows = read_all(b"file,agent\na.wav,x\n\nb.wav,\"y\nc.wav,z", Format::Csv);
        assert_eq!(rows[0], (2, Ok(json!({"file": "a.wav", "agent": "x"}))));
        assert!(
            rows[1].1.as_ref().unwrap_err().contains("on line 4"),
            "{rows:?}"
        );
    }

    #[test]
    fn quotes_that_close_are_not_taken_for_open_ones() {
        let rows = read_all(
            b"file,agent\na.wav,\"x \"\"y\"\"\"\nb.wav,An\"n\nc.wav,\"\"\n\"d.wav\",\"z\"",
            Format::Csv,
        );
        let ok: Vec<bool> = rows.iter().map(|r| r.1.is_ok()).collect();
        assert_eq!(ok, [true, true, true, true], "{rows:?}");
        assert_eq!(rows[1].1, Ok(json!({"file": "b.wav", "agent": "An\"n"})));
    }

    #[test]
    fn a_header_whose_quote_never_closes_says_so() {
        let (_dir, path) = write(b"\"file,agent\na.wav,x\n", "m.csv");
        let manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        assert_eq!(manifest.header().unwrap().unclosed_quote, Some(1));
    }

    #[test]
    fn a_row_over_1_mib_is_reported_with_its_line_and_not_kept_in_memory() {
        let mut csv = b"file,agent\na.wav,x\n".to_vec();
        csv.extend(std::iter::repeat_n(b'y', 3 << 20));
        csv.extend_from_slice(b",z\nc.wav,w\n");
        let (_dir, path) = write(&csv, "m.csv");
        let mut manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        let mut rows = Vec::new();
        manifest.read_rows(10, &mut rows).unwrap();
        assert_eq!(rows.len(), 3);
        let Content::Csv(record) = &rows[1].content else {
            panic!("a CSV row")
        };
        assert!(
            record.bytes.capacity() <= 4 << 20,
            "{}",
            record.bytes.capacity()
        );
        assert_eq!(
            rows[1].cells(manifest.header()).unwrap_err().message,
            "this row is 3.0 MiB long; a row may be at most 1 MiB (is this the right file?)"
        );
        assert!(rows[2].cells(manifest.header()).is_ok());

        let mut jsonl = vec![b'['; 2 << 20];
        jsonl.extend_from_slice(b"\n{\"file\": \"a.wav\"}\n");
        let rows = read_all(&jsonl, Format::Jsonl);
        assert_eq!(rows[0].0, 1);
        assert!(
            rows[0]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("this row is 2.0 MiB long")
        );
        assert_eq!(rows[1], (2, Ok(json!({"file": "a.wav"}))));
    }

    #[test]
    fn a_value_over_64_kib_or_holding_a_nul_is_an_error_naming_its_column() {
        let mut csv = b"file,agent,note\na.wav,x,".to_vec();
        csv.extend(std::iter::repeat_n(b'n', 70_000));
        csv.extend_from_slice(b"\nb.wav,A\0B,\n");
        let (_dir, path) = write(&csv, "m.csv");
        let mut manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        let mut rows = Vec::new();
        manifest.read_rows(10, &mut rows).unwrap();
        let long = rows[0].cells(manifest.header()).unwrap_err();
        assert_eq!(long.column.as_deref(), Some("note"));
        assert!(
            long.message.starts_with("longer than the 64 KiB"),
            "{long:?}"
        );
        let nul = rows[1].cells(manifest.header()).unwrap_err();
        assert_eq!(nul.column.as_deref(), Some("agent"));
        assert!(nul.message.starts_with("holds a NUL byte"), "{nul:?}");

        let rows = read_all(
            b"{\"file\": \"a.wav\", \"crm\": {\"n\": [\"a\\u0000b\"]}}\n",
            Format::Jsonl,
        );
        assert!(
            rows[0]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("holds a NUL byte")
        );
    }

    #[test]
    fn a_jsonl_line_with_more_than_1000_keys_is_an_error() {
        let keys: Vec<String> = (0..1001).map(|i| format!("\"k{i}\": 1")).collect();
        let line = format!("{{{}}}\n", keys.join(", "));
        let rows = read_all(line.as_bytes(), Format::Jsonl);
        assert_eq!(
            rows[0].1,
            Err("this line has 1001 keys; a line may have at most 1000".into())
        );
    }

    #[test]
    fn a_batch_of_wide_rows_stops_at_its_byte_budget_and_loses_none() {
        let value = "v".repeat(60_000);
        let mut csv = String::from("file,note\n");
        for i in 0..200 {
            csv.push_str(&format!("{i}.wav,{value}\n"));
        }
        let (_dir, path) = write(csv.as_bytes(), "m.csv");
        let mut manifest = Manifest::open(&path, Format::Csv).unwrap().unwrap();
        let mut batch = Vec::new();
        assert!(manifest.read_rows(2048, &mut batch).unwrap());
        assert_eq!(batch.len(), BATCH_BYTES.div_ceil(60_000 + 16 + 5));
        let mut total = batch.len();
        loop {
            let mut next = Vec::new();
            let more = manifest.read_rows(2048, &mut next).unwrap();
            total += next.len();
            if !more {
                break;
            }
        }
        assert_eq!(total, 200);
    }

    #[test]
    fn a_folder_is_not_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::open(dir.path(), Format::Csv).err().unwrap();
        assert!(err.to_string().contains("folder"), "{err}");
    }
}

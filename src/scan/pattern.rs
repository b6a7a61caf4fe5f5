//! `scan --pattern`: the metadata an export writes into its file and folder names, read back
//! out of each path. `{name}` captures a manifest column, `{call_date:FMT}` and
//! `{call_time:FMT}` a date or a time in chrono's strftime syntax (written out in the manifest's
//! own `YYYY-MM-DD` and `hh:mm:ss`), `{*}` skips anything within one folder or file name,
//! `{**}` anything across folders; the rest is literal text that must be there exactly.
//!
//! A path that does not match gets one reason, the part of the pattern it failed at, so that
//! a person can see at once what is wrong with the name (or with the pattern).

use std::fmt::{self, Write as _};

use chrono::format::{Fixed, Item, Numeric, Pad, ParseErrorKind, StrftimeItems};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

use crate::validate::fields::{self, RESERVED};

/// A pattern that cannot work, and where in it: `column` counts characters from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub column: usize,
    pub message: String,
}

/// `--pattern, column 20: …`, then the pattern with a caret under the column, as a compiler
/// points at a mistake.
impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pattern = crate::human::one_line(&self.pattern);
        write!(
            f,
            "--pattern, column {}: {}\n  {pattern}\n  {}^",
            self.column,
            self.message,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

impl std::error::Error for PatternError {}

/// A checked pattern, ready to match relative paths (folders separated by `/`).
#[derive(Clone, Debug)]
pub struct Pattern {
    elements: Vec<Element>,
    /// The captured columns, in pattern order.
    fields: Vec<String>,
    /// Names close to a reserved key's (`{agnet}`), which are custom columns as written.
    hints: Vec<String>,
    /// How many `/` every matching path has, when the pattern fixes it (no `{**}`).
    depth: Option<usize>,
}

#[derive(Clone, Debug)]
enum Element {
    Literal(String),
    Field(Field),
    /// `{*}`: anything within one folder or file name, nothing included.
    Star,
    /// `{**}`: anything, across folders, nothing included.
    Anything,
    /// `{**}/`: no folder, or any number of whole folders.
    Folders,
}

#[derive(Clone, Debug)]
struct Field {
    name: String,
    /// Its place in [`Pattern::fields`].
    slot: usize,
    reading: Reading,
}

#[derive(Clone, Debug)]
enum Reading {
    /// Any text within one folder or file name, at least one character; `direction` and
    /// `speakers` must also be what the manifest accepts.
    Text,
    Date(Format),
    Time(Format),
}

/// A strftime format and the shape of the text it reads, so that the text to hand to chrono
/// can be found in a longer name.
#[derive(Clone, Debug)]
struct Format {
    text: String,
    atoms: Vec<Atom>,
}

#[derive(Clone, Debug)]
enum Atom {
    Literal(String),
    Run {
        class: Class,
        min: usize,
        max: usize,
    },
}

#[derive(Clone, Copy, Debug)]
enum Class {
    Digit,
    Letter,
    /// `%e` and the like pad with spaces.
    SpaceOrDigit,
    /// What chrono alone can tell (an offset, fractions of a second): anything but `/`.
    Other,
}

impl Class {
    fn admits(self, c: char) -> bool {
        match self {
            Class::Digit => c.is_ascii_digit(),
            Class::Letter => c.is_ascii_alphabetic(),
            Class::SpaceOrDigit => c == ' ' || c.is_ascii_digit(),
            Class::Other => c != '/',
        }
    }
}

/// The formats `{call_date}` and `{call_time}` read when the pattern gives none: the
/// manifest's own forms.
const DATE_FORMAT: &str = "%Y-%m-%d";
const TIME_FORMAT: &str = "%H:%M:%S";

impl Pattern {
    /// Checks a pattern; a mistake is an error that points at its column.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        Parser {
            text,
            chars: text.char_indices().collect(),
            at: 0,
            elements: Vec::new(),
            fields: Vec::new(),
            columns: Vec::new(),
            hints: Vec::new(),
        }
        .run()
    }

    /// The columns the pattern captures, in its order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Warnings about field names that look like a misspelt reserved key.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The captured values of a relative path (`/` between folders), in [`Pattern::fields`]
    /// order, dates and times in the manifest's forms; or why it does not match.
    pub fn matches(&self, path: &str) -> Result<Vec<String>, String> {
        let mut strict = Matcher::new(self, path, true);
        if strict.go(0, 0) {
            return Ok(strict.values);
        }
        Err(self.reason(path))
    }

    /// Why `path` does not match: the folders it has, how it starts and ends, the value that
    /// is wrong in a name of the right shape, or the first part of the pattern it fails at.
    fn reason(&self, path: &str) -> String {
        if let Some(depth) = self.depth {
            let has = path.matches('/').count();
            if has != depth {
                return format!(
                    "is {} deep, but the pattern is {} deep",
                    folders(has),
                    folders(depth)
                );
            }
        }
        if let Some(Element::Literal(last)) = self.elements.last()
            && !path.ends_with(last.as_str())
        {
            return format!("does not end with {}", fields::quote(last));
        }
        if let Some(Element::Literal(first)) = self.elements.first()
            && !path.starts_with(first.as_str())
        {
            return format!("does not start with {}", fields::quote(first));
        }
        let mut loose = Matcher::new(self, path, false);
        if loose.go(0, 0) {
            // The shape fits: some value does not.
            for element in &self.elements {
                if let Element::Field(field) = element
                    && let Err(why) = field.read(&loose.values[field.slot])
                {
                    return why;
                }
            }
        }
        match loose.miss {
            Some(miss) => self.describe(path, miss),
            None => "does not match the pattern".to_string(),
        }
    }

    fn describe(&self, path: &str, miss: Miss) -> String {
        let found = found(path, miss.at);
        let Some(element) = self.elements.get(miss.element) else {
            return format!("{found} is left over after the end of the pattern");
        };
        match element {
            Element::Literal(literal) => {
                let after = match miss.element.checked_sub(1).map(|i| &self.elements[i]) {
                    None => String::new(),
                    Some(Element::Field(field)) => format!(" after {{{}}}", field.name),
                    Some(Element::Star) => " after {*}".to_string(),
                    Some(_) => " after {**}".to_string(),
                };
                let at_end = path[miss.at..].is_empty() || path[miss.at..].starts_with('/');
                match path[..miss.at].rsplit('/').next() {
                    Some(name) if at_end && !name.is_empty() => format!(
                        "expected {}{after} before the end of {}",
                        fields::quote(literal),
                        fields::quote(name)
                    ),
                    _ => format!("expected {}{after}, found {found}", fields::quote(literal)),
                }
            }
            Element::Field(field) => match &field.reading {
                Reading::Text => format!("{}: expected a value, found {found}", field.name),
                Reading::Date(format) => format!(
                    "{}: expected a date as {} (like {}), found {found}",
                    field.name,
                    format.text,
                    fields::quote(&format.example())
                ),
                Reading::Time(format) => format!(
                    "{}: expected a time as {} (like {}), found {found}",
                    field.name,
                    format.text,
                    fields::quote(&format.example())
                ),
            },
            // These match anything, even nothing: what follows them failed.
            Element::Star | Element::Anything | Element::Folders => {
                "does not match the pattern".to_string()
            }
        }
    }
}

/// `1 folder`, `3 folders`.
fn folders(n: usize) -> String {
    format!(
        "{n} {}",
        crate::human::plural(n as u64, "folder", "folders")
    )
}

/// What the path has at `at`, for a message: `"-0930_ann.wav"`, or `the end of the path`.
fn found(path: &str, at: usize) -> String {
    const SHOWN: usize = 24;
    let rest = &path[at..];
    if rest.is_empty() {
        return "the end of the path".to_string();
    }
    match rest.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", fields::quote(&rest[..cut])),
        None => fields::quote(rest),
    }
}

impl Field {
    /// The value as the manifest takes it, or why it is not one.
    fn read(&self, raw: &str) -> Result<String, String> {
        let problem = |p: fields::FieldProblem| p.to_string();
        match &self.reading {
            Reading::Text => {
                let value = || Value::String(raw.to_string());
                match self.name.as_str() {
                    "direction" => fields::parse_direction(&value())
                        .map(drop)
                        .map_err(problem)?,
                    "speakers" => fields::parse_speakers(&value())
                        .map(drop)
                        .map_err(problem)?,
                    _ => {}
                };
                Ok(raw.to_string())
            }
            Reading::Date(format) => {
                let date = NaiveDate::parse_from_str(raw, &format.text)
                    .map_err(|e| self.unreadable(raw, "a valid date", format, e.kind()))?;
                let canonical = date.format("%Y-%m-%d").to_string();
                fields::parse_date(&Value::String(canonical.clone())).map_err(problem)?;
                Ok(canonical)
            }
            Reading::Time(format) => {
                let time = NaiveTime::parse_from_str(raw, &format.text)
                    .map_err(|e| self.unreadable(raw, "a valid time of day", format, e.kind()))?;
                Ok(time.format("%H:%M:%S").to_string())
            }
        }
    }

    fn unreadable(&self, raw: &str, what: &str, format: &Format, kind: ParseErrorKind) -> String {
        let why = match kind {
            ParseErrorKind::OutOfRange | ParseErrorKind::Impossible => {
                format!("not {what} for {}", format.text)
            }
            _ => format!("does not match {}", format.text),
        };
        format!("{} {}: {why}", self.name, fields::quote(raw))
    }

    fn format(&self) -> Option<&Format> {
        match &self.reading {
            Reading::Text => None,
            Reading::Date(format) | Reading::Time(format) => Some(format),
        }
    }
}

/// Where a loose match got furthest before it failed, and at which element.
#[derive(Clone, Copy, Debug)]
struct Miss {
    at: usize,
    element: usize,
}

/// One attempt at matching one path, by backtracking: a variable part takes as much as it can
/// and gives back what the rest needs. With `strict`, a value the manifest would refuse (a
/// time that does not exist, a direction that is not one) does not match; without, only the
/// shape counts (to say which value is wrong). A (part, position) pair known to fail is not
/// tried twice, so a path costs at most parts × length² steps.
struct Matcher<'a> {
    pattern: &'a Pattern,
    path: &'a str,
    strict: bool,
    values: Vec<String>,
    failed: Vec<bool>,
    miss: Option<Miss>,
}

impl<'a> Matcher<'a> {
    fn new(pattern: &'a Pattern, path: &'a str, strict: bool) -> Matcher<'a> {
        Matcher {
            pattern,
            path,
            strict,
            values: vec![String::new(); pattern.fields.len()],
            failed: Vec::new(),
            miss: None,
        }
    }

    fn go(&mut self, element: usize, at: usize) -> bool {
        let key = element * (self.path.len() + 1) + at;
        if self.failed.get(key).copied().unwrap_or(false) {
            return false;
        }
        if self.step(element, at) {
            return true;
        }
        if self.failed.is_empty() {
            self.failed = vec![false; (self.pattern.elements.len() + 1) * (self.path.len() + 1)];
        }
        self.failed[key] = true;
        false
    }

    fn missed(&mut self, element: usize, at: usize) -> bool {
        if self.miss.is_none_or(|miss| at > miss.at) {
            self.miss = Some(Miss { at, element });
        }
        false
    }

    /// The end of the folder or file name `at` is in.
    fn name_end(&self, at: usize) -> usize {
        self.path[at..]
            .find('/')
            .map_or(self.path.len(), |i| at + i)
    }

    fn step(&mut self, element: usize, at: usize) -> bool {
        let path = self.path;
        let Some(part) = self.pattern.elements.get(element) else {
            return at == path.len() || self.missed(element, at);
        };
        match part {
            Element::Literal(literal) => match path[at..].starts_with(literal.as_str()) {
                true => self.go(element + 1, at + literal.len()),
                false => self.missed(element, at),
            },
            Element::Star => {
                let end = self.name_end(at);
                ends(path, at, end, true).any(|e| self.go(element + 1, e))
            }
            Element::Anything => ends(path, at, path.len(), true).any(|e| self.go(element + 1, e)),
            Element::Folders => {
                let mut candidates: Vec<usize> = path[at..]
                    .match_indices('/')
                    .map(|(i, _)| at + i + 1)
                    .collect();
                candidates.reverse();
                candidates.push(at);
                candidates.into_iter().any(|e| self.go(element + 1, e))
            }
            Element::Field(field) => {
                let candidates: Vec<usize> = match &field.reading {
                    Reading::Text => ends(path, at, self.name_end(at), false).collect(),
                    Reading::Date(format) | Reading::Time(format) => format.ends(path, at),
                };
                if candidates.is_empty() {
                    return self.missed(element, at);
                }
                // Strict, a value is read only where the text after it can follow.
                let next = match self.pattern.elements.get(element + 1) {
                    Some(Element::Literal(next)) if self.strict => Some(next.as_str()),
                    _ => None,
                };
                for end in candidates {
                    if next.is_some_and(|next| !path[end..].starts_with(next)) {
                        continue;
                    }
                    let raw = &path[at..end];
                    // Loose, the text is kept as written, to be read again for the reason.
                    let value = match self.strict {
                        true => match field.read(raw) {
                            Ok(value) => value,
                            Err(_) => continue,
                        },
                        false => raw.to_string(),
                    };
                    self.values[field.slot] = value;
                    if self.go(element + 1, end) {
                        return true;
                    }
                }
                false
            }
        }
    }
}

/// The char boundaries from `end` down to `at` (greedy first), `at` itself only when the
/// text may be empty.
fn ends(path: &str, at: usize, end: usize, empty: bool) -> impl Iterator<Item = usize> + '_ {
    let first = if empty { at } else { at + 1 };
    (first..=end)
        .rev()
        .filter(move |&i| path.is_char_boundary(i))
}

impl Format {
    /// Checks a strftime format; `Err` says what is wrong (with its offset in the format when
    /// one specifier is at fault).
    fn new(text: &str) -> Result<Format, (usize, String)> {
        if let Some(offset) = bad_specifier(text) {
            return Err((
                offset,
                format!(
                    "{:?} is not a strftime specifier chrono can read (e.g. %Y%m%d, %H%M%S; see https://docs.rs/chrono/latest/chrono/format/strftime/)",
                    specifier_at(text, offset)
                ),
            ));
        }
        let mut atoms = Vec::new();
        for item in StrftimeItems::new(text) {
            atoms.push(match item {
                Item::Literal(s) | Item::Space(s) => Atom::Literal(s.to_string()),
                Item::OwnedLiteral(s) | Item::OwnedSpace(s) => Atom::Literal(s.to_string()),
                Item::Numeric(numeric, pad) => numeric_atom(&numeric, pad),
                Item::Fixed(fixed) => fixed_atom(&fixed).ok_or_else(|| {
                    let offset = first_item(
                        text,
                        |item| matches!(item, Item::Fixed(fixed) if fixed_atom(fixed).is_none()),
                    );
                    (
                        offset.unwrap_or(0),
                        "a zone or an offset cannot be read from a file name".to_string(),
                    )
                })?,
                _ => Atom::Run {
                    class: Class::Other,
                    min: 1,
                    max: 32,
                },
            });
        }
        Ok(Format {
            text: text.to_string(),
            atoms,
        })
    }

    /// Every end of a text of this shape that starts at `at`, longest first.
    fn ends(&self, path: &str, at: usize) -> Vec<usize> {
        let mut found = Vec::new();
        atom_ends(&self.atoms, path, at, &mut found);
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.dedup();
        found
    }

    /// 28 November 2026, 14:05:09 written in this format.
    fn example(&self) -> String {
        let mut out = String::new();
        match write!(out, "{}", sample().format(&self.text)) {
            Ok(()) => out,
            Err(_) => self.text.clone(),
        }
    }
}

fn sample() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 28)
        .and_then(|d| d.and_hms_opt(14, 5, 9))
        .expect("a valid sample")
}

fn atom_ends(atoms: &[Atom], path: &str, at: usize, found: &mut Vec<usize>) {
    let Some((first, rest)) = atoms.split_first() else {
        found.push(at);
        return;
    };
    match first {
        Atom::Literal(literal) => {
            if path[at..].starts_with(literal.as_str()) {
                atom_ends(rest, path, at + literal.len(), found);
            }
        }
        Atom::Run { class, min, max } => {
            let mut end = at;
            let mut taken = Vec::new();
            for c in path[at..].chars().take(*max) {
                if !class.admits(c) {
                    break;
                }
                end += c.len_utf8();
                taken.push(end);
            }
            for n in (*min..=taken.len()).rev() {
                let end = if n == 0 { at } else { taken[n - 1] };
                atom_ends(rest, path, end, found);
            }
        }
    }
}

fn numeric_atom(numeric: &Numeric, pad: Pad) -> Atom {
    let width = match numeric {
        Numeric::Year | Numeric::IsoYear => 4,
        Numeric::Ordinal => 3,
        Numeric::Quarter | Numeric::NumDaysFromSun | Numeric::WeekdayFromMon => 1,
        Numeric::Nanosecond => 9,
        Numeric::Timestamp => 20,
        _ => 2,
    };
    let (class, min) = match (numeric, pad) {
        (Numeric::Timestamp, _) => (Class::Digit, 1),
        (_, Pad::Zero) => (Class::Digit, width),
        (_, Pad::None) => (Class::Digit, 1),
        (_, Pad::Space) => (Class::SpaceOrDigit, width),
    };
    Atom::Run {
        class,
        min,
        max: width,
    }
}

fn fixed_atom(fixed: &Fixed) -> Option<Atom> {
    let run = |class, min, max| Some(Atom::Run { class, min, max });
    match fixed {
        Fixed::ShortMonthName | Fixed::ShortWeekdayName => run(Class::Letter, 3, 3),
        Fixed::LongMonthName => run(Class::Letter, 3, 9),
        Fixed::LongWeekdayName => run(Class::Letter, 6, 9),
        Fixed::LowerAmPm | Fixed::UpperAmPm => run(Class::Letter, 2, 2),
        Fixed::Nanosecond | Fixed::Nanosecond3 | Fixed::Nanosecond6 | Fixed::Nanosecond9 => {
            run(Class::Other, 0, 10)
        }
        _ => None,
    }
}

/// Each `%` specifier of a format with its byte offset: the shortest text from there that
/// chrono reads (`%Y`, `%-d`, `%.3f`, `%%`), or `None` where it reads none.
fn specifiers(format: &str) -> Vec<(usize, Option<&str>)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = format[at..].find('%') {
        let start = at + i;
        let read = (2..=5).find_map(|n| {
            let spec = format.get(start..start + n)?;
            (!StrftimeItems::new(spec).any(|item| matches!(item, Item::Error))).then_some(spec)
        });
        found.push((start, read));
        at = start + read.map_or(1, str::len);
    }
    found
}

/// The byte offset of the first specifier chrono cannot read, if any.
fn bad_specifier(format: &str) -> Option<usize> {
    if !StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return None;
    }
    let bad = specifiers(format)
        .into_iter()
        .find(|(_, read)| read.is_none());
    Some(bad.map_or(0, |(offset, _)| offset))
}

/// The byte offset in `format` of the first specifier `what` picks.
fn first_item(format: &str, what: fn(&Item<'_>) -> bool) -> Option<usize> {
    specifiers(format).into_iter().find_map(|(offset, read)| {
        read.filter(|spec| StrftimeItems::new(spec).any(|item| what(&item)))
            .map(|_| offset)
    })
}

/// `%Q`: the specifier at `offset`, for a message.
fn specifier_at(format: &str, offset: usize) -> &str {
    let rest = &format[offset..];
    let end = rest.char_indices().nth(2).map_or(rest.len(), |(i, _)| i);
    &rest[..end]
}

fn reads_time(item: &Item<'_>) -> bool {
    match item {
        Item::Numeric(n, _) => matches!(
            n,
            Numeric::Hour
                | Numeric::Hour12
                | Numeric::Minute
                | Numeric::Second
                | Numeric::Nanosecond
                | Numeric::Timestamp
        ),
        Item::Fixed(f) => matches!(
            f,
            Fixed::LowerAmPm
                | Fixed::UpperAmPm
                | Fixed::Nanosecond
                | Fixed::Nanosecond3
                | Fixed::Nanosecond6
                | Fixed::Nanosecond9
        ),
        _ => false,
    }
}

fn reads_date(item: &Item<'_>) -> bool {
    match item {
        Item::Numeric(n, _) => !reads_time(item) || matches!(n, Numeric::Timestamp),
        Item::Fixed(f) => matches!(
            f,
            Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName
        ),
        _ => false,
    }
}

struct Parser<'t> {
    text: &'t str,
    /// (byte offset, character); a column is an index here plus one.
    chars: Vec<(usize, char)>,
    at: usize,
    elements: Vec<Element>,
    fields: Vec<String>,
    /// The column each field was captured at.
    columns: Vec<usize>,
    hints: Vec<String>,
}

impl Parser<'_> {
    fn error(&self, column: usize, message: impl Into<String>) -> PatternError {
        PatternError {
            pattern: self.text.to_string(),
            column,
            message: message.into(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).map(|&(_, c)| c)
    }

    fn literal(&mut self, c: char) {
        match self.elements.last_mut() {
            Some(Element::Literal(text)) => text.push(c),
            _ => self.elements.push(Element::Literal(c.to_string())),
        }
    }

    fn run(mut self) -> Result<Pattern, PatternError> {
        if self.text.is_empty() {
            return Err(self.error(
                1,
                "the pattern is empty; give one such as {call_date:%Y%m%d}_{agent}.wav",
            ));
        }
        if self.text.starts_with('/') {
            return Err(self.error(
                1,
                "paths are matched relative to the folder scanned, so a pattern does not start with /",
            ));
        }
        if self.text.ends_with('/') {
            return Err(self.error(
                self.chars.len(),
                "the pattern ends with /, so it could only match folders; end it with the file name, e.g. {*}.wav",
            ));
        }
        while let Some(c) = self.peek(0) {
            match (c, self.peek(1)) {
                ('{', Some('{')) | ('}', Some('}')) => {
                    self.literal(c);
                    self.at += 2;
                }
                ('{', _) => self.placeholder()?,
                ('}', _) => {
                    return Err(self.error(
                        self.at + 1,
                        "this } closes no { (a literal brace is written }})",
                    ));
                }
                _ => {
                    self.literal(c);
                    self.at += 1;
                }
            }
        }
        let mut depth = Some(0);
        for element in &self.elements {
            depth = match element {
                Element::Literal(text) => depth.map(|d| d + text.matches('/').count()),
                Element::Field(field) => match field.format() {
                    Some(format) => depth.map(|d| d + format.example().matches('/').count()),
                    None => depth,
                },
                Element::Anything | Element::Folders => None,
                _ => depth,
            };
        }
        Ok(Pattern {
            elements: self.elements,
            fields: self.fields,
            hints: self.hints,
            depth,
        })
    }

    /// `{…}` at `self.at`.
    fn placeholder(&mut self) -> Result<(), PatternError> {
        let open = self.at;
        let column = open + 1;
        let Some(close) = (open + 1..self.chars.len()).find(|&i| self.chars[i].1 == '}') else {
            return Err(self.error(
                column,
                "this { is never closed (a literal brace is written {{)",
            ));
        };
        if let Some(inner) = (open + 1..close).find(|&i| self.chars[i].1 == '{') {
            return Err(self.error(
                inner + 1,
                format!(
                    "a {{ inside a field: the field opened at column {column} is not closed before it (a literal brace is written {{{{)"
                ),
            ));
        }
        let start = self.chars[open].0 + 1;
        let end = self.chars[close].0;
        let inside = &self.text[start..end];
        self.at = close + 1;
        match inside {
            "*" => {
                self.elements.push(Element::Star);
                return Ok(());
            }
            "**" => {
                if self.peek(0) == Some('/') {
                    self.at += 1;
                    self.elements.push(Element::Folders);
                } else {
                    self.elements.push(Element::Anything);
                }
                return Ok(());
            }
            _ => {}
        }
        let (name, format) = match inside.split_once(':') {
            Some((name, format)) => (name, Some(format)),
            None => (inside, None),
        };
        let name_column = column + 1;
        if name.is_empty() {
            return Err(self.error(
                name_column,
                "a field needs a name, e.g. {agent} (or {*} for any text)",
            ));
        }
        if let Some((i, bad)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ')))
        {
            let message = match bad {
                '*' => "{*} and {**} stand alone; a field's name is letters, digits, _, - and ."
                    .to_string(),
                _ => format!(
                    "{:?} cannot be in a field's name, which is letters, digits, _, - and .",
                    bad
                ),
            };
            return Err(self.error(name_column + i, message));
        }
        if name == "file" {
            return Err(self.error(
                name_column,
                "file is the column scan writes each path into; give this field another name",
            ));
        }
        if let Some(first) = self.fields.iter().position(|f| f == name) {
            return Err(self.error(
                name_column,
                format!(
                    "{{{name}}} is already captured at column {}; a field is captured once",
                    self.columns[first]
                ),
            ));
        }
        let format_column = name_column + name.chars().count() + 1;
        let reading = match (name, format) {
            ("call_date", format) => {
                Reading::Date(self.format(name, format.unwrap_or(DATE_FORMAT), format_column)?)
            }
            ("call_time", format) => {
                Reading::Time(self.format(name, format.unwrap_or(TIME_FORMAT), format_column)?)
            }
            (_, None) => Reading::Text,
            (_, Some(_)) => {
                return Err(self.error(
                    format_column - 1,
                    format!(
                        "only call_date and call_time read a format; {{{name}}} is text (remove the :…)"
                    ),
                ));
            }
        };
        if !RESERVED.contains(&name)
            && let Some(key) = RESERVED
                .iter()
                .find(|key| crate::validate::is_near(name, key))
        {
            self.hints.push(format!(
                "--pattern, column {name_column}: {{{name}}} is written as a custom column {name:?}; did you mean {{{key}}}?"
            ));
        }
        let slot = self.fields.len();
        self.fields.push(name.to_string());
        self.columns.push(column);
        self.elements.push(Element::Field(Field {
            name: name.to_string(),
            slot,
            reading,
        }));
        Ok(())
    }

    /// The format of `{call_date:…}` or `{call_time:…}`, checked: chrono reads it, and it
    /// gives a whole date (a time of day) and nothing else.
    fn format(&self, name: &str, text: &str, column: usize) -> Result<Format, PatternError> {
        let at = |offset: usize| column + text[..offset].chars().count();
        if text.is_empty() {
            return Err(self.error(column, format!("the format of {{{name}}} is empty")));
        }
        let format =
            Format::new(text).map_err(|(offset, message)| self.error(at(offset), message))?;
        let sample = sample();
        if name == "call_date" {
            if let Some(offset) = first_item(text, reads_time) {
                return Err(self.error(
                    at(offset),
                    "{call_date} reads a date only; give the time its own field, e.g. {call_date:%Y%m%d}_{call_time:%H%M%S}",
                ));
            }
            if NaiveDate::parse_from_str(&format.example(), text) != Ok(sample.date()) {
                return Err(self.error(
                    column,
                    format!("{text:?} does not give a whole date (a year, a month and a day, e.g. %Y%m%d)"),
                ));
            }
        } else {
            if let Some(offset) = first_item(text, reads_date) {
                return Err(self.error(
                    at(offset),
                    "{call_time} reads a time of day only; give the date its own field, e.g. {call_date:%Y%m%d}_{call_time:%H%M%S}",
                ));
            }
            let hours_minutes = NaiveTime::parse_from_str(&format.example(), text)
                .map(|t| t.format("%H:%M").to_string());
            if hours_minutes.as_deref() != Ok("14:05") {
                return Err(self.error(
                    column,
                    format!(
                        "{text:?} does not give a time of day (hours and minutes, e.g. %H%M%S)"
                    ),
                ));
            }
        }
        Ok(format)
    }
}

#[cfg(test)]
mod tests;

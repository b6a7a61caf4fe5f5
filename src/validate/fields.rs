//! The client's definition of valid call metadata: the reserved keys of call 1's JSON body,
//! checked on every manifest row before anything is sent.
//!
//! Stricter than Voyc where the API document is (`YYYY-MM-DD`, `hh:mm:ss`), and never more
//! lenient: a row called valid here must be one Voyc accepts. The sandbox does not use these
//! rules; it checks call 1 as Voyc's DRF serializer would (`voyc_sandbox::serializer`), and
//! the fuzz property that every valid row is accepted there finds where the two disagree.

use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use serde_json::{Map, Value};

/// Keys with a meaning to Voyc; every other key is custom metadata, sent as-is.
pub const RESERVED: [&str; 7] = [
    "channel_id",
    "call_date",
    "call_time",
    "agent",
    "direction",
    "language",
    "speakers",
];

/// Reserved keys every row must carry, non-empty.
pub const REQUIRED: [&str; 4] = ["channel_id", "call_date", "call_time", "agent"];

/// The values `direction` may take (compared without regard to case, sent lower-case).
pub const DIRECTIONS: [&str; 3] = ["inbound", "outbound", "internal"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with one field, worded for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub severity: Severity,
    /// The key (manifest column) at fault.
    pub field: String,
    /// The offending value as written, when there is one.
    pub value: Option<String>,
    /// What is wrong and what was expected, e.g. `not a valid date, expected YYYY-MM-DD`.
    pub message: String,
}

impl FieldProblem {
    pub fn error(field: &str, value: Option<String>, message: impl Into<String>) -> Self {
        FieldProblem {
            severity: Severity::Error,
            field: field.to_string(),
            value,
            message: message.into(),
        }
    }

    pub fn warning(field: &str, value: Option<String>, message: impl Into<String>) -> Self {
        FieldProblem {
            severity: Severity::Warning,
            ..FieldProblem::error(field, value, message)
        }
    }
}

/// `call_date "2024-02-30": not a valid date, expected YYYY-MM-DD`, or `agent: required, but missing`.
impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{} {}: {}", self.field, quote(value), self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Quotes a value for a message: escaped like a Rust string, cut short if very long
/// (a 1 MiB cell must not become a 1 MiB error line).
pub fn quote(value: &str) -> String {
    match cut_point(value) {
        None => format!("{value:?}"),
        Some(cut) => {
            let shown = format!("{:?}", &value[..cut]);
            format!("{}…\" ({} bytes)", &shown[..shown.len() - 1], value.len())
        }
    }
}

/// Where to cut `text` so that it shows in at most 80 characters once escaped (a control
/// character escapes to as many as 10, `\u{10ffff}`); `None` if it fits whole.
pub fn cut_point(text: &str) -> Option<usize> {
    const MAX_CHARS: usize = 80;
    let mut width = 0;
    for (at, c) in text.char_indices() {
        width += c.escape_debug().count();
        if width > MAX_CHARS {
            return Some(at);
        }
    }
    None
}

/// Checks the reserved keys of a call-1 body. `today` is the caller's current date, used
/// only for the "date in the future" warning. Keys that are not reserved are not looked at.
pub fn check_body(body: &Map<String, Value>, today: NaiveDate) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    for key in REQUIRED {
        match body.get(key) {
            None | Some(Value::Null) => {
                problems.push(FieldProblem::error(key, None, "required, but missing"))
            }
            Some(Value::String(s)) if is_empty_text(s) => {
                problems.push(FieldProblem::error(key, None, "required, but empty"))
            }
            _ => {}
        }
    }
    for key in ["channel_id", "agent", "language"] {
        if let Some(value @ (Value::Bool(_) | Value::Array(_) | Value::Object(_))) = body.get(key) {
            problems.push(FieldProblem::error(
                key,
                Some(value.to_string()),
                "expected a string or a number",
            ));
        }
    }
    if let Some(value) = body.get("call_date").filter(|v| !is_blank(v)) {
        match parse_date(value) {
            Err(problem) => problems.push(problem),
            Ok(date) if date > today => problems.push(FieldProblem::warning(
                "call_date",
                Some(date.to_string()),
                format!("date is in the future (today is {today})"),
            )),
            Ok(_) => {}
        }
    }
    if let Some(value) = body.get("call_time").filter(|v| !is_blank(v))
        && let Err(problem) = parse_time(value)
    {
        problems.push(problem);
    }
    if let Some(value) = body.get("direction").filter(|v| !is_blank(v))
        && let Err(problem) = parse_direction(value)
    {
        problems.push(problem);
    }
    if let Some(value) = body.get("speakers").filter(|v| !is_blank(v))
        && let Err(problem) = parse_speakers(value)
    {
        problems.push(problem);
    }
    problems
}

/// Null, or a string of only whitespace: treated as absent for optional keys.
pub fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => is_empty_text(s),
        _ => false,
    }
}

/// Only whitespace, as Voyc's server sees it: Python's `str.strip()` also takes the ASCII
/// separators U+001C to U+001F for whitespace, so Voyc refuses a value of only those as blank.
fn is_empty_text(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// A JSON value as a person would have written it in a manifest cell.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `call_date`: exactly `YYYY-MM-DD`, and a day that exists.
pub fn parse_date(value: &Value) -> Result<NaiveDate, FieldProblem> {
    let bad = |message: &str| FieldProblem::error("call_date", Some(shown(value)), message);
    let Value::String(text) = value else {
        return Err(bad("expected a date as a string, YYYY-MM-DD"));
    };
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad("not a date in the form YYYY-MM-DD"));
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(bad("not a date in the form YYYY-MM-DD"));
    };
    // Python's dates (Voyc's server's) start in year 1.
    NaiveDate::from_ymd_opt(year as i32, month, day)
        .filter(|_| year > 0)
        .ok_or_else(|| bad("not a valid date, expected YYYY-MM-DD"))
}

/// `call_time`: exactly `hh:mm:ss` on a 24-hour clock.
pub fn parse_time(value: &Value) -> Result<NaiveTime, FieldProblem> {
    let bad = |message: &str| FieldProblem::error("call_time", Some(shown(value)), message);
    let Value::String(text) = value else {
        return Err(bad("expected a time as a string, hh:mm:ss"));
    };
    let b = text.as_bytes();
    let two = |i: usize| -> Option<u32> {
        let (h, l) = (*b.get(i)?, *b.get(i + 1)?);
        (h.is_ascii_digit() && l.is_ascii_digit())
            .then(|| u32::from(h - b'0') * 10 + u32::from(l - b'0'))
    };
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return Err(bad("not a time in the form hh:mm:ss"));
    }
    let (Some(h), Some(m), Some(s)) = (two(0), two(3), two(6)) else {
        return Err(bad("not a time in the form hh:mm:ss"));
    };
    NaiveTime::from_hms_opt(h, m, s)
        .filter(|_| s < 60)
        .ok_or_else(|| bad("not a valid time of day, expected hh:mm:ss (00:00:00 to 23:59:59)"))
}

/// `direction`: inbound, outbound or internal, in any case; returned lower-case.
pub fn parse_direction(value: &Value) -> Result<&'static str, FieldProblem> {
    let found = match value {
        Value::String(s) => DIRECTIONS
            .into_iter()
            .find(|d| d.eq_ignore_ascii_case(s.trim())),
        _ => None,
    };
    found.ok_or_else(|| {
        FieldProblem::error(
            "direction",
            Some(shown(value)),
            "expected one of inbound, outbound, internal",
        )
    })
}

/// `speakers`: a positive whole number, as a JSON number or as digits in a string. A whole
/// number written with a decimal point (`2.0`, as spreadsheets and pandas export integer
/// columns that have gaps) is taken as DRF's `IntegerField` takes it, and sent as `2`.
pub fn parse_speakers(value: &Value) -> Result<u32, FieldProblem> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            let digits = match s.split_once('.') {
                Some((whole, zeros)) if zeros.bytes().all(|b| b == b'0') => whole,
                Some(_) => "",
                None => s,
            };
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits.parse::<u64>().ok()
            } else {
                None
            }
        }
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok());
    parsed.filter(|&n| n > 0).ok_or_else(|| {
        FieldProblem::error(
            "speakers",
            Some(shown(value)),
            "expected a positive whole number",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn valid() -> Map<String, Value> {
        body(json!({
            "channel_id": "42", "call_date": "2024-02-29", "call_time": "09:05:00",
            "agent": "Ann", "direction": "Inbound", "speakers": "2", "team": "north"
        }))
    }

    fn messages(b: &Map<String, Value>) -> Vec<String> {
        check_body(b, today())
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_complete_row_has_no_problems() {
        assert!(check_body(&valid(), today()).is_empty());
    }

    #[test]
    fn each_required_key_missing_or_empty_is_an_error() {
        for key in REQUIRED {
            let mut b = valid();
            b.remove(key);
            assert_eq!(messages(&b), vec![format!("{key}: required, but missing")]);
            b.insert(key.into(), json!("  "));
            assert_eq!(messages(&b), vec![format!("{key}: required, but empty")]);
        }
    }

    #[test]
    fn a_value_of_only_ascii_separators_is_empty_as_voyc_strips_them() {
        let mut b = valid();
        b.insert("agent".into(), json!("\u{1f} \u{1c}"));
        assert_eq!(messages(&b), vec!["agent: required, but empty"]);
        assert!(is_blank(&json!("\u{1d}\u{1e}")));
        assert!(!is_blank(&json!("\u{1f}A")));
    }

    #[test]
    fn year_zero_is_not_a_date() {
        let mut b = valid();
        b.insert("call_date".into(), json!("0000-01-01"));
        assert_eq!(
            messages(&b),
            vec![r#"call_date "0000-01-01": not a valid date, expected YYYY-MM-DD"#]
        );
    }

    #[test]
    fn a_day_that_does_not_exist_is_an_invalid_date() {
        let mut b = valid();
        b.insert("call_date".into(), json!("2024-02-30"));
        assert_eq!(
            messages(&b),
            vec![r#"call_date "2024-02-30": not a valid date, expected YYYY-MM-DD"#]
        );
        b.insert("call_date".into(), json!("2023-02-29"));
        assert_eq!(messages(&b).len(), 1);
    }

    #[test]
    fn dates_in_other_forms_are_rejected() {
        for bad in [
            "2024-2-03",
            "03/02/2024",
            "2024-02-03T10:00:00",
            "20240203",
            "２０２４-02-03",
        ] {
            let mut b = valid();
            b.insert("call_date".into(), json!(bad));
            let got = messages(&b);
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].contains("YYYY-MM-DD"), "{got:?}");
        }
    }

    #[test]
    fn a_date_in_the_future_is_only_a_warning() {
        let mut b = valid();
        b.insert("call_date".into(), json!("2026-11-29"));
        let problems = check_body(&b, today());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].severity, Severity::Warning);
        assert!(problems[0].message.contains("future"));
    }

    #[test]
    fn times_must_be_real_and_in_hh_mm_ss() {
        for good in ["00:00:00", "23:59:59", "12:30:05"] {
            assert!(parse_time(&json!(good)).is_ok(), "{good}");
        }
        for bad in [
            "24:00:00",
            "12:60:00",
            "12:00:60",
            "9:05:00",
            "09:05",
            "09:05:00Z",
            "ab:cd:ef",
        ] {
            assert!(parse_time(&json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn direction_is_case_insensitive_and_comes_back_lower_case() {
        assert_eq!(parse_direction(&json!("OutBound")).unwrap(), "outbound");
        let err = parse_direction(&json!("sideways")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"direction "sideways": expected one of inbound, outbound, internal"#
        );
    }

    #[test]
    fn speakers_must_be_a_positive_whole_number() {
        assert_eq!(parse_speakers(&json!("3")).unwrap(), 3);
        assert_eq!(parse_speakers(&json!(3)).unwrap(), 3);
        // Whole numbers with a decimal point, as DRF's IntegerField takes them.
        assert_eq!(parse_speakers(&json!(2.0)).unwrap(), 2);
        assert_eq!(parse_speakers(&json!(" 2.00 ")).unwrap(), 2);
        assert_eq!(parse_speakers(&json!("2.")).unwrap(), 2);
        for bad in [
            json!("0"),
            json!(0),
            json!(0.0),
            json!("-1"),
            json!(-2.0),
            json!("2.5"),
            json!(2.5),
            json!("2.0.0"),
            json!(".0"),
            json!("1e3"),
            json!(1e10),
            json!("two"),
            json!(true),
        ] {
            assert!(parse_speakers(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_keys_given_as_objects_are_errors() {
        let mut b = valid();
        b.insert("agent".into(), json!({"name": "Ann"}));
        assert_eq!(
            messages(&b),
            vec![r#"agent "{\"name\":\"Ann\"}": expected a string or a number"#]
        );
    }

    #[test]
    fn long_values_are_cut_short_when_quoted() {
        let long = "x".repeat(1 << 20);
        let q = quote(&long);
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with("(1048576 bytes)"), "{q}");
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }
}

//! Django's `django.utils.dateparse.parse_date` and `parse_time`, which DRF's `DateField` and
//! `TimeField` use for their default input format (`iso-8601`). Each first tries Python's
//! `date.fromisoformat` / `time.fromisoformat` and, when that raises `ValueError`, a regular
//! expression:
//!
//! ```text
//! date_re = r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})$"
//! time_re = r"(?P<hour>\d{1,2}):(?P<minute>\d{1,2})"
//!           r"(?::(?P<second>\d{1,2})(?:[.,](?P<microsecond>\d{1,6})\d{0,6})?)?$"
//! ```
//!
//! matched from the start, with `\d` any script's decimal digit and `$` the end or just
//! before a final newline. A match that names a day or time that does not exist raises
//! `ValueError` from `datetime.date(...)` / `datetime.time(...)`, and so does an impossible
//! `fromisoformat` result before the expression is tried; DRF catches `ValueError` and
//! `TypeError` alike and answers "wrong format", so here both are just `None`.
//!
//! `fromisoformat` is CPython 3.12's C implementation (`Modules/_datetimemodule.c`:
//! `parse_isoformat_date`, `parse_hh_mm_ss_ff`, `parse_isoformat_time`), byte for byte over the
//! string's UTF-8, quirks included: it takes `20240203`, ISO week dates (`2024-W05-3`),
//! `12`, `1230`, `12.5` and time zones (`12:30Z`, `12:30+02:00`, which Django drops), and it
//! ignores what follows a date of 10 bytes without dashes (`2024020399`). Django 6.1 on
//! CPython 3.12 and 3.13 answer the same for every case in the tests.

use chrono::{Datelike as _, NaiveDate, NaiveTime, Weekday};

use super::python::decimal_digit;

/// `parse_date(text)`: the date, or `None` where DRF answers "Date has wrong format".
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    date_fromisoformat(text.as_bytes()).or_else(|| date_re(text))
}

/// `parse_time(text)`: the time of day (any time zone dropped), or `None` where DRF answers
/// "Time has wrong format".
pub fn parse_time(text: &str) -> Option<NaiveTime> {
    time_fromisoformat(text.as_bytes()).or_else(|| time_re(text))
}

/// The byte at `at`, or 0 past the end: C reads the string's terminating NUL there.
fn byte(text: &[u8], at: usize) -> u8 {
    text.get(at).copied().unwrap_or(0)
}

/// `parse_digits`: `count` ASCII digits at `at`, as a number.
fn digits(text: &[u8], at: usize, count: usize) -> Option<u32> {
    (at..at + count).try_fold(0u32, |value, i| {
        let b = byte(text, i);
        b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
    })
}

/// A date `datetime.date` accepts: years 1 to 9999 and days that exist.
fn python_date(year: u32, month: u32, day: u32) -> Option<NaiveDate> {
    (1..=9999)
        .contains(&year)
        .then(|| NaiveDate::from_ymd_opt(year as i32, month, day))
        .flatten()
}

/// `date.fromisoformat`: 7, 8 or 10 bytes; `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-Www[-D]` or
/// `YYYYWww[D]`, and nothing checks what follows the last part it reads.
fn date_fromisoformat(text: &[u8]) -> Option<NaiveDate> {
    if !matches!(text.len(), 7 | 8 | 10) {
        return None;
    }
    let year = digits(text, 0, 4)?;
    let dashes = byte(text, 4) == b'-';
    let mut at = 4 + usize::from(dashes);
    if byte(text, at) == b'W' {
        at += 1;
        let week = digits(text, at, 2)?;
        at += 2;
        let day = if at < text.len() {
            if dashes {
                if byte(text, at) != b'-' {
                    return None;
                }
                at += 1;
            }
            digits(text, at, 1)?
        } else {
            1
        };
        return iso_week_date(year, week, day);
    }
    let month = digits(text, at, 2)?;
    at += 2;
    if dashes {
        if byte(text, at) != b'-' {
            return None;
        }
        at += 1;
    }
    let day = digits(text, at, 2)?;
    python_date(year, month, day)
}

/// `iso_to_ymd`, then `datetime.date`'s range: ISO years 1 to 9999, week 53 only in years
/// that have one, days 1 (Monday) to 7; the date must fall in years 1 to 9999.
fn iso_week_date(year: u32, week: u32, day: u32) -> Option<NaiveDate> {
    if !(1..=9999).contains(&year) || !(1..=7).contains(&day) {
        return None;
    }
    let weekday = Weekday::try_from(u8::try_from(day - 1).ok()?).ok()?;
    let date = NaiveDate::from_isoywd_opt(year as i32, week, weekday)?;
    (1..=9999).contains(&date.year()).then_some(date)
}

/// `text` without the one final newline that Python's `$` may stand before.
fn before_final_newline(text: &str) -> &str {
    text.strip_suffix('\n').unwrap_or(text)
}

/// A run of decimal digits (any script) at the start of `text`: its value and what follows.
fn digit_run(text: &str) -> (Vec<u32>, &str) {
    let end = text
        .char_indices()
        .find(|&(_, c)| decimal_digit(c).is_none())
        .map_or(text.len(), |(at, _)| at);
    let run = text[..end].chars().filter_map(decimal_digit).collect();
    (run, &text[end..])
}

fn value_of(run: &[u32]) -> u32 {
    run.iter().fold(0, |value, digit| value * 10 + digit)
}

/// Django's `date_re`, then `datetime.date(...)`. Digit runs end at a non-digit, so the
/// expression's backtracking comes down to the length of each run.
fn date_re(text: &str) -> Option<NaiveDate> {
    let (year, rest) = digit_run(before_final_newline(text));
    // `\d{4}` takes the first four digits; a fifth is not the `-` that must follow.
    let rest = rest.strip_prefix('-').filter(|_| year.len() == 4)?;
    let (month, rest) = digit_run(rest);
    let rest = rest
        .strip_prefix('-')
        .filter(|_| (1..=2).contains(&month.len()))?;
    let (day, rest) = digit_run(rest);
    if !rest.is_empty() || !(1..=2).contains(&day.len()) {
        return None;
    }
    python_date(value_of(&year), value_of(&month), value_of(&day))
}

/// Django's `time_re`, then `datetime.time(...)`: the fraction's first six digits are the
/// microseconds (padded with zeros), up to six more are read and dropped.
fn time_re(text: &str) -> Option<NaiveTime> {
    let (hour, rest) = digit_run(before_final_newline(text));
    let rest = rest
        .strip_prefix(':')
        .filter(|_| (1..=2).contains(&hour.len()))?;
    let (minute, rest) = digit_run(rest);
    if !(1..=2).contains(&minute.len()) {
        return None;
    }
    let (mut second, mut micro) = (Vec::new(), Vec::new());
    if let Some(rest) = rest.strip_prefix(':') {
        let (run, rest) = digit_run(rest);
        second = run;
        if !(1..=2).contains(&second.len()) {
            return None;
        }
        if let Some(rest) = rest.strip_prefix(['.', ',']) {
            let (run, rest) = digit_run(rest);
            if !rest.is_empty() || !(1..=12).contains(&run.len()) {
                return None;
            }
            micro = run;
        } else if !rest.is_empty() {
            return None;
        }
    } else if !rest.is_empty() {
        return None;
    }
    micro.resize(6, 0);
    python_time(
        value_of(&hour),
        value_of(&minute),
        value_of(&second),
        value_of(&micro),
    )
}

/// A time `datetime.time` accepts: 0 to 23 hours, 59 minutes, 59 seconds (no leap second).
fn python_time(hour: u32, minute: u32, second: u32, micro: u32) -> Option<NaiveTime> {
    if hour > 23 || minute > 59 || second > 59 || micro > 999_999 {
        return None;
    }
    NaiveTime::from_hms_micro_opt(hour, minute, second, micro)
}

/// `time.fromisoformat`: an optional `T`, then `parse_isoformat_time`, then the ranges of
/// `datetime.time` and of a time zone's offset (strictly within a day).
fn time_fromisoformat(text: &[u8]) -> Option<NaiveTime> {
    let start = usize::from(byte(text, 0) == b'T');
    let time = parse_isoformat_time(text, start)?;
    if let Some(offset_micros) = time.offset_micros
        && offset_micros.abs() >= 86_400_000_000
    {
        return None;
    }
    python_time(time.hour, time.minute, time.second, time.micro)
}

/// What `parse_hh_mm_ss_ff` read.
struct Clock {
    hour: u32,
    minute: u32,
    second: u32,
    micro: u32,
    /// The C function's return value 1: it stopped before the string's end.
    more: bool,
}

/// `parse_hh_mm_ss_ff`: `HH[:MM[:SS]]` or `HH[MM[SS]]` from `start`, reading up to `end`,
/// then a fraction after `.` or `,` (its first six digits; further digits are skipped).
fn parse_hh_mm_ss_ff(text: &[u8], start: usize, end: usize) -> Option<Clock> {
    let mut parts = [0u32; 3];
    let mut at = start;
    let mut colons = true;
    for (i, part) in parts.iter_mut().enumerate() {
        *part = digits(text, at, 2)?;
        at += 2;
        let c = byte(text, at);
        at += 1;
        if i == 0 {
            colons = c == b':';
        }
        if at >= end {
            let [hour, minute, second] = parts;
            return Some(Clock {
                hour,
                minute,
                second,
                micro: 0,
                more: c != 0,
            });
        } else if colons && c == b':' {
            continue;
        } else if c == b'.' || c == b',' {
            break;
        } else if !colons {
            at -= 1;
        } else {
            return None;
        }
    }
    // Also after a third part without a separator, or after `SS:`: C reads a fraction there too.
    let count = (end - at).min(6);
    let mut micro = digits(text, at, count)?;
    at += count;
    micro *= 10u32.pow(6 - count as u32);
    while byte(text, at).is_ascii_digit() {
        at += 1;
    }
    let [hour, minute, second] = parts;
    Some(Clock {
        hour,
        minute,
        second,
        micro,
        more: byte(text, at) != 0,
    })
}

/// What `parse_isoformat_time` read.
struct IsoTime {
    hour: u32,
    minute: u32,
    second: u32,
    micro: u32,
    /// The time zone's offset from UTC, when one was given.
    offset_micros: Option<i64>,
}

/// `parse_isoformat_time`: the time up to the first `Z`, `+` or `-` anywhere in the string,
/// then `Z` alone or a signed `HH[:MM[:SS[.ffffff]]]` offset.
fn parse_isoformat_time(text: &[u8], start: usize) -> Option<IsoTime> {
    let end = text.len();
    let mut zone = start;
    // C's do-while: the first byte is looked at even when there is none (the NUL).
    loop {
        if matches!(byte(text, zone), b'Z' | b'+' | b'-') {
            break;
        }
        zone += 1;
        if zone >= end {
            break;
        }
    }
    let clock = parse_hh_mm_ss_ff(text, start, zone)?;
    let time = |offset_micros| IsoTime {
        hour: clock.hour,
        minute: clock.minute,
        second: clock.second,
        micro: clock.micro,
        offset_micros,
    };
    if zone == end {
        return (!clock.more).then(|| time(None));
    }
    if byte(text, zone) == b'Z' {
        return (byte(text, zone + 1) == 0).then(|| time(Some(0)));
    }
    let sign = if byte(text, zone) == b'-' { -1 } else { 1 };
    let offset = parse_hh_mm_ss_ff(text, zone + 1, end)?;
    if offset.more {
        return None;
    }
    let seconds = i64::from(offset.hour) * 3600 + i64::from(offset.minute) * 60;
    let seconds = seconds + i64::from(offset.second);
    Some(time(Some(
        sign * (seconds * 1_000_000 + i64::from(offset.micro)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Option<String> {
        parse_date(text).map(|d| d.to_string())
    }

    fn time(text: &str) -> Option<String> {
        parse_time(text).map(|t| t.format("%H:%M:%S%.6f").to_string())
    }

    // Every expected value below is what Django 6.1's parse_date / parse_time gave on
    // CPython 3.12 (None where it returned None or raised ValueError or TypeError).

    #[test]
    fn dates_as_django_reads_them() {
        for (text, expected) in [
            ("2024-02-29", Some("2024-02-29")),
            ("2024-3-5", Some("2024-03-05")),
            ("2024-03-05\n", Some("2024-03-05")),
            ("20240305", Some("2024-03-05")),
            ("2024030599", Some("2024-03-05")),
            ("2024-W05-3", Some("2024-01-31")),
            ("2024W053xx", Some("2024-01-31")),
            ("2024-W05", Some("2024-01-29")),
            ("2020-W53", Some("2020-12-28")),
            ("２０２４-03-05", Some("2024-03-05")),
            ("2999-01-01", Some("2999-01-01")),
            ("2024-02-30", None),
            ("2023-02-29", None),
            ("2024-13-01", None),
            ("0000-01-01", None),
            ("2024-W53", None),
            ("9999-W52-6", None),
            ("2024-03-05\n\n", None),
            (" 2024-03-05", None),
            ("2024-03-05 ", None),
            ("2024-003-05", None),
            ("12024-03-05", None),
            ("03/05/2024", None),
            ("2024-03-05T10:00:00", None),
            ("2024-03", None),
            ("", None),
        ] {
            assert_eq!(date(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn times_as_django_reads_them() {
        for (text, expected) in [
            ("09:05:00", Some("09:05:00.000000")),
            ("9:05", Some("09:05:00.000000")),
            ("9:5:7", Some("09:05:07.000000")),
            ("09:05", Some("09:05:00.000000")),
            ("09", Some("09:00:00.000000")),
            ("0905", Some("09:05:00.000000")),
            ("T09:05", Some("09:05:00.000000")),
            ("12.5", Some("12:00:00.500000")),
            ("12,5", Some("12:00:00.500000")),
            ("12:30:45:123", Some("12:30:45.123000")),
            ("12304512", Some("12:30:45.120000")),
            ("12:30:45.1234567", Some("12:30:45.123456")),
            ("1:30:45.1234567891", Some("01:30:45.123456")),
            ("12:30Z", Some("12:30:00.000000")),
            ("12:30:45+01:00", Some("12:30:45.000000")),
            ("12:30:45.+01:00", Some("12:30:45.000000")),
            ("12:30+01:99", Some("12:30:00.000000")),
            ("12:30\n", Some("12:30:00.000000")),
            ("١٢:٣٠", Some("12:30:00.000000")),
            ("24:00", None),
            ("24:00:00", None),
            ("12:60", None),
            ("23:59:60", None),
            ("12:30+24:00", None),
            ("12:30+99:00", None),
            ("12:30:", None),
            ("12:3045", None),
            ("12:30-", None),
            ("12:30:45.", None),
            ("1:30:45.1234567890123", None),
            ("12:30 ", None),
            ("ab:cd", None),
            ("", None),
        ] {
            assert_eq!(time(text).as_deref(), expected, "{text:?}");
        }
    }
}

//! Every number, size, rate and duration a person reads, formatted one way everywhere (and the
//! durations a person types, read one way): `48,210`, `1 row`, `9.8 GiB`, `11m02s`, `30s`.
//! And any text from a manifest or a file system, made safe for one line of output.

use std::borrow::Cow;
use std::time::Duration;

/// `text` as one line of output: each control character escaped (`\n`, `\t`, `\u{1b}`), as a
/// file name, a header or a value may hold a line break or a terminal escape, and no control
/// character may reach a log.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `row` for 1, `rows` otherwise.
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    if n.into() == 1 {
        one.to_string()
    } else {
        many.to_string()
    }
}

/// `48,210`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 row`, `12,000 rows`.
pub fn count_of(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), plural(n, one, many))
}

/// `9.8 GiB`, `512 B`.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long something took: `420ms`, `4.2s`, `42s`, `11m02s`, `3h05m09s`.
pub fn elapsed(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    if seconds == 0 {
        format!("{}ms", elapsed.as_millis())
    } else if seconds < 10 {
        format!("{:.1}s", elapsed.as_secs_f64())
    } else if seconds < 60 {
        format!("{seconds}s")
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!(
            "{}h{:02}m{:02}s",
            seconds / 3600,
            seconds % 3600 / 60,
            seconds % 60
        )
    }
}

/// A duration as a flag would give it: `30s`, `1.5s`, `250ms`, `2m`.
pub fn duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Reads a duration flag: `30`, `30s`, `500ms`, `2m`, `4h` (a bare number is seconds); more than 0
/// and at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("calls/a.wav"), "calls/a.wav");
        assert_eq!(
            one_line("a\nb\r\t\u{1b}[2Jé.wav"),
            "a\\nb\\r\\t\\u{1b}[2Jé.wav"
        );
    }

    #[test]
    fn numbers_sizes_and_durations_read_like_the_examples() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(48_210), "48,210");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count_of(1, "row", "rows"), "1 row");
        assert_eq!(count_of(12_000, "row", "rows"), "12,000 rows");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10_522_669_875), "9.8 GiB");
        assert_eq!(bytes(35_336_192), "33.7 MiB");
        // The manifest's row limit and the upload limit are worded with the same units.
        assert_eq!(bytes((1 << 20) + 1), "1.0 MiB");
        assert_eq!(bytes(6_657_199_308), "6.2 GiB");
        assert_eq!(elapsed(Duration::from_millis(420)), "420ms");
        assert_eq!(elapsed(Duration::from_millis(4_250)), "4.2s");
        assert_eq!(elapsed(Duration::from_secs(42)), "42s");
        assert_eq!(elapsed(Duration::from_secs(662)), "11m02s");
        assert_eq!(elapsed(Duration::from_secs(11_109)), "3h05m09s");
    }

    #[test]
    fn timeouts_are_read_with_units() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration("3h").unwrap(), Duration::from_secs(3 * 3600));
        assert!(parse_duration("25h").is_err(), "at most a day");
        assert!(parse_duration("3d").is_err());
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(120)), "2m");
    }
}

//! Dates and times as telephony exports write them, turned into Voyc's `call_date`
//! (`YYYY-MM-DD`) and `call_time` (`hh:mm:ss`): one timestamp column (`--timestamp-column`:
//! RFC 3339 with `Z` or an offset, `YYYY-MM-DD hh:mm:ss` without one, epoch seconds or
//! milliseconds, or `--timestamp-format`), or separate columns in other forms (`--date-format`,
//! `--time-format`), in chrono's strftime syntax.
//!
//! With `--timezone`, a timestamp with an offset (an instant) is converted to that zone's local
//! date and time, and a local time is checked to exist there exactly once: the hour skipped in
//! spring and the hour repeated in autumn are errors that name both readings. Without it, a
//! timestamp's own local date and time are kept, as written (Voyc's document does not say which
//! zone it means).

use chrono::format::{Item, StrftimeItems};
use chrono::offset::LocalResult;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

/// How dates and times are read, checked once.
#[derive(Clone, Debug, Default)]
pub struct TimeSettings {
    /// The column (after `--map`) whose timestamp fills `call_date` and `call_time`.
    pub timestamp_column: Option<String>,
    pub timestamp_format: Option<String>,
    pub date_format: Option<String>,
    pub time_format: Option<String>,
    pub timezone: Option<Tz>,
}

impl TimeSettings {
    /// Checks each format (chrono's strftime syntax) and the zone (an IANA name); a bad one is
    /// a usage error, with the closest zone names for a misspelt one.
    pub fn new(
        timestamp_column: Option<&str>,
        timestamp_format: Option<&str>,
        date_format: Option<&str>,
        time_format: Option<&str>,
        timezone: Option<&str>,
    ) -> anyhow::Result<TimeSettings> {
        if timestamp_format.is_some() && timestamp_column.is_none() {
            anyhow::bail!("--timestamp-format reads --timestamp-column, which is not given");
        }
        if let Some(column) = timestamp_column {
            for flag in [
                ("--date-format", date_format),
                ("--time-format", time_format),
            ] {
                if flag.1.is_some() {
                    anyhow::bail!(
                        "{} reads a call_date or call_time column, but --timestamp-column {column} fills both",
                        flag.0
                    );
                }
            }
            if column.trim().is_empty() {
                anyhow::bail!(
                    "--timestamp-column is empty; give the column that holds each call's timestamp"
                );
            }
        }
        let sample = NaiveDate::from_ymd_opt(2026, 11, 28)
            .and_then(|d| d.and_hms_opt(14, 5, 9))
            .expect("a valid sample");
        if let Some(format) = timestamp_format {
            check_format("--timestamp-format", format)?;
            let zone_given = has_offset(format);
            let shown = sample
                .and_local_timezone(FixedOffset::east_opt(0).expect("UTC"))
                .single()
                .expect("UTC is unambiguous")
                .format(format)
                .to_string();
            let back = match zone_given {
                true => DateTime::parse_from_str(&shown, format).map(|t| t.naive_local()),
                false => NaiveDateTime::parse_from_str(&shown, format),
            };
            // Seconds may be left out; a date, hours and minutes may not.
            let minutes = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
            if back.map(minutes) != Ok(minutes(sample)) {
                anyhow::bail!(
                    "--timestamp-format {format:?} does not give both a date and a time of day (it writes 2026-11-28 14:05:09 as {shown:?})"
                );
            }
        }
        if let Some(format) = date_format {
            check_format("--date-format", format)?;
            if NaiveDate::parse_from_str(&sample.date().format(format).to_string(), format)
                != Ok(sample.date())
            {
                anyhow::bail!(
                    "--date-format {format:?} does not give a whole date (a day, a month and a year)"
                );
            }
        }
        if let Some(format) = time_format {
            check_format("--time-format", format)?;
            let shown = sample.time().format(format).to_string();
            match NaiveTime::parse_from_str(&shown, format) {
                Ok(time) if time.format("%H:%M").to_string() == "14:05" => {}
                _ => anyhow::bail!(
                    "--time-format {format:?} does not give a time of day (hours and minutes)"
                ),
            }
        }
        let timezone = timezone.map(parse_zone).transpose()?;
        Ok(TimeSettings {
            timestamp_column: timestamp_column.map(|c| c.trim().to_string()),
            timestamp_format: timestamp_format.map(str::to_string),
            date_format: date_format.map(str::to_string),
            time_format: time_format.map(str::to_string),
            timezone,
        })
    }

    /// A timestamp's local date and time (in `--timezone` when given); `Err` says what is
    /// wrong, for a problem on its column.
    pub fn read_timestamp(&self, value: &Value) -> Result<NaiveDateTime, String> {
        let text = match value {
            Value::String(text) => text.trim().to_string(),
            Value::Number(number) => number.to_string(),
            other => {
                return Err(format!(
                    "expected a timestamp as text or a number, found {}",
                    crate::manifest::json_kind(other)
                ));
            }
        };
        let read = match &self.timestamp_format {
            Some(format) if has_offset(format) => DateTime::parse_from_str(&text, format)
                .map(Stamp::Instant)
                .map_err(|_| format!("does not match --timestamp-format {format:?}")),
            Some(format) => NaiveDateTime::parse_from_str(&text, format)
                .map(Stamp::Local)
                .map_err(|_| format!("does not match --timestamp-format {format:?}")),
            None => read_stamp(&text).ok_or_else(|| {
                "not a timestamp: expected RFC 3339 with Z or an offset (2024-03-10T14:05:00Z), \
                 YYYY-MM-DD hh:mm:ss, or epoch seconds or milliseconds (or pass --timestamp-format)"
                    .to_string()
            }),
        }?;
        match (read, self.timezone) {
            (Stamp::Instant(at), Some(zone)) => Ok(at.with_timezone(&zone).naive_local()),
            (Stamp::Instant(at), None) => Ok(at.naive_local()),
            (Stamp::Local(local), Some(zone)) => self.exists_once(local, zone).map(|()| local),
            (Stamp::Local(local), None) => Ok(local),
        }
    }

    /// A `call_date` in `--date-format`, as `YYYY-MM-DD`.
    pub fn read_date(&self, text: &str, format: &str) -> Result<NaiveDate, String> {
        NaiveDate::parse_from_str(text.trim(), format).map_err(|_| {
            let example = NaiveDate::from_ymd_opt(2024, 3, 5).expect("a date");
            format!(
                "does not match --date-format {format:?} (5 March 2024 is {:?})",
                example.format(format).to_string()
            )
        })
    }

    /// A `call_time` in `--time-format`, as `hh:mm:ss`.
    pub fn read_time(&self, text: &str, format: &str) -> Result<NaiveTime, String> {
        NaiveTime::parse_from_str(text.trim(), format).map_err(|_| {
            let example = NaiveTime::from_hms_opt(14, 5, 0).expect("a time");
            format!(
                "does not match --time-format {format:?} (14:05 is {:?})",
                example.format(format).to_string()
            )
        })
    }

    /// A local date and time that `--timezone` has exactly once; `Err` names both readings of
    /// one it skips or repeats.
    pub fn exists_once(&self, local: NaiveDateTime, zone: Tz) -> Result<(), String> {
        let shown = local.format("%Y-%m-%d %H:%M:%S");
        match zone.from_local_datetime(&local) {
            LocalResult::Single(_) => Ok(()),
            LocalResult::Ambiguous(first, second) => Err(format!(
                "{shown} happens twice in {zone} (the clocks went back that night): as {} ({}) or as {} ({}); give the offset, e.g. {}",
                first.offset(),
                first.offset().fix(),
                second.offset(),
                second.offset().fix(),
                first.format("%Y-%m-%dT%H:%M:%S%:z")
            )),
            LocalResult::None => {
                let hours = chrono::Duration::hours(3);
                let before = zone.offset_from_utc_datetime(&(local - hours));
                let after = zone.offset_from_utc_datetime(&(local + hours));
                let reading = |offset: FixedOffset| {
                    let at = local - chrono::Duration::seconds(i64::from(offset.local_minus_utc()));
                    let there = zone.from_utc_datetime(&at);
                    format!("{} {}", there.format("%H:%M:%S"), there.offset())
                };
                Err(format!(
                    "{shown} does not exist in {zone} (the clocks went forward that night): read as {before} ({}) it is {}, read as {after} ({}) it is {}; give the offset, or check the time",
                    before.fix(),
                    reading(before.fix()),
                    after.fix(),
                    reading(after.fix()),
                ))
            }
        }
    }
}

/// A timestamp as read: an instant (it had an offset), or a local date and time.
enum Stamp {
    Instant(DateTime<FixedOffset>),
    Local(NaiveDateTime),
}

/// RFC 3339 / ISO 8601 with an offset, `YYYY-MM-DD hh:mm:ss` (or with `T`, fractions of a
/// second allowed) without one, or epoch seconds or milliseconds.
fn read_stamp(text: &str) -> Option<Stamp> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(Stamp::Instant(at));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(Stamp::Instant(at));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Stamp::Local(local));
        }
    }
    epoch(text).map(Stamp::Instant)
}

/// Epoch seconds (9 to 11 digits: 1973 to 5138) or milliseconds (12 to 14), in UTC.
fn epoch(text: &str) -> Option<DateTime<FixedOffset>> {
    let digits = text.split('.').next().unwrap_or_default();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    let millis = match digits.len() {
        9..=11 => value * 1000.0,
        12..=14 => value,
        _ => return None,
    };
    let at = DateTime::from_timestamp_millis(millis as i64)?;
    Some(at.fixed_offset())
}

/// Whether a format reads an offset (`%z` and its forms), so that what it reads is an instant.
fn has_offset(format: &str) -> bool {
    StrftimeItems::new(format).any(|item| {
        matches!(
            item,
            Item::Fixed(
                chrono::format::Fixed::TimezoneOffset
                    | chrono::format::Fixed::TimezoneOffsetColon
                    | chrono::format::Fixed::TimezoneOffsetDoubleColon
                    | chrono::format::Fixed::TimezoneOffsetTripleColon
                    | chrono::format::Fixed::TimezoneOffsetColonZ
                    | chrono::format::Fixed::TimezoneOffsetZ
                    | chrono::format::Fixed::RFC3339
            )
        )
    })
}

fn check_format(flag: &str, format: &str) -> anyhow::Result<()> {
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        anyhow::bail!(
            "{flag} {format:?} is not a strftime format chrono can read (e.g. \"%d/%m/%Y %H:%M\"); see https://docs.rs/chrono/latest/chrono/format/strftime/"
        );
    }
    Ok(())
}

/// An IANA zone name (`Europe/London`, any case); for one that is not, the closest names.
fn parse_zone(name: &str) -> anyhow::Result<Tz> {
    let name = name.trim();
    if let Ok(zone) = name.parse::<Tz>() {
        return Ok(zone);
    }
    if let Some(zone) = chrono_tz::TZ_VARIANTS
        .iter()
        .find(|zone| zone.name().eq_ignore_ascii_case(name))
    {
        return Ok(*zone);
    }
    let wanted = name.to_lowercase();
    let mut near: Vec<(usize, &str)> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|zone| {
            let candidate = zone.name().to_lowercase();
            // A city alone (`london`) is as good as its whole name.
            let city = candidate.rsplit('/').next().unwrap_or_default().to_string();
            let distance = super::rows::edit_distance(&wanted, &candidate)
                .min(super::rows::edit_distance(&wanted, &city));
            (distance, zone.name())
        })
        .collect();
    near.sort();
    let close: Vec<&str> = near
        .iter()
        .take_while(|(distance, _)| *distance <= near[0].0.max(1) + 1)
        .take(3)
        .map(|(_, name)| *name)
        .collect();
    anyhow::bail!(
        "--timezone {name:?} is not an IANA time zone name; did you mean {}? (names are like Europe/London or America/New_York)",
        close
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(format: Option<&str>, zone: Option<&str>) -> TimeSettings {
        TimeSettings::new(Some("start"), format, None, None, zone).unwrap()
    }

    fn read(settings: &TimeSettings, value: Value) -> Result<String, String> {
        settings
            .read_timestamp(&value)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    }

    fn text(value: &str) -> Value {
        Value::String(value.into())
    }

    #[test]
    fn without_a_zone_a_timestamp_keeps_its_own_local_date_and_time() {
        let plain = settings(None, None);
        for (given, local) in [
            ("2024-03-10T14:05:09Z", "2024-03-10 14:05:09"),
            ("2024-03-10T23:30:00-05:00", "2024-03-10 23:30:00"),
            ("2024-03-10 14:05:09.250+01:00", "2024-03-10 14:05:09"),
            ("2024-03-10 14:05:09", "2024-03-10 14:05:09"),
            ("2024-03-10T14:05:09", "2024-03-10 14:05:09"),
        ] {
            assert_eq!(read(&plain, text(given)), Ok(local.into()), "{given}");
        }
    }

    #[test]
    fn epoch_seconds_and_milliseconds_are_instants_in_utc() {
        let plain = settings(None, None);
        assert_eq!(
            read(&plain, text("1714564800")),
            Ok("2024-05-01 12:00:00".into())
        );
        assert_eq!(
            read(&plain, json_number(1_714_564_800_123)),
            Ok("2024-05-01 12:00:00".into())
        );
        let london = settings(None, Some("Europe/London"));
        assert_eq!(
            read(&london, text("1714564800")),
            Ok("2024-05-01 13:00:00".into())
        );
        assert!(
            read(&plain, text("2024")).is_err(),
            "a year is not an epoch"
        );
        assert!(read(&plain, text("12345678901234567")).is_err());
    }

    fn json_number(n: i64) -> Value {
        Value::Number(n.into())
    }

    #[test]
    fn an_instant_is_converted_to_the_zones_local_time_across_both_dst_changes() {
        let london = settings(None, Some("Europe/London"));
        // Spring forward: 2024-03-31 01:00 GMT becomes 02:00 BST.
        assert_eq!(
            read(&london, text("2024-03-31T00:59:59Z")),
            Ok("2024-03-31 00:59:59".into())
        );
        assert_eq!(
            read(&london, text("2024-03-31T01:00:00Z")),
            Ok("2024-03-31 02:00:00".into())
        );
        // Fall back: 2024-10-27 02:00 BST becomes 01:00 GMT.
        assert_eq!(
            read(&london, text("2024-10-27T00:30:00Z")),
            Ok("2024-10-27 01:30:00".into())
        );
        assert_eq!(
            read(&london, text("2024-10-27T01:30:00Z")),
            Ok("2024-10-27 01:30:00".into())
        );
        let new_york = settings(None, Some("America/New_York"));
        assert_eq!(
            read(&new_york, text("2024-03-10T07:30:00Z")),
            Ok("2024-03-10 03:30:00".into()),
            "EDT from 2024-03-10 07:00 UTC"
        );
        assert_eq!(
            read(&new_york, text("2024-11-03T05:30:00Z")),
            Ok("2024-11-03 01:30:00".into())
        );
        assert_eq!(
            read(&new_york, text("2024-11-03T06:30:00Z")),
            Ok("2024-11-03 01:30:00".into()),
            "the repeated hour, read from an instant, is no error"
        );
    }

    #[test]
    fn a_local_time_the_zone_skips_or_repeats_is_an_error_naming_both_readings() {
        let london = settings(None, Some("Europe/London"));
        assert_eq!(
            read(&london, text("2024-03-31 01:30:00")),
            Err("2024-03-31 01:30:00 does not exist in Europe/London (the clocks went forward that night): read as GMT (+00:00) it is 02:30:00 BST, read as BST (+01:00) it is 00:30:00 GMT; give the offset, or check the time".into())
        );
        assert_eq!(
            read(&london, text("2024-10-27 01:30:00")),
            Err("2024-10-27 01:30:00 happens twice in Europe/London (the clocks went back that night): as BST (+01:00) or as GMT (+00:00); give the offset, e.g. 2024-10-27T01:30:00+01:00".into())
        );
        let new_york = settings(None, Some("America/New_York"));
        assert!(
            read(&new_york, text("2024-03-10 02:30:00"))
                .unwrap_err()
                .contains("does not exist in America/New_York")
        );
        assert!(
            read(&new_york, text("2024-11-03 01:30:00")).unwrap_err().contains(
                "happens twice in America/New_York (the clocks went back that night): as EDT (-04:00) or as EST (-05:00)"
            )
        );
        // With an offset, the same times are instants, and fine.
        assert_eq!(
            read(&london, text("2024-10-27T01:30:00+00:00")),
            Ok("2024-10-27 01:30:00".into())
        );
        assert_eq!(
            read(&london, text("2024-03-31 03:00:00")),
            Ok("2024-03-31 03:00:00".into())
        );
    }

    #[test]
    fn a_timestamp_format_reads_what_the_export_writes() {
        let us = settings(Some("%m/%d/%Y %I:%M %p"), None);
        assert_eq!(
            read(&us, text("03/05/2024 2:05 PM")),
            Ok("2024-03-05 14:05:00".into())
        );
        assert_eq!(
            read(&us, text("2024-03-05 14:05")),
            Err("does not match --timestamp-format \"%m/%d/%Y %I:%M %p\"".into())
        );
        let with_offset = settings(Some("%d.%m.%Y %H:%M:%S %z"), Some("Europe/London"));
        assert_eq!(
            read(&with_offset, text("31.03.2024 03:30:00 +0200")),
            Ok("2024-03-31 02:30:00".into())
        );
    }

    #[test]
    fn formats_and_zones_that_cannot_work_are_usage_errors() {
        let err = |column, ts, date, time, zone| {
            format!(
                "{:#}",
                TimeSettings::new(column, ts, date, time, zone).unwrap_err()
            )
        };
        assert!(
            err(Some("t"), Some("%Y-%m-%d"), None, None, None)
                .contains("does not give both a date and a time")
        );
        assert!(err(Some("t"), Some("%Q"), None, None, None).contains("not a strftime format"));
        assert!(
            err(None, Some("%Y"), None, None, None)
                .contains("--timestamp-column, which is not given")
        );
        assert!(err(Some("t"), None, Some("%d/%m/%Y"), None, None).contains("fills both"));
        assert!(err(None, None, Some("%d/%m"), None, None).contains("does not give a whole date"));
        assert_eq!(
            err(None, None, None, None, Some("Europe/Londn")),
            "--timezone \"Europe/Londn\" is not an IANA time zone name; did you mean \"Europe/London\"? (names are like Europe/London or America/New_York)"
        );
        assert!(err(None, None, None, None, Some("New York")).contains("\"America/New_York\""));
        assert_eq!(
            TimeSettings::new(None, None, None, None, Some("europe/london"))
                .unwrap()
                .timezone,
            Some(chrono_tz::Europe::London)
        );
    }

    #[test]
    fn separate_columns_in_other_forms_are_read_with_their_formats() {
        let plain = TimeSettings::default();
        assert_eq!(
            plain.read_date("05/03/2024", "%d/%m/%Y"),
            NaiveDate::from_ymd_opt(2024, 3, 5).ok_or(String::new())
        );
        assert_eq!(
            plain.read_time("2:05 PM", "%I:%M %p"),
            NaiveTime::from_hms_opt(14, 5, 0).ok_or(String::new())
        );
        assert_eq!(
            plain.read_date("2024-03-05", "%d/%m/%Y"),
            Err(
                "does not match --date-format \"%d/%m/%Y\" (5 March 2024 is \"05/03/2024\")".into()
            )
        );
    }
}

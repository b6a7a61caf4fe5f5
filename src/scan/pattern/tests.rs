use super::*;

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The captured values as `name=value` pairs.
fn captured(text: &str, path: &str) -> Vec<String> {
    let pattern = pattern(text);
    let values = pattern
        .matches(path)
        .unwrap_or_else(|why| panic!("{path} should match {text}: {why}"));
    pattern
        .fields()
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

fn reason(text: &str, path: &str) -> String {
    match pattern(text).matches(path) {
        Ok(values) => panic!("{path} should not match {text}, but gave {values:?}"),
        Err(why) => why,
    }
}

/// (column, message) of a pattern that is refused.
fn refused(text: &str) -> (usize, String) {
    let error = Pattern::parse(text).expect_err(text);
    (error.column, error.message)
}

const EXPORT: &str = "{call_date:%Y%m%d}_{call_time:%H%M%S}_{agent}_{direction}.wav";
const DATED: &str = "{call_date:%Y/%m/%d}/{agent}-{*}.mp3";

#[test]
fn fields_dates_and_times_come_out_in_the_manifests_forms() {
    assert_eq!(
        captured(EXPORT, "20240305_140509_ann_inbound.wav"),
        [
            "call_date=2024-03-05",
            "call_time=14:05:09",
            "agent=ann",
            "direction=inbound"
        ]
    );
    assert_eq!(
        captured(
            "{call_date:%d.%m.%y} {call_time:%I-%M %p} {team}.wav",
            "05.03.24 02-05 PM north.wav"
        ),
        ["call_date=2024-03-05", "call_time=14:05:00", "team=north"]
    );
    assert_eq!(
        captured("{call_date:%d %b %Y}/{agent}.wav", "05 Mar 2024/ann.wav"),
        ["call_date=2024-03-05", "agent=ann"]
    );
}

#[test]
fn call_date_and_call_time_without_a_format_are_read_in_the_manifests_forms() {
    assert_eq!(
        captured("{call_date}/{call_time}.wav", "2024-03-05/14:05:09.wav"),
        ["call_date=2024-03-05", "call_time=14:05:09"]
    );
    assert_eq!(
        reason("{call_date}/{agent}.wav", "20240305/ann.wav"),
        r#"call_date: expected a date as %Y-%m-%d (like "2026-11-28"), found "20240305/ann.wav""#
    );
}

#[test]
fn a_date_format_with_slashes_spans_folders_and_others_stay_in_one_name() {
    assert_eq!(
        captured(DATED, "2024/03/05/ann-lee-0001.mp3"),
        ["call_date=2024-03-05", "agent=ann-lee"]
    );
    assert_eq!(
        captured("{team}/{agent}.wav", "north/ann.wav"),
        ["team=north", "agent=ann"]
    );
    assert_eq!(
        reason("{agent}.wav", "north/ann.wav"),
        "is 1 folder deep, but the pattern is 0 folders deep"
    );
}

#[test]
fn a_field_takes_as_much_as_the_rest_of_the_pattern_leaves_it() {
    assert_eq!(
        captured("{agent}_{direction}.wav", "ann_lee_outbound.wav"),
        ["agent=ann_lee", "direction=outbound"]
    );
    // The direction must be one: so the split is where it is.
    assert_eq!(
        captured("{agent}_{direction}_{ticket}.wav", "ann_inbound_T_1.wav"),
        ["agent=ann", "direction=inbound", "ticket=T_1"]
    );
    assert_eq!(
        captured("{speakers}x{agent}.wav", "2xann.wav"),
        ["speakers=2", "agent=ann"]
    );
}

#[test]
fn star_matches_anything_within_one_name_even_nothing() {
    let star = "{agent}-{*}.mp3";
    assert_eq!(captured(star, "ann-.mp3"), ["agent=ann"]);
    assert_eq!(captured(star, "ann-x-y z.mp3"), ["agent=ann-x"]);
    assert_eq!(
        reason("{*}.mp3", "a/b.mp3"),
        "is 1 folder deep, but the pattern is 0 folders deep"
    );
    assert_eq!(captured("{*}{*}.wav", "a.wav"), Vec::<String>::new());
}

#[test]
fn double_star_matches_across_folders_and_double_star_slash_any_number_of_folders() {
    for path in ["ann.wav", "a/ann.wav", "a/b/c/ann.wav"] {
        assert_eq!(captured("{**}/{agent}.wav", path), ["agent=ann"], "{path}");
    }
    assert_eq!(
        captured("{team}{**}.wav", "north/2024/x.wav"),
        ["team=north"]
    );
    assert_eq!(
        reason("{**}/{agent}.wav", "a/b/ann.mp3"),
        r#"does not end with ".wav""#
    );
}

#[test]
fn literal_text_matches_exactly_and_braces_are_doubled() {
    assert_eq!(captured("{{{agent}}}.WAV", "{ann}.WAV"), ["agent=ann"]);
    assert_eq!(
        reason("{agent}.WAV", "ann.wav"),
        r#"does not end with ".WAV""#
    );
    assert_eq!(
        reason("calls/{agent}.wav", "Calls/ann.wav"),
        r#"does not start with "calls/""#
    );
}

#[test]
fn a_value_of_the_right_shape_that_the_manifest_refuses_is_named() {
    assert_eq!(
        reason(EXPORT, "20240305_250000_ann_inbound.wav"),
        r#"call_time "250000": not a valid time of day for %H%M%S"#
    );
    assert_eq!(
        reason(EXPORT, "20240230_140509_ann_inbound.wav"),
        r#"call_date "20240230": not a valid date for %Y%m%d"#
    );
    assert_eq!(
        reason(EXPORT, "20240305_140509_ann_sideways.wav"),
        r#"direction "sideways": expected one of inbound, outbound, internal"#
    );
    assert_eq!(
        reason("{speakers}_{agent}.wav", "0_ann.wav"),
        r#"speakers "0": expected a positive whole number"#
    );
    assert_eq!(
        reason(DATED, "2024/13/01/ann-1.mp3"),
        r#"call_date "2024/13/01": not a valid date for %Y/%m/%d"#
    );
}

#[test]
fn a_name_of_the_wrong_shape_says_which_part_of_the_pattern_failed() {
    assert_eq!(
        reason(EXPORT, "notes_about_calls.wav"),
        r#"call_date: expected a date as %Y%m%d (like "20261128"), found "notes_about_calls.wav""#
    );
    assert_eq!(
        reason(EXPORT, "20240305-140509_ann_inbound.wav"),
        r#"expected "_" after {call_date}, found "-140509_ann_inbound.wav""#
    );
    assert_eq!(
        reason(EXPORT, "20240305_1405_ann_inbound.wav"),
        r#"call_time: expected a time as %H%M%S (like "140509"), found "1405_ann_inbound.wav""#
    );
    assert_eq!(
        reason(EXPORT, "20240305_140509_ann.wav"),
        r#"expected "_" after {agent} before the end of "20240305_140509_ann.wav""#
    );
    assert_eq!(
        reason(DATED, "2024/03/05/ann.mp3"),
        r#"expected "-" after {agent} before the end of "ann.mp3""#
    );
    assert_eq!(
        reason(DATED, "notes.mp3"),
        "is 0 folders deep, but the pattern is 3 folders deep"
    );
}

#[test]
fn a_long_name_is_cut_short_in_a_reason() {
    let long = format!("x{}.wav", "a".repeat(100));
    let why = reason("{call_date:%Y%m%d}{*}.wav", &long);
    assert!(
        why.ends_with(r#"found "xaaaaaaaaaaaaaaaaaaaaaaa"…"#),
        "{why}"
    );
}

#[test]
fn bad_patterns_point_at_their_column() {
    let cases: &[(&str, usize, &str)] = &[
        ("{call_date:%Y%m%d}_{agent", 20, "this { is never closed"),
        ("{agent}}.wav", 8, "this } closes no {"),
        (
            "{agent}_{agent}.wav",
            10,
            "{agent} is already captured at column 1",
        ),
        (
            "{call_date:%Y%Q}.wav",
            14,
            "\"%Q\" is not a strftime specifier chrono can read",
        ),
        ("{call_date:%Y%m}.wav", 12, "does not give a whole date"),
        ("{call_time:%H}.wav", 12, "does not give a time of day"),
        (
            "{call_date:%Y%m%d%H}.wav",
            18,
            "{call_date} reads a date only",
        ),
        (
            "{call_time:%d%H%M}.wav",
            12,
            "{call_time} reads a time of day only",
        ),
        (
            "{call_date:%Y%m%d%z}.wav",
            18,
            "a zone or an offset cannot be read",
        ),
        (
            "{agent:%Y}.wav",
            7,
            "only call_date and call_time read a format",
        ),
        ("{}.wav", 2, "a field needs a name"),
        ("{a/b}.wav", 3, "'/' cannot be in a field's name"),
        ("{*x}.wav", 2, "{*} and {**} stand alone"),
        (
            "{file}.wav",
            2,
            "file is the column scan writes each path into",
        ),
        ("{call_date:}.wav", 12, "the format of {call_date} is empty"),
        ("{ag{ent}.wav", 4, "a { inside a field"),
        ("/calls/{agent}.wav", 1, "relative to the folder scanned"),
        ("calls/", 6, "it could only match folders"),
        ("", 1, "the pattern is empty"),
    ];
    for (text, column, message) in cases {
        let (got_column, got) = refused(text);
        assert!(got.contains(message), "{text}: {got}");
        assert_eq!(got_column, *column, "{text}: {got}");
    }
}

#[test]
fn a_pattern_error_shows_the_pattern_with_a_caret_under_the_column() {
    let error = Pattern::parse("{call_date:%Y%m%d}_{agent").unwrap_err();
    assert_eq!(
        error.to_string(),
        "--pattern, column 20: this { is never closed (a literal brace is written {{)\n  {call_date:%Y%m%d}_{agent\n                     ^"
    );
}

#[test]
fn custom_fields_are_any_name_and_a_near_miss_of_a_reserved_key_is_hinted() {
    let ok = pattern("{crm ticket}_{agnet}_{team.name}.wav");
    assert_eq!(ok.fields(), ["crm ticket", "agnet", "team.name"]);
    assert_eq!(
        ok.hints(),
        [
            r#"--pattern, column 15: {agnet} is written as a custom column "agnet"; did you mean {agent}?"#
        ]
    );
    assert!(pattern("{team}_{agent}.wav").hints().is_empty());
}

#[test]
fn a_pattern_without_fields_matches_paths_and_captures_nothing() {
    assert_eq!(
        captured("calls/{*}.wav", "calls/a.wav"),
        Vec::<String>::new()
    );
}

#[test]
fn non_ascii_names_are_matched_by_character() {
    assert_eq!(captured("{agent}-{*}.wav", "José-ü.wav"), ["agent=José"]);
    assert_eq!(
        reason("{call_date:%Y%m%d}_{agent}.wav", "2024é_x.wav"),
        r#"call_date: expected a date as %Y%m%d (like "20261128"), found "2024é_x.wav""#
    );
}

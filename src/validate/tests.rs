//! The rules as a user meets them: whole manifests (in temporary folders with real files)
//! through `check_manifest`, one test per rule, plus the exact call-1 bodies.

use std::ops::ControlFlow;
use std::path::PathBuf;

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;
use crate::manifest::Format;
use crate::validate::TimeSettings;

/// The manifest flags as a test gives them (what the command line's `ManifestArgs` holds).
#[derive(Clone, Debug)]
struct ManifestArgs {
    manifest: PathBuf,
    format: Option<Format>,
    base_dir: Option<PathBuf>,
    map: Vec<String>,
    set: Vec<String>,
}

/// [`super::check_manifest`] from the flags, as `validate` and `upload` get there: a flag that
/// cannot work is the pass's error.
fn check_manifest(
    args: &ManifestArgs,
    today: NaiveDate,
    visit: impl FnMut(Verdict) -> ControlFlow<()>,
) -> anyhow::Result<Summary> {
    let settings = ManifestSettings::new(
        &args.manifest,
        args.format,
        args.base_dir.as_deref(),
        &args.map,
        &args.set,
    )?;
    super::check_manifest(&settings, today, visit)
}

const WAV: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00";
const MP3: &[u8] = b"ID3\x04\x00\x00\x00\x00\x00\x00\xFF\xFB\x90\x64";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}

/// A temporary folder holding a manifest and its audio files.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for name in ["a.wav", "b.wav", "c.wav", "d.wav"] {
            fixture.file(&format!("calls/{name}"), WAV);
        }
        fixture
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn args(&self, manifest: &str, contents: &[u8]) -> ManifestArgs {
        ManifestArgs {
            manifest: self.file(manifest, contents),
            format: None,
            base_dir: None,
            map: Vec::new(),
            set: Vec::new(),
        }
    }
}

/// Every verdict of a pass, and its summary.
fn check(args: &ManifestArgs) -> (Vec<Verdict>, Summary) {
    let mut verdicts = Vec::new();
    let summary = check_manifest(args, today(), |v| {
        verdicts.push(v);
        ControlFlow::Continue(())
    })
    .expect("the manifest can be read");
    (verdicts, summary)
}

/// Every problem of a pass as `LINE: problem`, in order.
fn problems(args: &ManifestArgs) -> Vec<String> {
    check(args)
        .0
        .iter()
        .flat_map(|v| v.problems().to_vec())
        .map(|p| format!("{}: {p}", p.line))
        .collect()
}

fn csv(fixture: &Fixture, text: &str) -> ManifestArgs {
    fixture.args("m.csv", text.as_bytes())
}

fn jsonl(fixture: &Fixture, text: &str) -> ManifestArgs {
    fixture.args("m.jsonl", text.as_bytes())
}

const HEADER: &str = "file,channel_id,call_date,call_time,agent";

fn bodies(verdicts: &[Verdict]) -> Vec<Value> {
    verdicts
        .iter()
        .filter_map(|v| match v {
            Verdict::Valid { row, .. } => Some(Value::Object(row.body.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_clean_manifest_gives_valid_rows_in_order_and_a_clean_summary() {
    let f = Fixture::new();
    let args = csv(
        &f,
        &format!(
            "{HEADER}\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\ncalls/b.wav,1,2025-01-02,10:05:00,Bo\n"
        ),
    );
    let (verdicts, summary) = check(&args);
    let lines: Vec<u64> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Valid { row, warnings } => {
                assert!(warnings.is_empty());
                assert_eq!(row.format, Some(AudioFormat::Wav));
                assert_eq!(row.size, WAV.len() as u64);
                assert_eq!(row.path, f.dir.path().join("calls").join(&row.file[6..]));
                row.line
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines, [2, 3]);
    assert!(summary.is_valid());
    assert_eq!(summary.to_string(), "2 rows checked: all valid, 0 warnings");
}

#[test]
fn the_csv_body_is_exactly_what_call_1_sends() {
    let f = Fixture::new();
    let mut args = csv(
        &f,
        " file , channel_id ,call_date,call_time,agent,Direction,speakers,team,language,notes\n\
         \u{20}calls/a.wav , 42 ,2025-01-02,10:00:00, Ann Lee ,OutBound, 3 ,,,\"Refund, approved\"\n\
         calls/b.wav,,2025-01-02,10:05:00,Bo,inbound,,north,fr,\n",
    );
    args.map = vec!["Direction=direction".into()];
    args.set = vec!["channel_id=7".into(), "source=pbx".into()];
    let (verdicts, summary) = check(&args);
    assert!(summary.is_valid(), "{verdicts:?}");
    let bodies: Vec<Vec<u8>> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Valid { row, .. } => serde_json::to_vec(&row.body).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        String::from_utf8(bodies[0].clone()).unwrap(),
        r#"{"channel_id":"42","call_date":"2025-01-02","call_time":"10:00:00","agent":"Ann Lee","direction":"outbound","speakers":3,"notes":"Refund, approved","source":"pbx"}"#
    );
    assert_eq!(
        String::from_utf8(bodies[1].clone()).unwrap(),
        r#"{"channel_id":"7","call_date":"2025-01-02","call_time":"10:05:00","agent":"Bo","direction":"inbound","team":"north","language":"fr","source":"pbx"}"#
    );
}

#[test]
fn the_jsonl_body_keeps_json_types_and_nested_objects() {
    let f = Fixture::new();
    let args = jsonl(
        &f,
        r#"{"channel_id": 42, "file": "calls/a.wav", "call_date": "2025-01-02", "call_time": "10:00:00", "agent": "Ann", "speakers": "2", "direction": "INTERNAL", "crm": {"id": 7, "tags": ["vip"]}, "paid": true, "score": 4.5, "empty": "", "gone": null}"#,
    );
    let (verdicts, _) = check(&args);
    assert_eq!(
        bodies(&verdicts),
        [json!({
            "channel_id": 42, "call_date": "2025-01-02", "call_time": "10:00:00", "agent": "Ann",
            "speakers": 2, "direction": "internal", "crm": {"id": 7, "tags": ["vip"]},
            "paid": true, "score": 4.5
        })]
    );
    let Verdict::Valid { row, .. } = &verdicts[0] else {
        panic!()
    };
    assert_eq!(row.file, "calls/a.wav");
    let keys: Vec<&str> = row.body.keys().map(String::as_str).collect();
    assert_eq!(keys[..2], ["channel_id", "call_date"], "manifest order");
}

#[test]
fn a_missing_file_column_is_one_error_on_the_header_line() {
    let f = Fixture::new();
    let args = csv(
        &f,
        "recording,channel_id,call_date,call_time,agent\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\ncalls/b.wav,1,2025-01-02,10:00:00,Bo\n",
    );
    let (verdicts, summary) = check(&args);
    let all: Vec<String> = verdicts
        .iter()
        .flat_map(|v| v.problems().to_vec())
        .map(|p| format!("{}: {p}", p.line))
        .collect();
    assert_eq!(
        all,
        [
            r#"1: file: required, but no column has that name: it holds each row's audio path (rename the column, or pass --map COLUMN=file); the columns are "recording", "channel_id", "call_date", "call_time", "agent""#
        ]
    );
    assert!(matches!(verdicts[1], Verdict::Invalid { ref problems, .. } if problems.is_empty()));
    assert_eq!(summary.manifest_errors, 1);
    assert_eq!(summary.valid_rows, 0);
    assert_eq!(
        summary.to_string(),
        "2 rows checked: 1 problem in the manifest, 0 warnings"
    );
}

#[test]
fn a_missing_file_column_is_found_after_map() {
    let f = Fixture::new();
    let mut args = csv(
        &f,
        "recording,channel_id,call_date,call_time,agent\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\n",
    );
    args.map = vec!["recording=file".into()];
    let (_, summary) = check(&args);
    assert!(summary.is_valid());
}

#[test]
fn a_required_column_missing_is_one_error_not_one_per_row_unless_set_gives_it() {
    let f = Fixture::new();
    let text = "file,call_date,call_time,agent\ncalls/a.wav,2025-01-02,10:00:00,Ann\ncalls/b.wav,2025-01-02,10:00:00,Bo\n";
    let args = csv(&f, text);
    assert_eq!(
        problems(&args),
        [
            "1: channel_id: required, but no column has that name (add the column, or pass --map COLUMN=channel_id or --set channel_id=VALUE)"
        ]
    );
    let mut args = csv(&f, text);
    args.set = vec!["channel_id=9".into()];
    let (verdicts, summary) = check(&args);
    assert!(summary.is_valid());
    assert_eq!(bodies(&verdicts)[0]["channel_id"], "9");
}

#[test]
fn a_header_name_two_edits_from_a_reserved_key_gets_a_did_you_mean() {
    let f = Fixture::new();
    let args = csv(
        &f,
        "file,channel_id,call_dat,call_time,agent,Speakers\ncalls/a.wav,1,2025-01-02,10:00:00,Ann,2\n",
    );
    assert_eq!(
        problems(&args),
        [
            r#"1: call_dat: did you mean "call_date"? call_date is required, but no column has that name (rename the column or pass --map call_dat=call_date)"#,
            r#"1: warning: Speakers: did you mean "speakers"? as it is, it is sent as custom metadata (rename the column or pass --map Speakers=speakers)"#,
        ]
    );
    let args = csv(
        &f,
        "File,channel_id,call_date,call_time,agent\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\n",
    );
    assert_eq!(
        problems(&args),
        [
            r#"1: File: did you mean "file"? file is required, but no column has that name (rename the column or pass --map File=file)"#
        ]
    );
}

#[test]
fn a_jsonl_line_missing_a_required_key_says_so_on_that_line_with_a_hint() {
    let f = Fixture::new();
    let args = jsonl(
        &f,
        "{\"file\":\"calls/a.wav\",\"channel_id\":1,\"call_date\":\"2025-01-02\",\"call_time\":\"10:00:00\"}\n\
         {\"file\":\"calls/b.wav\",\"channel_id\":1,\"call_date\":\"2025-01-02\",\"call_time\":\"10:00:00\",\"agnet\":\"Bo\"}\n\
         {\"file\":\"calls/c.wav\",\"channel_id\":1,\"call_date\":\"2025-01-02\",\"call_time\":\"10:00:00\",\"agent\":\"Cy\",\"langauge\":\"en\"}\n\
         {\"file\":\"calls/d.wav\",\"channel_id\":1,\"call_date\":\"2025-01-02\",\"call_time\":\"10:00:00\",\"agent\":\"Di\",\"langauge\":\"en\"}\n",
    );
    assert_eq!(
        problems(&args),
        [
            "1: agent: required, but missing",
            r#"2: agnet: did you mean "agent"? agent is required, but this line has no such key (rename the key or pass --map agnet=agent)"#,
            r#"3: warning: langauge: did you mean "language"? as it is, it is sent as custom metadata (rename the key or pass --map langauge=language)"#,
        ]
    );
}

#[test]
fn required_values_must_not_be_empty() {
    let f = Fixture::new();
    let args = csv(
        &f,
        &format!("{HEADER}\ncalls/a.wav, ,2025-01-02,10:00:00,\n,1,2025-01-02,10:00:00,Bo\n"),
    );
    assert_eq!(
        problems(&args),
        [
            "2: channel_id: required, but empty",
            "2: agent: required, but empty",
            "3: file: required, but empty",
        ]
    );
}

#[test]
fn dates_times_directions_and_speakers_are_checked_on_their_row() {
    let f = Fixture::new();
    let args = csv(
        &f,
        "file,channel_id,call_date,call_time,agent,direction,speakers\n\
         calls/a.wav,1,2025-02-29,10:00:00,Ann,,\n\
         calls/b.wav,1,2025-01-02,10:60:00,Bo,,\n\
         calls/c.wav,1,2025-01-02,10:00:00,Cy,upward,2.5\n",
    );
    assert_eq!(
        problems(&args),
        [
            r#"2: call_date "2025-02-29": not a valid date, expected YYYY-MM-DD"#,
            r#"3: call_time "10:60:00": not a valid time of day, expected hh:mm:ss (00:00:00 to 23:59:59)"#,
            r#"4: direction "upward": expected one of inbound, outbound, internal"#,
            r#"4: speakers "2.5": expected a positive whole number"#,
        ]
    );
}

#[test]
fn every_file_problem_names_the_file_as_written() {
    let f = Fixture::new();
    f.file("calls/empty.wav", b"");
    f.file("calls/notes.wav", b"call notes: customer was happy");
    let args = csv(
        &f,
        &format!(
            "{HEADER}\ncalls/none.wav,1,2025-01-02,10:00:00,Ann\ncalls,1,2025-01-02,10:00:00,Ann\n\
             calls/empty.wav,1,2025-01-02,10:00:00,Ann\ncalls/notes.wav,1,2025-01-02,10:00:00,Ann\n"
        ),
    );
    let base = f.dir.path().join("calls");
    assert_eq!(
        problems(&args),
        [
            format!(
                r#"2: file "calls/none.wav": no such file (looked in {})"#,
                base.join("none.wav").display()
            ),
            format!(
                r#"3: file "calls": is a folder, not a file ({})"#,
                base.display()
            ),
            r#"4: file "calls/empty.wav": is empty (0 bytes)"#.to_string(),
            r#"5: file "calls/notes.wav": is not audio: its first bytes match no known audio format; it starts with text: "call notes: cust""#.to_string(),
        ]
    );
}

#[test]
fn relative_paths_resolve_against_base_dir_when_given() {
    let f = Fixture::new();
    let mut args = f.args(
        "lists/m.csv",
        format!("{HEADER}\na.wav,1,2025-01-02,10:00:00,Ann\n").as_bytes(),
    );
    assert_eq!(check(&args).1.errors, 1, "lists/a.wav does not exist");
    args.base_dir = Some(f.dir.path().join("calls"));
    assert!(check(&args).1.is_valid());
}

#[test]
fn the_same_file_listed_twice_is_an_error_on_the_later_row_naming_the_earlier() {
    let f = Fixture::new();
    let args = csv(
        &f,
        &format!(
            "{HEADER}\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\ncalls/b.wav,1,2025-01-02,10:00:00,Bo\n\
             ./calls/a.wav,1,2025-01-03,10:00:00,Ann\ncalls//b.wav,1,2025-01-03,10:00:00,Bo\n"
        ),
    );
    assert_eq!(
        problems(&args),
        [
            r#"4: file "./calls/a.wav": already listed on line 2"#,
            r#"5: file "calls//b.wav": already listed on line 3"#,
        ]
    );
}

#[test]
fn broken_rows_are_errors_for_their_line_and_checking_goes_on() {
    let f = Fixture::new();
    let mut text = format!("{HEADER}\ncalls/a.wav,1,2025-01-02,10:00:00\n").into_bytes();
    text.extend_from_slice(b"calls/b.wav,1,2025-01-02,10:00:00,Jos\xE9\n");
    text.extend_from_slice(b"calls/c.wav,1,2025-01-02,10:00:00,Cy,extra\n");
    text.extend_from_slice(b"calls/d.wav,1,2025-13-02,10:00:00,Di\n");
    let args = f.args("m.csv", &text);
    assert_eq!(
        problems(&args),
        [
            "2: this row has 4 fields, but the header has 5",
            "3: agent \"Jos\u{FFFD}\": not valid UTF-8 text; save the manifest as UTF-8 (it may be in Latin-1 or Windows-1252)",
            "4: this row has 6 fields, but the header has 5 (does a value with a comma lack its quotes?)",
            r#"5: call_date "2025-13-02": not a valid date, expected YYYY-MM-DD"#,
        ]
    );
}

#[test]
fn broken_jsonl_lines_are_errors_for_their_line_and_checking_goes_on() {
    let f = Fixture::new();
    let good = r#"{"file":"calls/a.wav","channel_id":1,"call_date":"2025-01-02","call_time":"10:00:00","agent":"Ann"}"#;
    let args = jsonl(
        &f,
        &format!("[\"calls/b.wav\"]\n\n{{\"file\": \"calls/c.wav\",\n{good}\n{{\"file\": 5}}\n"),
    );
    assert_eq!(
        problems(&args),
        [
            "1: expected a JSON object ({\"file\": …}), found an array",
            "3: not valid JSON: EOF while parsing a value (column 23)",
            "5: file \"5\": expected a path as a string, found a number",
            "5: channel_id: required, but missing",
            "5: call_date: required, but missing",
            "5: call_time: required, but missing",
            "5: agent: required, but missing",
        ]
    );
}

#[test]
fn a_manifest_without_rows_says_so() {
    let f = Fixture::new();
    for (name, text, expected) in [
        (
            "m.csv",
            &format!("{HEADER}\n\n")[..],
            "1: no rows: the manifest has a header but nothing below it",
        ),
        (
            "m.jsonl",
            "\n  \n",
            "1: no rows: the manifest has no JSON objects",
        ),
        (
            "m.csv",
            "",
            "1: the manifest is empty: no header and no rows",
        ),
    ] {
        let args = f.args(name, text.as_bytes());
        assert_eq!(problems(&args), [expected]);
        let (_, summary) = check(&args);
        assert!(!summary.is_valid());
        assert_eq!(summary.manifest_errors, 1);
    }
}

#[test]
fn a_manifest_in_utf_16_is_one_error_that_says_so() {
    let f = Fixture::new();
    let utf16: Vec<u8> = std::iter::once(0xFEFF_u16)
        .chain(HEADER.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect();
    let args = f.args("m.csv", &utf16);
    assert_eq!(
        problems(&args),
        [
            "1: the manifest is not UTF-8 text: it looks like UTF-16 (little-endian); save it as UTF-8"
        ]
    );
}

#[test]
fn a_header_that_repeats_a_name_is_an_error_and_no_row_is_valid() {
    let f = Fixture::new();
    let args = csv(
        &f,
        &format!("{HEADER},agent\ncalls/a.wav,1,2025-01-02,10:00:00,Ann,Bo\n"),
    );
    let (verdicts, summary) = check(&args);
    assert_eq!(
        verdicts[0].problems()[0].to_string(),
        "agent: the header names this column twice (columns 5 and 6)"
    );
    assert!(matches!(verdicts[1], Verdict::Invalid { .. }));
    assert_eq!(summary.valid_rows, 0);
}

#[test]
fn a_value_under_a_nameless_column_is_an_error_but_empty_ones_are_fine() {
    let f = Fixture::new();
    let args = csv(
        &f,
        &format!(
            "{HEADER},,\ncalls/a.wav,1,2025-01-02,10:00:00,Ann,,\ncalls/b.wav,1,2025-01-02,10:00:00,Bo,,x\n"
        ),
    );
    assert_eq!(
        problems(&args),
        [
            r#"3: column 7 "x": this column has no name in the header, so its value has nowhere to go"#
        ]
    );
}

#[test]
fn a_future_date_and_a_wrong_extension_are_only_warnings() {
    let f = Fixture::new();
    f.file("calls/song.wav", MP3);
    let args = csv(
        &f,
        &format!(
            "{HEADER}\ncalls/a.wav,1,2026-11-29,10:00:00,Ann\ncalls/song.wav,1,2025-01-02,10:00:00,Bo\n"
        ),
    );
    let (verdicts, summary) = check(&args);
    assert!(summary.is_valid());
    assert_eq!(summary.valid_rows, 2);
    assert_eq!(summary.to_string(), "2 rows checked: all valid, 2 warnings");
    let shown: Vec<String> = verdicts
        .iter()
        .flat_map(|v| v.problems().to_vec())
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        shown,
        [
            r#"warning: call_date "2026-11-29": date is in the future (today is 2026-11-28)"#,
            r#"warning: file "calls/song.wav": the extension .wav does not match the contents, which are MP3 (expected .mp3)"#,
        ]
    );
}

#[test]
fn a_map_naming_a_column_that_is_not_there_is_a_usage_error_naming_the_columns() {
    let f = Fixture::new();
    let mut args = csv(&f, &format!("{HEADER}\n"));
    args.map = vec!["recording=file".into()];
    let err = check_manifest(&args, today(), |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"--map recording=file: the manifest has no column "recording"; its columns are "file", "channel_id", "call_date", "call_time", "agent""#
    );
    let mut args = csv(&f, "recording,file\n");
    args.map = vec!["recording=file".into()];
    let err = check_manifest(&args, today(), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(
        err.to_string().contains("would both be named \"file\""),
        "{err}"
    );
}

#[test]
fn a_jsonl_key_renamed_onto_another_is_an_error_for_that_line() {
    let f = Fixture::new();
    let mut args = jsonl(
        &f,
        r#"{"file":"calls/a.wav","path":"calls/b.wav","channel_id":1,"call_date":"2025-01-02","call_time":"10:00:00","agent":"Ann"}"#,
    );
    args.map = vec!["path=file".into()];
    assert_eq!(
        problems(&args),
        [r#"1: file: given twice on this line (once as "path", renamed by --map)"#]
    );
    // The renamed key first: the message still names it, not the key that kept its name.
    let mut args = jsonl(
        &f,
        r#"{"path":"calls/b.wav","file":"calls/a.wav","channel_id":1,"call_date":"2025-01-02","call_time":"10:00:00","agent":"Ann"}"#,
    );
    args.map = vec!["path=file".into()];
    assert_eq!(
        problems(&args),
        [r#"1: file: given twice on this line (once as "path", renamed by --map)"#]
    );
}

#[test]
fn a_manifest_that_cannot_be_opened_is_an_error_that_names_it() {
    let f = Fixture::new();
    let args = ManifestArgs {
        manifest: f.dir.path().join("nope.csv"),
        format: None,
        base_dir: None,
        map: vec![],
        set: vec![],
    };
    let err = check_manifest(&args, today(), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(
        format!("{err:#}").starts_with("cannot read the manifest "),
        "{err:#}"
    );
    std::fs::create_dir(f.dir.path().join("folder.csv")).unwrap();
    let args = ManifestArgs {
        manifest: f.dir.path().join("folder.csv"),
        ..args
    };
    let err = check_manifest(&args, today(), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(
        format!("{err:#}").ends_with("is a folder, not a file"),
        "{err:#}"
    );
}

#[test]
fn verdicts_stream_in_manifest_order_across_batches_and_the_visitor_can_stop() {
    let f = Fixture::new();
    let rows = BATCH_ROWS * 2 + 7;
    let mut text = String::from(HEADER);
    text.push('\n');
    for i in 0..rows {
        f.file(&format!("many/{i}.wav"), WAV);
        text.push_str(&format!("many/{i}.wav,1,2025-01-02,10:00:00,Ann\n"));
    }
    let args = csv(&f, &text);
    let (verdicts, summary) = check(&args);
    let lines: Vec<u64> = verdicts
        .iter()
        .map(|v| match v {
            Verdict::Valid { row, .. } => row.line,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines, (2..rows as u64 + 2).collect::<Vec<_>>());
    assert_eq!(summary.valid_rows, rows as u64);

    let mut seen = 0;
    let summary = check_manifest(&args, today(), |_| {
        seen += 1;
        if seen == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!((seen, summary.rows, summary.stopped), (3, 3, true));
}

#[test]
fn a_row_s_problems_come_in_column_order_file_first() {
    let f = Fixture::new();
    let args = csv(
        &f,
        "speakers,agent,call_time,call_date,channel_id,file\nx,,25:00:00,2025-01-32,1,calls/none.wav\n",
    );
    let columns: Vec<String> = check(&args).0[0]
        .problems()
        .iter()
        .map(|p| p.column.clone().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["file", "speakers", "agent", "call_time", "call_date"]
    );
}

#[test]
fn the_summary_counts_problems_rows_and_warnings_in_words() {
    let summary = Summary {
        rows: 12,
        rows_with_errors: 6,
        errors: 8,
        manifest_errors: 1,
        warnings: 1,
        ..Summary::default()
    };
    assert_eq!(
        summary.to_string(),
        "12 rows checked: 8 problems (1 in the manifest, 7 in 6 rows), 1 warning"
    );
    let summary = Summary {
        rows: 1,
        rows_with_errors: 1,
        errors: 1,
        ..Summary::default()
    };
    assert_eq!(
        summary.to_string(),
        "1 row checked: 1 problem in 1 row, 0 warnings"
    );
}

#[test]
fn the_format_flag_overrides_the_extension() {
    let f = Fixture::new();
    let mut args = f.args(
        "export.txt",
        br#"{"file":"calls/a.wav","channel_id":1,"call_date":"2025-01-02","call_time":"10:00:00","agent":"Ann"}"#,
    );
    args.format = Some(Format::Jsonl);
    assert!(check(&args).1.is_valid());
}

#[cfg(unix)]
#[test]
fn special_files_long_fields_and_nul_bytes_do_not_stop_the_run() {
    let f = Fixture::new();
    let fifo = f.dir.path().join("calls/pipe.wav");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("loop.wav", f.dir.path().join("calls/loop.wav")).unwrap();
    let long = "x".repeat(1 << 20);
    let args = csv(
        &f,
        &format!(
            "{HEADER},notes\ncalls/pipe.wav,1,2025-01-02,10:00:00,Ann,\ncalls/loop.wav,1,2025-01-02,10:00:00,Ann,\n\
             calls/a.wav,1,2025-01-02,10:00:00,Ann,{long}\ncalls/b\0.wav,1,2025-01-02,10:00:00,A\0n,\n"
        ),
    );
    let (verdicts, summary) = check(&args);
    assert_eq!(summary.rows, 4);
    let shown: Vec<String> = verdicts
        .iter()
        .flat_map(|v| v.problems().to_vec())
        .map(|p| p.to_string())
        .collect();
    assert!(
        shown[0].contains("is a named pipe, not a regular file"),
        "{shown:?}"
    );
    assert!(
        shown[1].contains("too many levels of symbolic links"),
        "{shown:?}"
    );
    // A value this long is a broken manifest (a quote left open), not call metadata.
    assert!(
        shown[2].starts_with("this row is 1.0 MiB long"),
        "{shown:?}"
    );
    assert!(
        shown[3].starts_with(r#"file "calls/b\0.wav": holds a NUL byte"#),
        "{shown:?}"
    );
    assert_eq!(shown.len(), 4);
    assert!(bodies(&verdicts).is_empty());
}

mod arbitrary_bytes {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that are often CSV- or JSON-like, to reach past the first parse error.
    fn manifest_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"file".to_vec()),
            Just(b"channel_id".to_vec()),
            Just(b"call_date".to_vec()),
            Just(b"calls/a.wav".to_vec()),
            Just(b"2025-01-02".to_vec()),
            Just(b"10:00:00".to_vec()),
            Just(b",".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"{\"file\":".to_vec()),
            Just(b"}".to_vec()),
            Just(b"\xEF\xBB\xBF".to_vec()),
            Just(b"\xFF\xFE".to_vec()),
            Just(b"\0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec(piece, 0..64).prop_map(|p| p.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        #[test]
        fn no_bytes_make_the_checker_panic_and_every_input_gets_an_answer(
            bytes in manifest_bytes(),
            as_jsonl in any::<bool>(),
        ) {
            let f = Fixture::new();
            let args = f.args(if as_jsonl { "m.jsonl" } else { "m.csv" }, &bytes);
            let mut verdicts = Vec::new();
            let summary = check_manifest(&args, today(), |v| {
                verdicts.push(v);
                ControlFlow::Continue(())
            });
            let summary = match summary {
                Ok(summary) => summary,
                // Only a usage error may come back, and the checker gave none here.
                Err(e) => return Err(TestCaseError::fail(format!("{e:#}"))),
            };
            prop_assert!(!verdicts.is_empty(), "no rows and no problems");
            let rows = verdicts.iter().filter(|v| !matches!(v, Verdict::Manifest(_) | Verdict::Empty(_))).count();
            prop_assert_eq!(summary.rows, rows as u64);
            prop_assert_eq!(summary.valid_rows + summary.invalid_rows, summary.rows);
            let mut last = 0;
            for v in &verdicts {
                if let Verdict::Invalid { problems, .. } = v {
                    prop_assert!(!problems.is_empty() || summary.manifest_errors > 0);
                }
                let line = match v {
                    Verdict::Valid { row, .. } => row.line,
                    Verdict::Invalid { line, .. } | Verdict::OtherShard { line, .. } => *line,
                    Verdict::Manifest(_) | Verdict::Empty(_) => continue,
                };
                prop_assert!(line > last, "rows in line order");
                last = line;
            }
        }
    }
}

#[test]
fn a_header_with_tens_of_thousands_of_columns_is_checked_quickly() {
    let f = Fixture::new();
    let names: Vec<String> = (0..50_000).map(|i| format!("c{i}")).collect();
    let args = csv(&f, &format!("{},c7\n", names.join(",")));
    let shown = problems(&args);
    assert!(
        shown.contains(
            &"1: c7: the header names this column twice (columns 8 and 50001)".to_string()
        ),
        "{:?}",
        &shown[..shown.len().min(3)]
    );
}

#[cfg(unix)]
#[test]
fn a_manifest_that_is_a_symlink_loop_is_an_error_not_a_hang() {
    let f = Fixture::new();
    let path = f.dir.path().join("loop.csv");
    std::os::unix::fs::symlink("loop.csv", &path).unwrap();
    let args = ManifestArgs {
        manifest: path,
        format: None,
        base_dir: None,
        map: vec![],
        set: vec![],
    };
    let err = check_manifest(&args, today(), |_| ControlFlow::Continue(())).unwrap_err();
    assert!(format!("{err:#}").contains("symbolic links"), "{err:#}");
}

#[test]
fn a_row_whose_cells_cannot_all_be_read_still_names_its_file_where_that_is_safe() {
    let fixture = Fixture::new();
    // Rows 2 and 3: a field too many, a field too few; the file column is first, so its value
    // is the row's first field as written. Row 4: a Latin-1 byte in another column. In
    // moved.csv the file column is last and the row has a field too many: which field is the
    // file cannot be known, so none is named.
    let mut text = format!(
        "{HEADER}\ncalls/a.wav,1,2024-01-01,10:00:00,Ann,extra\n\
         1,2024-01-01,10:00:00,Ann\ncalls/c.wav,1,2024-01-01,10:00:00,Jos"
    )
    .into_bytes();
    text.extend_from_slice(b"\xe9\n");
    let moved = fixture.args(
        "moved.csv",
        b"channel_id,call_date,call_time,agent,file\n1,2024-01-01,10:00:00,A,B,calls/b.wav\n",
    );
    let files = |args: &ManifestArgs| -> Vec<Option<String>> {
        check(args)
            .0
            .into_iter()
            .filter_map(|v| match v {
                Verdict::Invalid { file, .. } => Some(file),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        files(&fixture.args("m.csv", &text)),
        [
            Some("calls/a.wav".to_string()),
            Some("1".to_string()),
            Some("calls/c.wav".to_string())
        ]
    );
    assert_eq!(files(&moved), [None]);
}

#[test]
fn speakers_written_with_a_decimal_point_is_sent_as_a_whole_number() {
    let fixture = Fixture::new();
    let args = csv(
        &fixture,
        &format!("{HEADER},speakers\ncalls/a.wav,1,2024-01-01,10:00:00,Ann,2.0\n"),
    );
    let (verdicts, summary) = check(&args);
    assert_eq!(summary.errors, 0, "{summary}");
    assert_eq!(bodies(&verdicts)[0]["speakers"], serde_json::json!(2));
}

#[test]
fn a_semicolon_separated_manifest_is_one_error_that_says_so() {
    let fixture = Fixture::new();
    let args = csv(
        &fixture,
        "file;channel_id;call_date;call_time;agent\ncalls/a.wav;1;2024-01-01;10:00:00;Ann\n",
    );
    assert_eq!(
        problems(&args),
        [
            r#"1: the header is one column, "file;channel_id;call_date;call_time;agent": the manifest looks separated by semicolons (';'), and a CSV manifest is separated by commas; save it as CSV with commas, or as JSONL"#
        ]
    );
}

/// Every verdict of `text` as a manifest named `name`, read with `times`.
fn with_times(fixture: &Fixture, name: &str, text: &str, times: TimeSettings) -> Vec<Verdict> {
    let path = fixture.file(name, text.as_bytes());
    let settings = ManifestSettings::new(&path, None, None, &[], &[])
        .unwrap()
        .with_times(times);
    let mut verdicts = Vec::new();
    super::check_manifest(&settings, today(), |v| {
        verdicts.push(v);
        ControlFlow::Continue(())
    })
    .unwrap();
    verdicts
}

fn lines_of(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .flat_map(|v| v.problems().to_vec())
        .map(|p| format!("{}: {p}", p.line))
        .collect()
}

fn times(
    column: Option<&str>,
    date: Option<&str>,
    time: Option<&str>,
    zone: Option<&str>,
) -> TimeSettings {
    TimeSettings::new(column, None, date, time, zone).unwrap()
}

#[test]
fn a_timestamp_column_fills_call_date_and_call_time_and_is_not_sent() {
    let f = Fixture::new();
    let verdicts = with_times(
        &f,
        "m.csv",
        "file,channel_id,started,agent,team\n\
         calls/a.wav,1,2024-03-31T01:30:00Z,Ann,north\n\
         calls/b.wav,1,1714564800,Bo,south\n\
         calls/c.wav,1,31/03/2024 01:30,Cy,east\n\
         calls/d.wav,1,,Di,west\n",
        times(Some("started"), None, None, Some("Europe/London")),
    );
    let Verdict::Valid { row, .. } = &verdicts[0] else {
        panic!("{verdicts:?}");
    };
    assert_eq!(row.body["call_date"], "2024-03-31");
    assert_eq!(row.body["call_time"], "02:30:00", "01:30 UTC is 02:30 BST");
    assert!(
        !row.body.contains_key("started"),
        "the timestamp itself is not sent"
    );
    assert_eq!(row.body["team"], "north");
    let Verdict::Valid { row, .. } = &verdicts[1] else {
        panic!("{verdicts:?}");
    };
    assert_eq!(
        (&row.body["call_date"], &row.body["call_time"]),
        (&json!("2024-05-01"), &json!("13:00:00"))
    );
    assert_eq!(
        lines_of(&verdicts[2..]),
        [
            "4: started \"31/03/2024 01:30\": not a timestamp: expected RFC 3339 with Z or an offset (2024-03-10T14:05:00Z), YYYY-MM-DD hh:mm:ss, or epoch seconds or milliseconds (or pass --timestamp-format)",
            "5: started: required by --timestamp-column, but empty or missing",
        ]
    );
}

#[test]
fn a_local_timestamp_in_the_hour_the_clocks_skip_is_an_error_on_its_line() {
    let f = Fixture::new();
    let verdicts = with_times(
        &f,
        "m.jsonl",
        "{\"file\": \"calls/a.wav\", \"channel_id\": 1, \"agent\": \"A\", \"at\": \"2024-03-10 02:30:00\"}\n\
         {\"file\": \"calls/b.wav\", \"channel_id\": 1, \"agent\": \"B\", \"at\": \"2024-11-03 01:30:00\"}\n\
         {\"file\": \"calls/c.wav\", \"channel_id\": 1, \"agent\": \"C\", \"at\": \"2024-11-03T01:30:00-05:00\", \"call_date\": \"2024-11-03\"}\n",
        times(Some("at"), None, None, Some("America/New_York")),
    );
    let problems = lines_of(&verdicts);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "1: at \"2024-03-10 02:30:00\": 2024-03-10 02:30:00 does not exist in America/New_York"
        ),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with(
            "2: at \"2024-11-03 01:30:00\": 2024-11-03 01:30:00 happens twice in America/New_York"
        ),
        "{}",
        problems[1]
    );
    assert_eq!(
        problems[2],
        "3: call_date: given on this line, but --timestamp-column at fills it"
    );
}

#[test]
fn separate_date_and_time_columns_are_read_with_their_formats_and_checked_against_the_zone() {
    let f = Fixture::new();
    let verdicts = with_times(
        &f,
        "m.csv",
        "file,channel_id,call_date,call_time,agent\n\
         calls/a.wav,1,05/03/2024,2:05 PM,Ann\n\
         calls/b.wav,1,2024-03-05,2:05 PM,Bo\n\
         calls/c.wav,1,31/03/2024,1:30 AM,Cy\n",
        times(
            None,
            Some("%d/%m/%Y"),
            Some("%I:%M %p"),
            Some("Europe/London"),
        ),
    );
    let Verdict::Valid { row, .. } = &verdicts[0] else {
        panic!("{verdicts:?}");
    };
    assert_eq!(
        (&row.body["call_date"], &row.body["call_time"]),
        (&json!("2024-03-05"), &json!("14:05:00"))
    );
    assert_eq!(
        lines_of(&verdicts[1..]),
        [
            "3: call_date \"2024-03-05\": does not match --date-format \"%d/%m/%Y\" (5 March 2024 is \"05/03/2024\")",
            "4: call_time \"01:30:00\": 2024-03-31 01:30:00 does not exist in Europe/London (the clocks went forward that night): read as GMT (+00:00) it is 02:30:00 BST, read as BST (+01:00) it is 00:30:00 GMT; give the offset, or check the time",
        ]
    );
}

#[test]
fn a_timestamp_column_the_header_lacks_or_that_clashes_with_call_date_is_a_usage_error() {
    let f = Fixture::new();
    let run = |text: &str| {
        let path = f.file("m.csv", text.as_bytes());
        let settings = ManifestSettings::new(&path, None, None, &[], &[])
            .unwrap()
            .with_times(times(Some("started"), None, None, None));
        format!(
            "{:#}",
            super::check_manifest(&settings, today(), |_| ControlFlow::Continue(())).unwrap_err()
        )
    };
    assert_eq!(
        run("file,channel_id,start,agent\ncalls/a.wav,1,x,A\n"),
        "--timestamp-column started: the manifest has no column \"started\"; its columns are \"file\", \"channel_id\", \"start\", \"agent\""
    );
    assert!(
        run("file,channel_id,started,call_date,agent\n")
            .contains("fills call_date, but the manifest has a call_date column too")
    );
}

#[test]
fn with_a_shard_every_rows_fields_are_checked_but_only_its_own_rows_files_are_opened() {
    use crate::shard::{Shard, shard_of};
    let f = Fixture::new();
    // None of these files exists: only the shard's own rows are refused for that.
    let files: Vec<String> = (0..12).map(|i| format!("calls/gone-{i}.wav")).collect();
    let theirs = files.iter().find(|file| shard_of(file, 2) == 2).unwrap();
    let mut text = format!("{HEADER}\n");
    for file in &files {
        text.push_str(&format!("{file},1,2025-01-02,10:00:00,Ann\n"));
    }
    // Another shard's row with a bad date: still this shard's error.
    text.push_str(&format!("{theirs}x,1,2025-02-30,10:00:00,Ann\n"));
    let path = f.file("m.csv", text.as_bytes());
    let settings = ManifestSettings::new(&path, None, None, &[], &[])
        .unwrap()
        .with_shard(Some(Shard::resolve("1/2", |_| None).unwrap()));
    let mut verdicts = Vec::new();
    let summary = super::check_manifest(&settings, today(), |verdict| {
        verdicts.push(verdict);
        ControlFlow::Continue(())
    })
    .unwrap();
    let bad_date = format!("{theirs}x");
    assert_eq!(shard_of(&bad_date, 2), 2, "pick another name if this fails");
    for (verdict, file) in verdicts.iter().zip(files.iter().chain([&bad_date])) {
        match (shard_of(file, 2), verdict) {
            (1, Verdict::Invalid { problems, .. }) => {
                assert!(problems[0].message.contains("no such file"), "{problems:?}");
            }
            (2, Verdict::OtherShard { problems, .. }) if *file == bad_date => {
                assert_eq!(
                    problems.len(),
                    1,
                    "the date, not the missing file: {problems:?}"
                );
                assert_eq!(problems[0].column.as_deref(), Some("call_date"));
            }
            (2, Verdict::OtherShard { problems, .. }) => assert!(problems.is_empty()),
            (shard, other) => panic!("{file} of shard {shard}: {other:?}"),
        }
    }
    let own = files.iter().filter(|file| shard_of(file, 2) == 1).count() as u64;
    assert_eq!(summary.rows, own);
    assert_eq!(summary.other_shard_rows, 13 - own);
    assert_eq!(summary.errors, own + 1, "every shard refuses the bad date");
    assert!(summary.to_string().starts_with("13 rows checked: "));
}

#[test]
fn a_shard_with_no_rows_of_its_own_is_not_an_empty_manifest() {
    use crate::shard::{Shard, shard_of};
    let f = Fixture::new();
    let shard = if shard_of("calls/a.wav", 2) == 1 {
        "2/2"
    } else {
        "1/2"
    };
    let path = f.file(
        "m.csv",
        format!("{HEADER}\ncalls/a.wav,1,2025-01-02,10:00:00,Ann\n").as_bytes(),
    );
    let settings = ManifestSettings::new(&path, None, None, &[], &[])
        .unwrap()
        .with_shard(Some(Shard::resolve(shard, |_| None).unwrap()));
    let mut verdicts = Vec::new();
    let summary = super::check_manifest(&settings, today(), |verdict| {
        verdicts.push(verdict);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(
        matches!(verdicts[..], [Verdict::OtherShard { .. }]),
        "{verdicts:?}"
    );
    assert!(summary.is_valid());
}

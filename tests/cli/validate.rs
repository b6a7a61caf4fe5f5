//! `voyc-import validate` as a user runs it: the committed samples, exact output, exit codes.

use crate::util::{Dir, samples, show, voyc};

fn repo() -> std::path::PathBuf {
    samples().parent().unwrap().to_path_buf()
}

#[test]
fn the_bad_sample_manifest_lists_every_problem_in_line_order_and_exits_2() {
    let out = voyc(&repo())
        .args(["validate", "samples/bad-manifest.csv"])
        .output()
        .unwrap();
    let today = chrono::Local::now().date_naive();
    let expected = format!(
        r#"samples/bad-manifest.csv:1: warning: langauge: did you mean "language"? as it is, it is sent as custom metadata (rename the column or pass --map langauge=language)
samples/bad-manifest.csv:3: call_date "2024-02-30": not a valid date, expected YYYY-MM-DD
samples/bad-manifest.csv:4: call_date "03/04/2025": not a date in the form YYYY-MM-DD
samples/bad-manifest.csv:5: call_time "25:30:10": not a valid time of day, expected hh:mm:ss (00:00:00 to 23:59:59)
samples/bad-manifest.csv:6: file "calls/missing.wav": no such file (looked in samples/calls/missing.wav)
samples/bad-manifest.csv:7: direction "sideways": expected one of inbound, outbound, internal
samples/bad-manifest.csv:7: speakers "0": expected a positive whole number
samples/bad-manifest.csv:8: agent: required, but empty
samples/bad-manifest.csv:9: file "./calls/0001.wav": already listed on line 2
samples/bad-manifest.csv:10: this row has 7 fields, but the header has 8
samples/bad-manifest.csv:11: file "calls/transcript.txt": is not audio: its first bytes match no known audio format; it starts with text: "Transcript of ca"
samples/bad-manifest.csv:12: file "calls/empty.wav": is empty (0 bytes)
samples/bad-manifest.csv:13: file "calls": is a folder, not a file (samples/calls)
samples/bad-manifest.csv:14: file: required, but empty
samples/bad-manifest.csv:15: agent "Jos� Ruiz": not valid UTF-8 text; save the manifest as UTF-8 (it may be in Latin-1 or Windows-1252)
samples/bad-manifest.csv:16: warning: file "calls/mislabelled.wav": the extension .wav does not match the contents, which are MP3 (expected .mp3)
samples/bad-manifest.csv:17: warning: call_date "2099-01-01": date is in the future (today is {today})
16 rows checked: 14 problems in 13 rows, 3 warnings
"#
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stderr.is_empty(), "{}", show(&out));
}

#[test]
fn the_good_sample_manifests_are_valid_and_exit_0() {
    for (manifest, rows) in [("samples/manifest.csv", 7), ("samples/manifest.jsonl", 4)] {
        let out = voyc(&repo()).args(["validate", manifest]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{rows} rows checked: all valid, 0 warnings\n"),
            "{}",
            show(&out)
        );
        assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    }
}

#[test]
fn paths_are_shown_as_typed_from_any_working_folder() {
    let out = voyc(&samples())
        .args(["validate", "bad-manifest.csv"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "bad-manifest.csv:6: file \"calls/missing.wav\": no such file (looked in calls/missing.wav)\n"
        ),
        "{}",
        show(&out)
    );
}

#[test]
fn warnings_alone_exit_0() {
    let dir = Dir::new();
    dir.write(
        "calls/a.mp3",
        std::fs::read(samples().join("calls/0001.wav")).unwrap(),
    );
    dir.write(
        "m.csv",
        "file,channel_id,call_date,call_time,agent\ncalls/a.mp3,1,2025-01-02,10:00:00,Ann\n",
    );
    let out = voyc(dir.path())
        .args(["validate", "m.csv"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "m.csv:2: warning: file \"calls/a.mp3\": the extension .mp3 does not match the contents, which are WAV (expected .wav)\n\
         1 row checked: all valid, 1 warning\n",
        "{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn map_and_set_let_a_foreign_export_validate() {
    let dir = Dir::new();
    dir.write(
        "rec/x.wav",
        std::fs::read(samples().join("calls/0001.wav")).unwrap(),
    );
    dir.write(
        "export.csv",
        "Recording,Date,Time,Agent Name\nx.wav,2025-01-02,10:00:00,Ann\n",
    );
    let out = voyc(dir.path())
        .args(["validate", "export.csv", "--base-dir", "rec"])
        .args(["--map", "Recording=file", "--map", "Date=call_date"])
        .args(["--map", "Time=call_time", "--map", "Agent Name=agent"])
        .args(["--set", "channel_id=42"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 row checked: all valid, 0 warnings\n",
        "{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn usage_errors_go_to_stderr_and_exit_2() {
    let dir = Dir::new();
    dir.write("m.csv", "file,channel_id,call_date,call_time,agent\n");
    for (args, message) in [
        (
            vec!["validate", "m.csv", "--map", "recording=file"],
            "error: --map recording=file: the manifest has no column \"recording\"; its columns are \"file\", \"channel_id\", \"call_date\", \"call_time\", \"agent\"\n",
        ),
        (
            vec!["validate", "nope.csv"],
            "error: cannot read the manifest nope.csv: No such file or directory (os error 2)\n",
        ),
        (
            vec!["validate", "m.txt"],
            "error: cannot tell the format of m.txt from its extension (expected .csv, .jsonl or .ndjson); pass --format csv or --format jsonl\n",
        ),
    ] {
        let out = voyc(dir.path()).args(&args).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            message,
            "{}",
            show(&out)
        );
        assert!(out.stdout.is_empty(), "{}", show(&out));
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    }
}

#[test]
fn a_timestamp_column_with_a_zone_becomes_call_date_and_call_time_and_uploads() {
    let dir = Dir::new();
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00".to_vec();
    wav.resize(300, 1);
    dir.write("calls/a.wav", &wav);
    dir.write("calls/b.wav", &wav);
    dir.write(
        "export.csv",
        "Recording,channel_id,StartTime,agent\n\
         calls/a.wav,7,2024-03-10T07:30:00Z,Ann\n\
         calls/b.wav,7,2024-11-03T05:30:00.000Z,Bo\n",
    );
    let flags = [
        "--map",
        "Recording=file",
        "--timestamp-column",
        "StartTime",
        "--timezone",
        "America/New_York",
    ];
    let out = voyc(dir.path())
        .args(["upload", "export.csv", "--sandbox", "--dry-run"])
        .args(flags)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            r#"{"channel_id":"7","agent":"Ann","call_date":"2024-03-10","call_time":"03:30:00"}"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#""call_date":"2024-11-03","call_time":"01:30:00""#),
        "{stdout}"
    );
    let out = voyc(dir.path())
        .args(["upload", "export.csv", "--sandbox"])
        .args(flags)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn an_unknown_timezone_is_a_usage_error_that_suggests_the_closest_names() {
    let out = voyc(&samples())
        .args(["validate", "manifest.csv", "--timezone", "Europe/Lodnon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --timezone \"Europe/Lodnon\" is not an IANA time zone name; did you mean \"Europe/London\"? (names are like Europe/London or America/New_York)\n"
    );
}

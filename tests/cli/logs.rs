//! What `upload` writes on stderr for a log (docs/logging.md): without a terminal every line
//! starts with an RFC 3339 UTC timestamp; `--log-format json` is one JSON object per line whose
//! summary groups the failures by cause; `--quiet` is silent when every row succeeded.

use std::process::Output;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

use crate::upload::{Corpus, Sandbox};
use crate::util::{show, timestamp_of};

/// What S3 (the sandbox) answers for a file over `--max-upload-bytes`.
const TOO_LARGE: &str =
    "upload: HTTP 400: EntityTooLarge: Your proposed upload exceeds the maximum allowed size";

/// Eight rows of which three (lines 2, 5 and 8) are over the sandbox's 50,000 bytes.
fn three_too_large() -> Corpus {
    Corpus::new(8, |i| if i % 3 == 0 { 80_000 } else { 4_000 })
}

/// Every line of stderr, each parsed as one JSON object.
fn events(out: &Output) -> Vec<serde_json::Map<String, Value>> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            _ => panic!("a line that is not a JSON object: {line:?}\n{}", show(out)),
        })
        .collect()
}

fn names(events: &[serde_json::Map<String, Value>]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["event"].as_str().expect("every object has an event"))
        .collect()
}

#[test]
fn json_logs_are_one_object_a_line_and_the_summary_groups_the_failures_by_cause() {
    let sandbox = Sandbox::start(&["--max-upload-bytes", "50000"]);
    let corpus = three_too_large();
    let out = corpus
        .upload_to(&sandbox.url)
        .args(["--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let events = events(&out);
    for event in &events {
        let ts = event["ts"].as_str().expect("every object has ts");
        assert!(
            DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
    }
    let names = names(&events);
    assert_eq!(names.first(), Some(&"message"), "{names:?}");
    assert_eq!(names.last(), Some(&"summary"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "start").count(), 1);

    let start = &events[names.iter().position(|n| *n == "start").unwrap()];
    assert_eq!(start["rows"], 8);
    assert_eq!(start["concurrency"], 8);
    assert_eq!(
        start["destination"],
        format!(
            "{}/api/v2/workspace/118/conversation/upload_data/",
            sandbox.url.trim_end_matches('/')
        )
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("sandbox-token"));

    // One row_failed per failed row of the report, with the same line, file and error.
    let mut failed: Vec<(Value, Value, Value)> = events
        .iter()
        .filter(|e| e["event"] == "row_failed")
        .map(|e| (e["line"].clone(), e["file"].clone(), e["error"].clone()))
        .collect();
    failed.sort_by_key(|(line, _, _)| line.as_u64());
    let reported: Vec<(Value, Value, Value)> = corpus
        .report()
        .iter()
        .filter(|row| row["status"] == "failed")
        .map(|row| {
            (
                json!(row["line"].parse::<u64>().unwrap()),
                json!(row["file"]),
                json!(row["error"]),
            )
        })
        .collect();
    assert_eq!(failed, reported);
    assert_eq!(failed.len(), 3);

    let summary = events.last().unwrap();
    assert_eq!(summary["ending"], "done");
    assert_eq!(
        (&summary["uploaded"], &summary["failed"]),
        (&json!(5), &json!(3))
    );
    assert_eq!(
        summary["failures"],
        json!([{"cause": TOO_LARGE, "count": 3}]),
        "{summary:?}"
    );
    assert_eq!(summary["more_causes"], 0);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["report"], "manifest.report.csv");
}

#[test]
fn without_a_terminal_every_plain_line_starts_with_the_time_in_utc() {
    let sandbox = Sandbox::start(&["--max-upload-bytes", "50000"]);
    let corpus = three_too_large();
    let first = corpus.upload_to(&sandbox.url).output().unwrap();
    assert_eq!(first.status.code(), Some(1), "{}", show(&first));
    // The rerun has a status line (resuming), failed rows, the causes and the summary; in a
    // zone far from UTC, which the timestamps must not follow.
    let before = Utc::now();
    let out = corpus
        .upload_to(&sandbox.url)
        .env("TZ", "America/New_York")
        .output()
        .unwrap();
    let after = Utc::now();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 6, "{stderr}");
    for line in &lines {
        let stamp = timestamp_of(line)
            .unwrap_or_else(|| panic!("a line without a timestamp: {line:?}\n{stderr}"));
        let at = DateTime::parse_from_rfc3339(stamp).unwrap();
        // To the second, in UTC: between the start and the end of the run, whole seconds.
        assert!(
            at >= before - Span::seconds(1) && at <= after + Span::seconds(1),
            "{stamp} is not the time of the run ({before} to {after})"
        );
    }
    let untimed: Vec<&str> = lines.iter().map(|line| &line[21..]).collect();
    assert!(
        untimed.contains(&"resuming: 5 rows already uploaded"),
        "{stderr}"
    );
    assert!(
        untimed.contains(&format!("manifest.csv:5: calls/0003.wav: failed: {TOO_LARGE}").as_str()),
        "{stderr}"
    );
    assert_eq!(
        untimed[untimed.len() - 2],
        format!("3 failed: 3 × {TOO_LARGE}")
    );
    assert!(
        untimed[untimed.len() - 1]
            .starts_with("done: 0 uploaded, 5 already uploaded, 3 failed in "),
        "{stderr}"
    );
}

#[test]
fn quiet_json_says_nothing_when_every_row_succeeded_and_otherwise_only_failures_and_the_summary() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(4, |_| 4_000);
    let out = corpus
        .upload_to(&sandbox.url)
        .args(["--log-format", "json", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "nothing for cron to mail"
    );

    let sandbox = Sandbox::start(&["--max-upload-bytes", "50000"]);
    let corpus = three_too_large();
    let out = corpus
        .upload_to(&sandbox.url)
        .args(["--log-format", "json", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let events = events(&out);
    assert_eq!(
        names(&events),
        ["row_failed", "row_failed", "row_failed", "summary"]
    );
}

#[test]
fn an_error_that_ends_a_json_run_is_an_error_message_and_a_summary_with_exit_2() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(2, |_| 4_000);
    std::fs::create_dir(corpus.path().join("journal")).unwrap();
    let out = corpus
        .upload_to(&sandbox.url)
        .args(["--log-format", "json", "--journal", "journal"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let events = events(&out);
    let last = events.len() - 1;
    assert_eq!(events[last]["event"], "summary", "{}", show(&out));
    assert_eq!(events[last]["ending"], "error");
    assert_eq!(events[last]["exit_code"], 2);
    assert_eq!(events[last - 1]["event"], "message");
    assert_eq!(events[last - 1]["level"], "error");
    let message = events[last - 1]["message"].as_str().unwrap();
    assert!(
        message.starts_with("error: ") && message.contains("journal"),
        "{message}"
    );
}

#[test]
fn a_settings_error_with_json_logs_is_json_too() {
    let corpus = Corpus::new(1, |_| 4_000);
    let out = crate::util::voyc(corpus.path())
        .args([
            "upload",
            "manifest.csv",
            "--sandbox",
            "--log-format",
            "json",
        ])
        .args(["--report", "manifest.report.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let events = events(&out);
    assert_eq!(names(&events), ["message", "summary"]);
    assert_eq!(
        events[0]["message"],
        "error: --report manifest.report.txt: the report must end in .csv or .jsonl (it decides the format)"
    );
    assert_eq!(events[1]["ending"], "error");
    assert_eq!(events[1]["exit_code"], 2);
}

#[test]
fn an_outage_is_waiting_events_then_one_resumed_and_fails_no_row() {
    // Call 1 answers 503 four times, then works: three in a row make Voyc down, the first probe
    // meets the fourth, and a later one finds it back, seconds later.
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let server = voyc_testkit::threaded::Scripted::start(move |line, _| {
        if line.starts_with("PUT ") {
            return (200, "text/plain", String::new());
        }
        match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            n if n < 4 => (503, "text/html", "<h1>503 Service Unavailable</h1>".into()),
            n => crate::upload::created(n),
        }
    });
    let corpus = Corpus::new(3, |_| 4_000);
    let out = corpus
        .upload_to(&server.url)
        .args(["--log-format", "json", "--concurrency", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let events = events(&out);
    let names = names(&events);
    let first_wait = names
        .iter()
        .position(|n| *n == "waiting")
        .expect("a waiting event");
    let resumed = names
        .iter()
        .position(|n| *n == "resumed")
        .expect("a resumed event");
    assert!(first_wait < resumed, "{names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == "resumed").count(),
        1,
        "{names:?}"
    );
    let waiting = &events[first_wait];
    assert_eq!(waiting["service"], "Voyc");
    assert!(
        waiting["cause"].as_str().unwrap().contains("503"),
        "{waiting:?}"
    );
    assert_eq!(events[resumed]["service"], "Voyc");
    assert!(events[resumed]["down_for_ms"].as_u64().unwrap() >= 1_000);
    let summary = events.last().unwrap();
    assert_eq!(
        (&summary["uploaded"], &summary["failed"]),
        (&json!(3), &json!(0))
    );
    assert_eq!(summary["failures"], json!([]));
}

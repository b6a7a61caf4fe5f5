//! The properties the fuzz targets check on any input. Shared: the targets in `fuzz_targets/`
//! include this file, and plain `cargo test` runs it over every input kept in
//! `fuzz/regressions/` (`tests/cli/fuzz_regressions.rs`), so what the fuzzers found stays fixed.
//!
//! A manifest, whatever its bytes: reading and validating it never panics or fails as a whole
//! (only a row or the manifest is reported bad); every problem is one printable line of bounded
//! length on a line that exists, in line order; JSONL rows are exactly the non-blank lines; a
//! row called valid is one the sandbox's call-1 checks accept (its own rules, written as Voyc's
//! DRF serializer applies them, not the client's: a row refused there is a client rule that
//! lets through what Voyc would refuse). Call 1's answer, whatever its
//! bytes: parsing never panics; a target is http(s) with a host and survives the journal's JSON
//! round trip; no error or debug text shows a value from the answer (they hold signatures);
//! error bodies render as one printable line of bounded length.

#![allow(dead_code)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde_json::Value;
pub use voyc_import::fuzzing::Format;
use voyc_import::fuzzing::{
    MAX_CHARS, ManifestSettings, UploadTarget, Verdict, api_message, check_manifest,
    parse_call1_response, s3_error, without_query,
};
use voyc_sandbox::serializer;

/// The longest one problem may print, in characters: values are cut to 80, paths to 200.
pub const MAX_PROBLEM_CHARS: usize = 1024;

/// Two real audio files a fuzzed manifest may name, so that rows can be valid.
pub fn make_audio(dir: &Path) {
    let mut wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00".to_vec();
    wav.resize(64, 7);
    std::fs::write(dir.join("a.wav"), wav).expect("write a.wav");
    let mut mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    mp3.resize(64, 9);
    std::fs::write(dir.join("b.mp3"), mp3).expect("write b.mp3");
}

/// The fuzz targets' folder: one per process, reused for every input.
pub fn fuzz_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("voyc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz folder");
        make_audio(&dir);
        dir
    })
}

/// Any bytes as a manifest, in the fuzz targets' folder.
pub fn manifest(data: &[u8], format: Format) {
    manifest_in(fuzz_dir(), data, format);
}

/// Any bytes as a manifest in `dir` (which holds [`make_audio`]'s files): every property holds.
pub fn manifest_in(dir: &Path, data: &[u8], format: Format) {
    let name = match format {
        Format::Csv => "manifest.csv",
        Format::Jsonl => "manifest.jsonl",
    };
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write the manifest");
    let settings = ManifestSettings::new(&path, Some(format), Some(dir), &[], &[])
        .expect("the manifest's settings");
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date");
    let most_lines = 1 + data.iter().filter(|b| **b == b'\n' || **b == b'\r').count() as u64;
    let mut row_lines = Vec::new();
    let mut unreadable = false;
    let mut errors = 0;
    let summary = check_manifest(&settings, today, |verdict| {
        for problem in verdict.problems() {
            let text = problem.to_string();
            assert!(
                (1..=most_lines).contains(&problem.line),
                "problem on line {} of a manifest of at most {most_lines} lines: {text}",
                problem.line
            );
            assert_printable_line(&text, MAX_PROBLEM_CHARS, "a problem");
            errors += u64::from(problem.is_error());
        }
        match verdict {
            Verdict::Manifest(problem) => {
                unreadable |= problem.message.starts_with("the manifest is not UTF-8");
            }
            Verdict::Empty(problem) => {
                unreadable |= problem.message.starts_with("the manifest is empty");
            }
            Verdict::Valid { row, .. } => {
                if let Err(refused) = serializer::validate(&row.body) {
                    panic!(
                        "line {}: valid for the client, refused by the sandbox's DRF rules: {refused:?}",
                        row.line
                    );
                }
                assert!(serde_json::to_vec(&row.body).is_ok());
                row_lines.push(row.line);
            }
            Verdict::Invalid { line, .. } | Verdict::OtherShard { line, .. } => {
                row_lines.push(line)
            }
        }
        ControlFlow::Continue(())
    })
    .expect("a readable manifest is never an error as a whole");
    assert!(
        row_lines.windows(2).all(|w| w[0] < w[1]),
        "rows out of line order: {row_lines:?}"
    );
    assert!(row_lines.iter().all(|line| (1..=most_lines).contains(line)));
    assert_eq!(
        summary.rows,
        row_lines.len() as u64,
        "summary counts the rows"
    );
    assert_eq!(summary.errors, errors, "summary counts the errors");
    if unreadable {
        assert!(
            row_lines.is_empty(),
            "rows read from an unreadable manifest"
        );
    } else if format == Format::Jsonl {
        assert_eq!(
            row_lines,
            non_blank_lines(data),
            "JSONL rows are the non-blank lines"
        );
    }
}

/// Line numbers of the lines that hold more than whitespace (after a UTF-8 byte-order mark).
fn non_blank_lines(data: &[u8]) -> Vec<u64> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    data.split(|b| *b == b'\n')
        .zip(1u64..)
        .filter(|(line, _)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(_, n)| n)
        .collect()
}

/// Any bytes as call 1's answer, and as an error body from the API or from S3.
pub fn call1_response(data: &[u8]) {
    let base = reqwest::Url::parse("https://api.example.test/v2/").expect("a URL");
    let json: Option<Value> = serde_json::from_slice(data).ok();
    let (values, keys) = json.as_ref().map(strings_in).unwrap_or_default();
    match parse_call1_response(data, &base) {
        Ok(answer) => {
            let id = &answer.conversation_id.0;
            assert!(!id.is_empty() && id.trim() == id, "conversation id {id:?}");
            let url = answer.target.url();
            assert!(matches!(url.scheme(), "http" | "https") && url.host().is_some());
            let stored = serde_json::to_string(&answer.target).expect("a target serialises");
            let back: UploadTarget = serde_json::from_str(&stored)
                .unwrap_or_else(|e| panic!("the journal could not read back {stored}: {e}"));
            assert_eq!(
                back, answer.target,
                "the journal's round trip changes the target"
            );
            let _ = answer.target.expires_at();
            let debug = format!("{:?}", answer.target);
            if let UploadTarget::Post { fields, .. } = &answer.target {
                let mut allowed = without_query(url);
                for (name, _) in fields {
                    allowed.push(' ');
                    allowed.push_str(name);
                }
                for (_, value) in fields {
                    assert_not_shown(&debug, value, &allowed, "a target's debug text");
                }
            }
        }
        Err(error) => {
            let text = error.to_string();
            assert_printable_line(&text, 1000, "a shape error");
            // Keys may be shown: take them out (whole, and as cut to 40 characters, each raw
            // and with its control characters escaped as the error shows them), so that a value
            // found in what is left came from nowhere but the answer's values.
            let mut residue = text.clone();
            let mut keys = keys.clone();
            keys.sort_by_key(|key| std::cmp::Reverse(key.len()));
            for key in keys.iter().filter(|key| !key.is_empty()) {
                let cut: String = key.chars().take(40).collect();
                for form in [escaped(key), escaped(&cut), key.clone(), cut] {
                    residue = residue.replace(&form, "\u{1}");
                }
            }
            for value in &values {
                assert_not_shown(&residue, value, SHAPE_ERROR_WORDS, "a shape error");
            }
        }
    }
    if let Some(message) = api_message(data) {
        assert_printable_line(&message.text, MAX_CHARS + 1, "an API error");
    }
    if let Some(error) = s3_error(data) {
        assert_printable_line(&error.render(), MAX_CHARS + 1, "an S3 error");
    }
}

/// Every word a shape error is made of besides the answer's keys.
const SHAPE_ERROR_WORDS: &str = "the answer is not JSON bytes; the answer is JSON but not an object; \
    the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: none \
    the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url) \
    the answer's is not a usable URL (it does not parse; not http or https) holds a value that is not text \
    fields.{} 0123456789";

/// Every string value (8 characters or more: shorter ones are words any message may hold)
/// and every key in a JSON document.
fn strings_in(json: &Value) -> (Vec<String>, Vec<String>) {
    fn walk(value: &Value, values: &mut Vec<String>, keys: &mut Vec<String>) {
        match value {
            Value::String(text) if text.chars().count() >= 8 => values.push(text.clone()),
            Value::Array(items) => items.iter().for_each(|v| walk(v, values, keys)),
            Value::Object(object) => {
                for (key, value) in object {
                    keys.push(key.clone());
                    walk(value, values, keys);
                }
            }
            _ => {}
        }
    }
    let (mut values, mut keys) = (Vec::new(), Vec::new());
    walk(json, &mut values, &mut keys);
    (values, keys)
}

/// `text` with its control characters escaped (`\r`, `\u{7f}`), as errors show a key.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn assert_not_shown(text: &str, value: &str, allowed: &str, what: &str) {
    if value.chars().count() >= 8 && text.contains(value) {
        assert!(
            allowed.contains(value),
            "{what} shows a value from the answer ({value:?}): {text}"
        );
    }
}

fn assert_printable_line(text: &str, max_chars: usize, what: &str) {
    assert!(
        !text.chars().any(char::is_control),
        "{what} holds a control character (a line break, or an escape a terminal would obey): {text:?}"
    );
    let chars = text.chars().count();
    assert!(
        chars <= max_chars,
        "{what} is {chars} characters long: {text:.200}…"
    );
}

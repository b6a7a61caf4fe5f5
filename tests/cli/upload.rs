//! `voyc-import upload` end to end: the real binary against a spawned `voyc-import sandbox`
//! (or its in-process one), checked through the sandbox's inspection endpoint, the report and
//! the journal: every row uploaded exactly once with the right bytes, under every fault.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::util::{Dir, SandboxProcess, samples, sandbox_process, show, untimed, voyc};
use voyc_testkit::threaded::Scripted;

const TOKEN: &str = "sandbox-token";

/// A `voyc-import sandbox` process on a free port, stopped when dropped.
pub(crate) struct Sandbox {
    _process: SandboxProcess,
    pub(crate) url: String,
}

impl Sandbox {
    pub(crate) fn start(args: &[&str]) -> Sandbox {
        let process = sandbox_process(args);
        Sandbox {
            url: process.url.clone(),
            _process: process,
        }
    }

    /// `GET /_sandbox/conversations`, by conversation id.
    pub(crate) fn conversations(&self) -> HashMap<String, Value> {
        let Value::Array(all) =
            serde_json::from_str(&http_get(&self.url, "/_sandbox/conversations"))
                .expect("the inspection endpoint answers JSON")
        else {
            panic!("the inspection endpoint does not answer an array");
        };
        all.into_iter()
            .map(|c| (id_text(&c["conversation_id"]), c))
            .collect()
    }
}

fn id_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain HTTP/1.1 GET on loopback (the tests need nothing more).
fn http_get(base: &str, path: &str) -> String {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host).expect("connect to the sandbox");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_string()
    }
}

/// Audio files and a manifest listing them.
pub(crate) struct Corpus {
    dir: Dir,
    /// (path as written in the manifest, contents)
    pub(crate) files: Vec<(String, Vec<u8>)>,
}

impl Corpus {
    /// `n` WAV files; file `i` has `size(i)` bytes of varied content.
    pub(crate) fn new(n: usize, size: impl Fn(usize) -> usize) -> Corpus {
        let dir = Dir::new();
        let mut manifest = String::from("file,channel_id,call_date,call_time,agent,crm_ticket\n");
        let mut files = Vec::new();
        for i in 0..n {
            let name = format!("calls/{i:04}.wav");
            let contents = wav(i, size(i));
            dir.write(&name, &contents);
            manifest.push_str(&format!(
                "{name},support,2024-03-{:02},09:{:02}:00,Agent {i},T-{i}\n",
                1 + i % 28,
                i % 60
            ));
            files.push((name, contents));
        }
        dir.write("manifest.csv", manifest);
        Corpus { dir, files }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join("manifest.csv")
    }

    /// The upload command in the corpus folder, with the sandbox's token.
    fn upload(&self, sandbox: &Sandbox) -> assert_cmd::Command {
        self.upload_to(&sandbox.url)
    }

    /// The upload command in the corpus folder, to any base URL, as organisation 118.
    pub(crate) fn upload_to(&self, base_url: &str) -> assert_cmd::Command {
        let mut cmd = voyc(self.path());
        cmd.env("VOYC_TOKEN", TOKEN)
            .args([
                "upload",
                "manifest.csv",
                "--org",
                "118",
                "--base-url",
                base_url,
            ])
            .timeout(Duration::from_secs(120));
        cmd
    }

    /// The same, as a child process the test can signal.
    fn spawn_upload(&self, sandbox: &Sandbox, extra: &[&str]) -> Child {
        crate::run_edges::spawn(self.path(), "manifest.csv", sandbox, extra)
    }

    pub(crate) fn report(&self) -> Vec<HashMap<String, String>> {
        read_report(&self.dir.join("manifest.report.csv"))
    }
}

/// A WAV header and `size` bytes in all (at least the header).
pub(crate) fn wav(seed: usize, size: usize) -> Vec<u8> {
    let size = size.max(44);
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&((size - 8) as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&[
        16, 0, 0, 0, 1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0,
    ]);
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&((size - 44) as u32).to_le_bytes());
    let mut state = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(state as u8);
    }
    bytes
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn read_report(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read the report {}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "line",
            "file",
            "status",
            "conversation_id",
            "attempts",
            "bytes",
            "sha256",
            "duration_ms",
            "error",
            "notes"
        ]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// How many extra conversations the notes own up to (ambiguous call-1 retries, renewals).
fn explained_orphans(row: &HashMap<String, String>) -> usize {
    let notes = &row["notes"];
    let mut n = 0;
    if notes.contains("retried after an ambiguous failure") {
        n += 1;
    }
    if let Some(at) = notes.find("retried after ")
        && let Some(count) = notes[at + 14..]
            .split(' ')
            .next()
            .and_then(|c| c.parse::<usize>().ok())
    {
        n += count;
    }
    n + notes.matches("keeps no audio").count()
        + notes.matches("stopped during this row's call 1").count()
}

/// Guarantees 1, 2 and 4 through the inspection endpoint: every row once in the report, in
/// order, uploaded with the bytes and SHA-256 of its file, each conversation uploaded at most
/// once, and every conversation without audio owned up to by a note.
fn assert_every_row_uploaded_once(corpus: &Corpus, sandbox: &Sandbox) {
    let report = corpus.report();
    let conversations = sandbox.conversations();
    assert_eq!(
        report.len(),
        corpus.files.len(),
        "one report row per manifest row"
    );
    let mut explained = 0;
    for (i, (row, (name, contents))) in report.iter().zip(&corpus.files).enumerate() {
        assert_eq!(row["line"], (i + 2).to_string());
        assert_eq!(&row["file"], name);
        assert!(
            row["status"] == "uploaded" || row["status"] == "already_uploaded",
            "row {i}: {row:?}"
        );
        assert_eq!(row["sha256"], sha256(contents), "row {i}");
        assert_eq!(row["bytes"], contents.len().to_string(), "row {i}");
        let conversation = &conversations[&row["conversation_id"]];
        assert_eq!(conversation["uploaded"], true, "{conversation}");
        assert_eq!(conversation["bytes"], contents.len() as u64);
        assert_eq!(conversation["sha256"], sha256(contents));
        assert_eq!(conversation["uploads"], 1, "uploaded once: {conversation}");
        assert_eq!(conversation["metadata"]["agent"], format!("Agent {i}"));
        assert_eq!(
            conversation["organisation_id"]
                .to_string()
                .trim_matches('"'),
            "118"
        );
        explained += explained_orphans(row);
    }
    let orphans = conversations.len() - report.len();
    assert!(
        orphans <= explained,
        "{orphans} conversations without audio, {explained} explained by notes"
    );
    for conversation in conversations.values() {
        assert!(
            conversation["uploads"].as_u64().unwrap() <= 1,
            "{conversation}"
        );
    }
}

pub(crate) fn stderr_of(out: &Output) -> String {
    crate::util::untimed(out)
}

#[test]
fn the_readme_command_uploads_the_samples_to_an_in_process_sandbox() {
    let dir = Dir::new();
    let out = voyc(dir.path())
        .args(["upload"])
        .arg(samples().join("manifest.csv"))
        .arg("--sandbox")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("rows valid"), "{stderr}");
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("done: ") && summary.ends_with("report manifest.report.csv"),
        "{summary}"
    );
    let report = read_report(&dir.join("manifest.report.csv"));
    assert!(!report.is_empty());
    for row in &report {
        assert_eq!(row["status"], "uploaded", "{row:?}");
        assert!(!row["conversation_id"].is_empty());
        assert_eq!(row["attempts"], "1");
        let path = samples().join(&row["file"]);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(row["sha256"], sha256(&bytes), "{}", path.display());
        assert_eq!(row["bytes"], bytes.len().to_string());
    }
    assert!(dir.join("manifest.report.csv.journal").exists());
}

#[test]
fn a_jsonl_report_is_written_when_the_report_path_says_jsonl() {
    let dir = Dir::new();
    let out = voyc(dir.path())
        .args(["upload", "--sandbox", "--report", "out/r.jsonl"])
        .arg(samples().join("manifest.jsonl"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = std::fs::read_to_string(dir.join("out/r.jsonl")).unwrap();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "line",
                "file",
                "status",
                "conversation_id",
                "attempts",
                "bytes",
                "sha256",
                "duration_ms",
                "error",
                "notes"
            ]
        );
        assert_eq!(row["status"], "uploaded");
    }
}

#[test]
fn both_upload_styles_upload_every_row_exactly_once() {
    for style in ["post", "put"] {
        let sandbox = Sandbox::start(&["--upload-style", style]);
        let corpus = Corpus::new(24, |i| 1_000 + i * 7_919);
        let out = corpus
            .upload(&sandbox)
            .args(["--concurrency", "4"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{style}: {}", show(&out));
        assert_every_row_uploaded_once(&corpus, &sandbox);
        assert_eq!(
            sandbox.conversations().len(),
            24,
            "{style}: no extra conversations"
        );
    }
}

#[test]
fn every_fault_at_a_meaningful_rate_still_uploads_every_row_exactly_once() {
    for fault in [
        "--fail-rate",
        "--ambiguous-rate",
        "--throttle-rate",
        "--s3-fail-rate",
        "--s3-drop-rate",
    ] {
        let sandbox = Sandbox::start(&[fault, "0.3", "--seed", "7"]);
        let corpus = Corpus::new(20, |i| 2_000 + i * 1_500);
        let out = corpus
            .upload(&sandbox)
            .args(["--concurrency", "4", "--retries", "8"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{fault}: {}", show(&out));
        assert_every_row_uploaded_once(&corpus, &sandbox);
        let report = corpus.report();
        let retried = report.iter().filter(|r| r["attempts"] != "1").count();
        assert!(retried > 0, "{fault}: no row was retried at rate 0.3");
        let noted = report
            .iter()
            .filter(|r| r["notes"].contains("ambiguous failure"))
            .count();
        match fault {
            "--ambiguous-rate" => {
                assert!(noted > 0, "ambiguous retries are noted");
                let orphans = sandbox.conversations().len() - report.len();
                let explained: usize = report.iter().map(explained_orphans).sum();
                assert_eq!(orphans, explained, "every extra conversation is explained");
            }
            _ => {
                assert_eq!(noted, 0, "{fault}: nothing ambiguous to note");
                assert_eq!(
                    sandbox.conversations().len(),
                    20,
                    "{fault}: no extra conversations"
                );
            }
        }
    }
}

#[test]
fn a_wrong_token_stops_at_the_first_call_with_exit_2_and_the_servers_message() {
    for style in ["drf", "standardized"] {
        let sandbox = Sandbox::start(&["--error-style", style]);
        let corpus = Corpus::new(30, |_| 500);
        let out = corpus
            .upload(&sandbox)
            .env("VOYC_TOKEN", "wrong-token-value")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{style}: {}", show(&out));
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains("the token was refused (wrong, expired or revoked): check VOYC_TOKEN or --token-file"),
            "{style}: {stderr}"
        );
        assert!(!stderr.contains("wrong-token-value"));
        // One message, not one more line per row that was in flight.
        assert_eq!(
            stderr.lines().filter(|l| l.contains("HTTP 40")).count(),
            1,
            "{style}: {stderr}"
        );
        let report = corpus.report();
        assert_eq!(report.len(), 30);
        let failed: Vec<_> = report.iter().filter(|r| r["status"] == "failed").collect();
        assert!(
            !failed.is_empty() && failed.len() <= 8,
            "{style}: {} failed",
            failed.len()
        );
        for row in &failed {
            assert_eq!(row["attempts"], "1", "permanent: not retried");
            assert!(row["error"].starts_with("call 1: HTTP 40"), "{row:?}");
        }
        assert!(
            report
                .iter()
                .all(|r| r["status"] == "failed" || r["status"] == "not_attempted")
        );
        assert!(sandbox.conversations().is_empty());
    }
}

/// A 401 late in a run (an expired token), against `sandbox --token-ttl`: the token is accepted for 3 s, and a
/// run that needs longer stops handing out rows, lets the one in flight finish, and ends
/// resumable with exit 1; the journal keeps what was uploaded.
#[test]
fn a_token_that_expires_mid_run_stops_it_with_exit_1_and_the_journal_keeps_the_uploaded_rows() {
    let sandbox = Sandbox::start(&["--token-ttl", "3", "--latency-ms", "300"]);
    let corpus = Corpus::new(40, |i| 1_000 + i);
    let started = Instant::now();
    let out = corpus
        .upload(&sandbox)
        .args(["--concurrency", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stopped at once"
    );
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(
            "call 1 answered HTTP 401: Invalid token. after earlier rows succeeded: the token has \
             expired or was revoked; get a new one and run the same command to resume"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // In manifest order: the rows whose call 1 came in time, then the one or two (one per
    // worker) whose call 1 met the expired token, then the rows never handed out.
    let report = corpus.report();
    assert_eq!(report.len(), 40);
    let count = |from: usize, status: &str| {
        report[from..]
            .iter()
            .take_while(|r| r["status"] == status)
            .count()
    };
    let uploaded = count(0, "uploaded");
    let failed = count(uploaded, "failed");
    let not_attempted = count(uploaded + failed, "not_attempted");
    let statuses: Vec<&str> = report.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(uploaded + failed + not_attempted, 40, "{statuses:?}");
    assert!(uploaded >= 1 && (1..=2).contains(&failed), "{statuses:?}");
    assert!(not_attempted >= 20, "{statuses:?}");
    let conversations = sandbox.conversations();
    assert_eq!(
        conversations.len(),
        uploaded,
        "a refused call 1 creates nothing"
    );
    for (row, (_, contents)) in report.iter().zip(&corpus.files).take(uploaded) {
        let conversation = &conversations[&row["conversation_id"]];
        assert_eq!(conversation["uploaded"], true, "{conversation}");
        assert_eq!(conversation["sha256"], sha256(contents));
    }
    for row in &report[uploaded..uploaded + failed] {
        assert_eq!(row["error"], "call 1: HTTP 401: Invalid token.", "{row:?}");
        assert_eq!(row["attempts"], "1", "permanent: not retried: {row:?}");
    }
    for row in &report[uploaded + failed..] {
        assert_eq!(
            row["notes"], "the run stopped: the token was refused",
            "{row:?}"
        );
    }
    let stats: Value = serde_json::from_str(&http_get(&sandbox.url, "/_sandbox/stats")).unwrap();
    assert_eq!(stats["faults"]["token_expired"], failed as u64, "{stats}");

    // The journal kept the uploaded rows: the same command skips them without a call, and the
    // still-expired token is then refused before anything succeeds in this run, so exit 2.
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report[..uploaded]
            .iter()
            .all(|r| r["status"] == "already_uploaded"),
        "{report:?}"
    );
    assert!(report[uploaded..].iter().all(|r| r["status"] != "uploaded"));
    assert_eq!(sandbox.conversations().len(), uploaded);
}

#[test]
fn a_wrong_organisation_stops_at_the_first_call_naming_base_url_and_org() {
    let sandbox = Sandbox::start(&["--org", "999"]);
    let corpus = Corpus::new(5, |_| 500);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("does not exist: check --base-url and --org (118)"),
        "{stderr}"
    );
}

#[test]
fn an_oversized_file_fails_only_its_row_with_s3s_message_and_one_attempt() {
    let sandbox = Sandbox::start(&["--max-upload-bytes", "50000"]);
    let corpus = Corpus::new(6, |i| if i == 3 { 80_000 } else { 4_000 });
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = corpus.report();
    for (i, row) in report.iter().enumerate() {
        if i == 3 {
            assert_eq!(row["status"], "failed");
            assert_eq!(row["attempts"], "1");
            assert!(
                row["error"].starts_with("upload: HTTP 400: EntityTooLarge"),
                "{row:?}"
            );
            assert!(
                !row["conversation_id"].is_empty(),
                "the conversation is named"
            );
        } else {
            assert_eq!(row["status"], "uploaded", "{row:?}");
        }
    }
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("manifest.csv:5: calls/0003.wav: failed: upload: HTTP 400: EntityTooLarge"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("done: 5 uploaded, 1 failed in ")
    );
}

/// Call 1's answer for conversation `c-N`, with a presigned PUT on the same server.
pub(crate) fn created(n: usize) -> (u16, &'static str, String) {
    (
        201,
        "application/json",
        format!(r#"{{"conversation_id": "c-{n}", "upload_url": "/s3/b/{n}"}}"#),
    )
}

#[test]
fn a_400_from_call_1_fails_only_its_row_with_the_servers_own_message() {
    let corpus = Corpus::new(4, |_| 300);
    let conversation = std::sync::atomic::AtomicUsize::new(0);
    let server = Scripted::start(move |line, body| {
        if line.starts_with("PUT ") {
            return (200, "text/plain", String::new());
        }
        if body.contains("Agent 2") {
            return (
                400,
                "application/json",
                r#"{"type":"validation_error","errors":[{"code":"invalid","detail":"Unknown channel.","attr":"channel_id"}]}"#.into(),
            );
        }
        created(conversation.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    });
    let out = corpus.upload_to(&server.url).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report[2]["status"], "failed");
    assert_eq!(report[2]["attempts"], "1");
    assert_eq!(
        report[2]["error"],
        "call 1: HTTP 400: channel_id: Unknown channel."
    );
    for i in [0, 1, 3] {
        assert_eq!(report[i]["status"], "uploaded", "{:?}", report[i]);
    }
    assert_eq!(
        server
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("POST"))
            .count(),
        4
    );
}

#[test]
fn an_expired_target_is_renewed_once_and_noted() {
    let corpus = Corpus::new(3, |_| 300);
    let uploads = std::sync::atomic::AtomicUsize::new(0);
    let conversation = std::sync::atomic::AtomicUsize::new(0);
    let server = Scripted::start(move |line, _| {
        if line.starts_with("PUT ") {
            // The very first upload finds its target expired.
            if uploads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return (
                    403,
                    "application/xml",
                    "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>".into(),
                );
            }
            return (200, "text/plain", String::new());
        }
        created(conversation.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    });
    let out = corpus
        .upload_to(&server.url)
        .args(["--concurrency", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report[0]["status"], "uploaded");
    assert_eq!(
        report[0]["conversation_id"], "c-1",
        "the renewed conversation"
    );
    assert_eq!(
        report[0]["notes"],
        "the upload target expired (HTTP 403: AccessDenied: Request has expired); call 1 was made again, and conversation c-0 keeps no audio"
    );
    assert_eq!(report[1]["notes"], "");
}

#[test]
fn kill_9_mid_run_then_rerun_completes_with_no_double_upload() {
    // Every request waits 1.5 s before it is read, so the workers move in step, and a 6 MiB
    // upload cannot finish before the sandbox reads it: the kill lands while the first four
    // uploads are under way, after their call 1 was journaled.
    let sandbox = Sandbox::start(&["--latency-ms", "1500"]);
    let corpus = Corpus::new(8, |i| (6 << 20) + i);
    let mut child = corpus.spawn_upload(&sandbox, &["--concurrency", "4"]);
    wait_for_conversations(&sandbox, 4, &mut child);
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !corpus.dir.join("manifest.report.csv").exists(),
        "no report after kill -9"
    );
    assert!(sandbox.conversations().values().all(|c| c["uploads"] == 0));

    let out = corpus
        .upload(&sandbox)
        .args(["--concurrency", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_every_row_uploaded_once(&corpus, &sandbox);
    let report = corpus.report();
    let resumed = report
        .iter()
        .filter(|r| r["notes"].starts_with("resumed with the upload target"))
        .count();
    assert_eq!(
        resumed, 4,
        "the rows killed mid-upload finish with their own targets"
    );
    assert_eq!(
        sandbox.conversations().len(),
        8,
        "no second conversation for any row"
    );
}

#[test]
fn a_rows_validation_warnings_are_in_its_notes_when_it_is_uploaded() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(2, |_| 2_000);
    // Row 2's date is in the future, and its WAV file is named .mp3: both warnings, no error.
    std::fs::rename(
        corpus.dir.join("calls/0001.wav"),
        corpus.dir.join("calls/0001.mp3"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(corpus.dir.join("manifest.csv"))
        .unwrap()
        .replace(
            "calls/0001.wav,support,2024-03-02",
            "calls/0001.mp3,support,2099-03-02",
        );
    std::fs::write(corpus.dir.join("manifest.csv"), manifest).unwrap();
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report[0]["notes"], "");
    assert_eq!(report[1]["status"], "uploaded");
    let notes = &report[1]["notes"];
    assert!(
        notes.starts_with(
            "warning: file \"calls/0001.mp3\": the extension .mp3 does not match the contents, which are WAV (expected .wav); \
             warning: call_date \"2099-03-02\": date is in the future (today is "
        ),
        "{notes}"
    );
}

#[test]
fn a_base_url_where_nothing_listens_stops_the_run_after_the_first_rows_retries_with_exit_2() {
    // A wrong base URL is found on the first call, not a million rows later.
    let corpus = Corpus::new(40, |_| 1_000);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = corpus
        .upload_to(&url)
        .args(["--retries", "2", "--concurrency", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = stderr_of(&out);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot connect"))
        .collect();
    assert_eq!(errors.len(), 1, "one message: {stderr}");
    assert!(
        errors[0].starts_with("error: call 1 could not be made: cannot connect to 127.0.0.1:")
            && errors[0].contains("; check --base-url (http://127.0.0.1:"),
        "{stderr}"
    );
    let report = corpus.report();
    assert_eq!(report.len(), 40);
    let failed = report.iter().filter(|r| r["status"] == "failed").count();
    assert!(
        (1..=4).contains(&failed),
        "only the rows in flight: {failed}"
    );
    assert!(
        report
            .iter()
            .all(|r| r["status"] == "failed" || r["status"] == "not_attempted")
    );
}

#[test]
fn the_report_of_a_rerun_still_says_which_rows_may_have_left_conversations_without_audio() {
    // The report of the run that finishes an import is the one kept: it must not forget what
    // earlier runs noted.
    let sandbox = Sandbox::start(&["--ambiguous-rate", "0.3", "--seed", "11"]);
    let corpus = Corpus::new(20, |_| 1_000);
    let out = corpus
        .upload(&sandbox)
        .args(["--retries", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let noted: Vec<(String, usize)> = corpus
        .report()
        .iter()
        .filter(|r| r["notes"].starts_with("call 1 retried after"))
        .map(|r| {
            let n = r["notes"]
                .strip_prefix("call 1 retried after ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            (r["line"].clone(), n)
        })
        .collect();
    assert!(!noted.is_empty(), "the seed gives ambiguous failures");

    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(report.iter().all(|r| r["status"] == "already_uploaded"));
    let carried: Vec<(String, usize)> = report
        .iter()
        .filter(|r| !r["notes"].is_empty())
        .map(|r| {
            let notes = &r["notes"];
            let n = if notes.contains("may hold a conversation without audio") {
                1
            } else {
                notes
                    .split("may hold up to ")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            assert!(
                notes.starts_with("earlier runs for this row: Voyc may hold"),
                "{notes}"
            );
            (r["line"].clone(), n)
        })
        .collect();
    assert_eq!(carried, noted);
}

#[test]
fn a_plain_http_base_url_is_reached_directly_never_through_a_proxy() {
    // Through an HTTP proxy, call 1 and its bearer token would reach the proxy in clear. This
    // "proxy" accepts connections (the kernel does) and never answers.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(2, |_| 2_000);
    let with_proxy = |cmd: &mut assert_cmd::Command| {
        for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env(name, &proxy_url);
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    };
    let mut cmd = corpus.upload(&sandbox);
    with_proxy(&mut cmd);
    let out = cmd.args(["--timeout", "5s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_every_row_uploaded_once(&corpus, &sandbox);

    let mut cmd = voyc(corpus.path());
    with_proxy(&mut cmd);
    let out = cmd
        .args([
            "upload",
            "manifest.csv",
            "--sandbox",
            "--report",
            "in-process.csv",
        ])
        .args(["--timeout", "5s"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the proxy was contacted"
    );
}

#[test]
fn an_overlapping_run_of_the_same_import_is_refused_at_once_and_sends_nothing() {
    // A nightly cron job that outlives its night: the next one must not send the rows the
    // first has not recorded yet, nor overwrite its report.
    let sandbox = Sandbox::start(&["--latency-ms", "1000"]);
    let corpus = Corpus::new(6, |_| 2_000);
    let mut first = corpus.spawn_upload(&sandbox, &["--concurrency", "2"]);
    wait_for_conversations(&sandbox, 2, &mut first);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "error: another voyc-import upload is writing the report manifest.report.csv (it holds .manifest.report.csv.lock); wait for it to finish"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("rows valid"),
        "refused before validating: {stderr}"
    );

    let out = wait_with_timeout(first, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_every_row_uploaded_once(&corpus, &sandbox);
    assert_eq!(
        sandbox.conversations().len(),
        6,
        "no conversation from the refused run"
    );
    assert!(!corpus.dir.join(".manifest.report.csv.lock").exists());
    // The lock goes with the run: the next night's run starts, and finds everything done.
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        corpus
            .report()
            .iter()
            .all(|row| row["status"] == "already_uploaded")
    );
}

#[test]
fn ctrl_c_writes_the_report_with_not_attempted_rows_and_exits_130_then_a_rerun_finishes() {
    let sandbox = Sandbox::start(&["--latency-ms", "1000"]);
    let corpus = Corpus::new(16, |_| 2_000);
    let mut child = corpus.spawn_upload(&sandbox, &["--concurrency", "2"]);
    wait_for_conversations(&sandbox, 2, &mut child);
    signal(&child, "INT");
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let stderr = stderr_of(&out);
    let summary = stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("interrupted: 2 uploaded, 14 not attempted; report manifest.report.csv; run the same command to resume"),
        "{stderr}"
    );
    let report = corpus.report();
    assert_eq!(report.len(), 16);
    assert_eq!(
        report.iter().filter(|r| r["status"] == "uploaded").count(),
        2,
        "in-flight rows finished"
    );
    assert_eq!(
        report
            .iter()
            .filter(|r| r["status"] == "not_attempted")
            .count(),
        14
    );

    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("resuming: 2 rows already uploaded"),
        "{stderr}"
    );
    let report = corpus.report();
    assert_eq!(
        report
            .iter()
            .filter(|r| r["status"] == "already_uploaded")
            .count(),
        2
    );
    assert_every_row_uploaded_once(&corpus, &sandbox);
}

#[test]
fn a_second_ctrl_c_aborts_the_rows_in_flight() {
    let sandbox = Sandbox::start(&["--latency-ms", "3000"]);
    let corpus = Corpus::new(6, |_| 2_000);
    let child = corpus.spawn_upload(&sandbox, &["--concurrency", "2"]);
    // The journal appears just before the signal handler is installed and call 1 is sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !corpus.dir.join("manifest.report.csv.journal").exists() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    let started = Instant::now();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    // Finishing would take another 5 s of sandbox latency.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "aborted, not finished"
    );
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report.iter().all(|r| r["status"] == "not_attempted"),
        "{report:?}"
    );
    // Under load a worker may not have taken row 0 by the first interrupt: whichever rows were
    // in flight say they were aborted.
    assert!(
        report
            .iter()
            .any(|r| r["notes"].starts_with("aborted by a second interrupt")),
        "{report:?}"
    );
}

pub(crate) fn wait_for_conversations(sandbox: &Sandbox, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandbox.conversations().len() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the upload ended early: {status}");
        }
        assert!(Instant::now() < deadline, "no conversations after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub(crate) fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the upload did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_token_appears_nowhere_in_output_report_or_journal() {
    let secret = "tok-5f3a9c1e-VERY-SECRET";
    let sandbox = Sandbox::start(&[
        "--token",
        secret,
        "--s3-fail-rate",
        "0.3",
        "--ambiguous-rate",
        "0.2",
        "--seed",
        "3",
    ]);
    let corpus = Corpus::new(10, |_| 1_000);
    let out = corpus
        .upload(&sandbox)
        .env("VOYC_TOKEN", secret)
        .args(["--report", "r.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // And a run with the token refused, whose messages quote the server.
    let refused = corpus
        .upload(&sandbox)
        .env("VOYC_TOKEN", format!("{secret}-old"))
        .args(["--report", "refused.csv"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    let mut haystacks = vec![out.stdout, out.stderr, refused.stdout, refused.stderr];
    for entry in std::fs::read_dir(corpus.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            haystacks.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(
        haystacks.len() >= 8,
        "the report, the journal and its WAL were read"
    );
    for haystack in haystacks {
        assert!(
            !haystack
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "the token leaked: {}",
            String::from_utf8_lossy(&haystack)
        );
    }
}

#[test]
fn a_token_file_is_read_and_a_missing_token_is_a_usage_error() {
    let sandbox = Sandbox::start(&["--token", "from-a-file"]);
    let corpus = Corpus::new(2, |_| 1_000);
    corpus.dir.write("token.txt", "from-a-file\n");
    let out = corpus
        .upload(&sandbox)
        .env_remove("VOYC_TOKEN")
        .args(["--token-file", "token.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = corpus
        .upload(&sandbox)
        .env_remove("VOYC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr_of(&out).contains("no token: set VOYC_TOKEN or pass --token-file"));
}

#[test]
fn plain_http_to_a_remote_host_is_refused_before_anything_is_sent() {
    let corpus = Corpus::new(1, |_| 1_000);
    let out = corpus.upload_to("http://api.example.com").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr_of(&out).contains("plain http:// to a host that is not loopback"));
}

/// A manifest whose row 3 (line 4) has an impossible date.
fn corpus_with_an_invalid_row() -> Corpus {
    let corpus = Corpus::new(5, |_| 1_000);
    let manifest = std::fs::read_to_string(corpus.manifest()).unwrap();
    let manifest = manifest.replace("2024-03-03", "2024-02-30");
    corpus.dir.write("manifest.csv", manifest);
    corpus
}

#[test]
fn an_invalid_row_stops_everything_before_the_first_call() {
    let sandbox = Sandbox::start(&[]);
    let corpus = corpus_with_an_invalid_row();
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("manifest.csv:4: call_date \"2024-02-30\": not a valid date"),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-invalid"), "{stderr}");
    assert!(sandbox.conversations().is_empty(), "no network call");
    assert!(!corpus.dir.join("manifest.report.csv").exists());
}

#[test]
fn skip_invalid_uploads_the_rest_and_reports_the_invalid_row() {
    let sandbox = Sandbox::start(&[]);
    let corpus = corpus_with_an_invalid_row();
    let out = corpus
        .upload(&sandbox)
        .arg("--skip-invalid")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report.len(), 5);
    assert_eq!(report[2]["status"], "invalid");
    assert!(
        report[2]["error"].contains("call_date \"2024-02-30\": not a valid date"),
        "{:?}",
        report[2]
    );
    assert_eq!(
        report.iter().filter(|r| r["status"] == "uploaded").count(),
        4
    );
    assert_eq!(sandbox.conversations().len(), 4);
    assert!(
        stderr_of(&out)
            .lines()
            .last()
            .unwrap()
            .starts_with("done: 4 uploaded, 1 invalid in ")
    );
}

#[test]
fn an_invalid_row_whose_fields_cannot_all_be_read_still_names_its_file_in_the_report() {
    let sandbox = Sandbox::start(&[]);
    let dir = Dir::new();
    let out = voyc(dir.path())
        .env("VOYC_TOKEN", TOKEN)
        .arg("upload")
        .arg(samples().join("bad-manifest.csv"))
        .args(["--org", "118", "--base-url", &sandbox.url, "--skip-invalid"])
        .args(["--report", "r.csv"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = read_report(&dir.join("r.csv"));
    let row = |line: &str| report.iter().find(|r| r["line"] == line).unwrap();
    // Line 10 has one field too few; line 15 has a Latin-1 byte in another column.
    assert_eq!(row("10")["status"], "invalid");
    assert!(row("10")["error"].contains("this row has 7 fields, but the header has 8"));
    assert_eq!(row("10")["file"], "calls/0008.wav");
    assert_eq!(row("15")["status"], "invalid");
    assert!(row("15")["error"].contains("not valid UTF-8"));
    assert_eq!(row("15")["file"], "calls/0009.wav");
}

#[test]
fn dry_run_prints_what_would_be_sent_and_sends_nothing() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |i| 1_000 + i);
    let out = corpus
        .upload(&sandbox)
        .arg("--dry-run")
        .env_remove("VOYC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"manifest.csv:2: calls/0000.wav (1,000 bytes): {"channel_id":"support","call_date":"2024-03-01","call_time":"09:00:00","agent":"Agent 0","crm_ticket":"T-0"}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("dry run: 3 rows, 2.9 KiB would be sent to"),
        "{stdout}"
    );
    assert!(sandbox.conversations().is_empty());
    assert!(!corpus.dir.join("manifest.report.csv").exists());
    assert!(!corpus.dir.join("manifest.report.csv.journal").exists());

    // It exits as the real run would if every call succeeded: rows left beyond --limit make it 1.
    let out = corpus
        .upload(&sandbox)
        .args(["--dry-run", "--limit", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run: 2 rows,"));
    assert!(sandbox.conversations().is_empty());
}

#[test]
fn limit_uploads_only_the_first_rows_and_reports_the_rest_not_attempted() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(5, |_| 1_000);
    let out = corpus
        .upload(&sandbox)
        .args(["--limit", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let statuses: Vec<String> = corpus
        .report()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            "uploaded",
            "uploaded",
            "not_attempted",
            "not_attempted",
            "not_attempted"
        ]
    );
    assert_eq!(corpus.report()[4]["notes"], "beyond --limit 2");
    assert_eq!(sandbox.conversations().len(), 2);
}

#[test]
fn a_rerun_reads_no_file_of_a_row_already_uploaded_and_every_file_of_the_others() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |_| 1_000);
    assert_eq!(
        corpus.upload(&sandbox).output().unwrap().status.code(),
        Some(0)
    );
    // The first row's file, uploaded, is now the same size but not audio: the rerun sends
    // nothing of it, so it does not open it, and the run goes on.
    corpus.dir.write("calls/0000.wav", vec![b'x'; 1_000]);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report.iter().all(|r| r["status"] == "already_uploaded"),
        "{report:?}"
    );
    // `validate` still reads every file.
    let validate = voyc(corpus.path())
        .args(["validate", "manifest.csv"])
        .output()
        .unwrap();
    assert_ne!(validate.status.code(), Some(0), "{}", show(&validate));
    assert!(
        String::from_utf8_lossy(&validate.stdout)
            .contains("manifest.csv:2: file \"calls/0000.wav\": is not audio"),
        "{}",
        show(&validate)
    );
    // A new row's file is read: one that is not audio stops the run before anything is sent.
    corpus.dir.write("calls/new.wav", vec![b'y'; 1_000]);
    let manifest = std::fs::read_to_string(corpus.manifest()).unwrap()
        + "calls/new.wav,support,2024-03-09,10:00:00,Agent 9,T-9\n";
    corpus.dir.write("manifest.csv", manifest);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let said = untimed(&out);
    assert!(
        said.contains("manifest.csv:5: file \"calls/new.wav\": is not audio"),
        "{said}"
    );
    assert!(!said.contains("calls/0000.wav"), "{said}");
    assert_eq!(sandbox.conversations().len(), 3);
}

#[test]
fn a_rerun_of_a_finished_import_uploads_nothing_and_exits_0() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(4, |_| 1_000);
    assert_eq!(
        corpus.upload(&sandbox).output().unwrap().status.code(),
        Some(0)
    );
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        corpus
            .report()
            .iter()
            .all(|r| r["status"] == "already_uploaded")
    );
    let dry = corpus.upload(&sandbox).arg("--dry-run").output().unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains("manifest.csv:3: calls/0001.wav: already uploaded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dry run: 0 rows, 0 B would be sent to"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(4 already uploaded); nothing was sent"),
        "{stdout}"
    );
    assert_eq!(sandbox.conversations().len(), 4);
    // Changing a row's metadata makes it a new row, but its file (same path and size) was
    // uploaded: it is not sent again unless --reupload-changed says so.
    let manifest = std::fs::read_to_string(corpus.manifest())
        .unwrap()
        .replace("T-1", "T-1b");
    corpus.dir.write("manifest.csv", manifest);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let row = &corpus.report()[1];
    assert_eq!(row["status"], "already_uploaded");
    assert!(
        row["notes"].contains(r#"crm_ticket "T-1" → "T-1b""#),
        "{row:?}"
    );
    assert_eq!(sandbox.conversations().len(), 4);
    let out = corpus
        .upload(&sandbox)
        .arg("--reupload-changed")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(corpus.report()[1]["status"], "uploaded");
    assert_eq!(sandbox.conversations().len(), 5);
}

/// Puts a journal of this version back in the layout voyc-import wrote before schema 5:
/// rows found by identity, a target in its row, a path for uploaded rows only.
fn as_schema_4(journal: &Path) {
    let db = rusqlite::Connection::open(journal).unwrap();
    db.execute_batch(
        "BEGIN;
         CREATE TABLE rows_v4 (id INTEGER PRIMARY KEY, destination INTEGER NOT NULL,
             identity TEXT NOT NULL, file TEXT NOT NULL, line INTEGER NOT NULL,
             state TEXT NOT NULL, conversation_id TEXT, target TEXT, target_expires_at TEXT,
             bytes INTEGER, sha256 TEXT, error TEXT, updated_at TEXT NOT NULL,
             claimed_by INTEGER, run INTEGER, path TEXT, size INTEGER, body TEXT);
         INSERT INTO rows_v4 SELECT id, destination, identity, file, line, state, conversation_id,
             (SELECT t.target FROM targets t WHERE t.id = target_id), target_expires_at, bytes,
             sha256, error, updated_at, claimed_by, run,
             CASE WHEN state = 'uploaded' THEN path END, size, body FROM rows;
         DROP TABLE rows;
         ALTER TABLE rows_v4 RENAME TO rows;
         DROP TABLE targets;
         DROP INDEX conversations_before_5;
         ALTER TABLE conversations DROP COLUMN path;
         CREATE UNIQUE INDEX rows_identity ON rows (destination, identity);
         CREATE INDEX rows_claimed ON rows (claimed_by) WHERE claimed_by IS NOT NULL;
         CREATE INDEX rows_uploaded_file ON rows (destination, path, size) WHERE state = 'uploaded';
         UPDATE meta SET value = '4' WHERE key = 'schema_version';
         PRAGMA user_version = 4;
         COMMIT;",
    )
    .unwrap();
}

fn schema_of(journal: &Path) -> i64 {
    rusqlite::Connection::open(journal)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn an_import_journaled_by_the_version_before_resumes_and_sends_only_what_it_did_not() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |i| 1_000 + i);
    assert_eq!(
        corpus.upload(&sandbox).output().unwrap().status.code(),
        Some(0)
    );
    let journal = corpus.path().join("manifest.report.csv.journal");
    as_schema_4(&journal);
    // One row more, and one re-exported with other metadata.
    corpus.dir.write("calls/new.wav", wav(9, 1_500));
    let manifest = std::fs::read_to_string(corpus.manifest())
        .unwrap()
        .replace("T-1", "T-1b")
        + "calls/new.wav,support,2024-03-09,10:00:00,Agent 9,T-9\n";
    corpus.dir.write("manifest.csv", manifest);
    // A dry run reads the old journal as it is, and leaves it so.
    let dry = corpus.upload(&sandbox).arg("--dry-run").output().unwrap();
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains("dry run: 1 row, 1.5 KiB would be sent to"),
        "{}",
        show(&dry)
    );
    assert_eq!(schema_of(&journal), 4);
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(schema_of(&journal), 5, "brought up to date");
    let report = corpus.report();
    let statuses: Vec<&str> = report.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "already_uploaded",
            "already_uploaded",
            "already_uploaded",
            "uploaded"
        ]
    );
    assert!(
        report[1]["notes"].contains(r#"crm_ticket "T-1" → "T-1b""#),
        "the re-export is found in the old rows: {:?}",
        report[1]
    );
    assert_eq!(
        sandbox.conversations().len(),
        4,
        "only the new row was sent"
    );
    let out = corpus.upload(&sandbox).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        corpus
            .report()
            .iter()
            .all(|r| r["status"] == "already_uploaded")
    );
    assert_eq!(sandbox.conversations().len(), 4);
}

#[test]
fn without_a_terminal_progress_is_plain_lines_and_quiet_prints_nothing_when_every_row_succeeded() {
    let sandbox = Sandbox::start(&[]);
    let corpus = Corpus::new(3, |_| 1_000);
    let out = corpus.upload(&sandbox).output().unwrap();
    let stderr = stderr_of(&out);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    let out = corpus.upload(&sandbox).arg("--quiet").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(stderr_of(&out), "", "nothing for cron to mail");
    assert!(out.stdout.is_empty());
    // A failed row is not silent: it and the summary are printed.
    let more = Corpus::new(4, |_| 1_000);
    std::fs::write(more.path().join("calls/0003.wav"), b"").unwrap();
    let out = more
        .upload(&sandbox)
        .args(["--quiet", "--skip-invalid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("done: 3 uploaded, 1 invalid"),
        "{stderr}"
    );
}

/// `openssl s_server` with a certificate from a private CA, stopped when dropped.
struct TlsServer {
    child: Child,
    url: String,
    ca: PathBuf,
}

impl TlsServer {
    fn start(dir: &Dir) -> TlsServer {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl (CI installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", show(&out));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=voyc-test-ca",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        dir.write(
            "leaf.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "leaf.pem",
                "-key",
                "leaf.key",
                "-www",
                "-quiet",
            ])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: dir.join("ca.pem"),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_untrusted_certificate_stops_the_run_at_once_and_ca_cert_lets_it_through() {
    let corpus = Corpus::new(3, |_| 1_000);
    let server = TlsServer::start(&corpus.dir);
    let out = corpus.upload_to(&server.url).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("is not trusted (UnknownIssuer); if a corporate proxy inspects TLS, pass its root certificate with --ca-cert PEM"),
        "{stderr}"
    );
    for row in corpus.report().iter().filter(|r| r["status"] == "failed") {
        assert_eq!(row["attempts"], "1", "not retried: {row:?}");
    }

    // With the CA trusted the handshake succeeds; s_server then never answers the POST.
    let out = corpus
        .upload_to(&server.url)
        .args([
            "--retries",
            "0",
            "--timeout",
            "1s",
            "--concurrency",
            "1",
            "--limit",
            "1",
        ])
        .arg("--ca-cert")
        .arg(&server.ca)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        corpus.report()[0]["error"],
        "call 1: no complete answer within 1s (--timeout)"
    );
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    let sandbox = Sandbox::start(&["--latency-ms", "800"]);
    let corpus = Corpus::new(6, |_| 2_000);
    let mut child = corpus.spawn_upload(&sandbox, &["--concurrency", "1"]);
    wait_for_conversations(&sandbox, 1, &mut child);
    signal(&child, "TERM");
    let out = wait_with_timeout(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(130), "{}", show(&out));
    let statuses: Vec<String> = corpus
        .report()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            "uploaded",
            "not_attempted",
            "not_attempted",
            "not_attempted",
            "not_attempted",
            "not_attempted"
        ]
    );
}

#[test]
fn allow_empty_makes_a_day_without_calls_exit_0_with_one_line_and_an_empty_report() {
    let dir = Dir::new();
    dir.write("today.csv", "file,channel_id,call_date,call_time,agent\n");
    dir.write("empty.jsonl", "");
    let out = voyc(dir.path())
        .args(["upload", "today.csv", "--sandbox", "--allow-empty"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        stderr_of(&out),
        "today.csv: no rows, nothing to send (--allow-empty); report today.report.csv\n"
    );
    let report = std::fs::read_to_string(dir.join("today.report.csv")).unwrap();
    assert_eq!(report.lines().count(), 1, "the header only: {report}");
    let quiet = voyc(dir.path())
        .args([
            "upload",
            "empty.jsonl",
            "--sandbox",
            "--allow-empty",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(quiet.status.code(), Some(0), "{}", show(&quiet));
    assert!(quiet.stderr.is_empty(), "{}", show(&quiet));
    // Without the flag it stays an error, and so does a header that is wrong with it.
    let without = voyc(dir.path())
        .args(["upload", "today.csv", "--sandbox"])
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(2), "{}", show(&without));
    dir.write(
        "wrong.csv",
        "recording,channel_id,call_date,call_time,agent\n",
    );
    let wrong = voyc(dir.path())
        .args(["upload", "wrong.csv", "--sandbox", "--allow-empty"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2), "{}", show(&wrong));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("file: required, but no column"),
        "{}",
        show(&wrong)
    );
}

//! Files that change under a run, names no terminal should see raw, and a process short of
//! descriptors, end to end: each is a clear answer on its row (or no problem at all), never a
//! file sent cut short, a hang, a row called invalid for our own limits, or a raw control
//! character in the output.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::upload::{Corpus, Sandbox, read_report, wav};
use crate::util::{Dir, show, voyc};
use voyc_testkit::threaded::Scripted;

const TOKEN: &str = "sandbox-token";

/// Call 1's answer for conversation `c-N`, with a presigned PUT on the same server.
fn created(n: usize) -> (u16, &'static str, String) {
    (
        201,
        "application/json",
        format!(r#"{{"conversation_id": "c-{n}", "upload_url": "/s3/b/{n}"}}"#),
    )
}

fn calls(server: &Scripted, prefix: &str) -> Vec<String> {
    let seen = server.seen.lock().unwrap();
    seen.iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn a_file_that_grows_after_its_check_fails_its_row_and_a_rerun_sends_it_to_the_same_conversation() {
    let corpus = Corpus::new(2, |_| 3_000);
    let recording = corpus.path().join("calls/0000.wav");
    let grown = Arc::new(AtomicBool::new(false));
    let server = Scripted::start({
        let grown = grown.clone();
        move |line, body| {
            if line.starts_with("PUT ") {
                return (200, "text/plain", String::new());
            }
            // While call 1 is answered, the recording is still being written to: the upload
            // has opened it already (or is about to).
            if body.contains("Agent 0") && !grown.swap(true, Ordering::SeqCst) {
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&recording)
                    .unwrap();
                std::io::Write::write_all(&mut file, &[7; 500]).unwrap();
            }
            // Conversation c-N for the row of Agent N, whichever call 1 comes first.
            created(usize::from(!body.contains("Agent 0")))
        }
    });
    let out = corpus.upload_to(&server.url).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = corpus.report();
    let row = &report[0];
    assert_eq!(row["status"], "failed", "{row:?}");
    assert_eq!(row["conversation_id"], "c-0");
    assert!(
        row["error"].starts_with("upload: ") && row["error"].contains("calls/0000.wav changed "),
        "{row:?}"
    );
    assert!(
        row["error"].contains("(3000 bytes when checked, 3500 now); once it no longer changes, run the same command again to upload it to the same conversation"),
        "{row:?}"
    );
    assert_eq!(report[1]["status"], "uploaded");

    // The recording is complete now: the rerun sends it to the target it already has.
    let out = corpus.upload_to(&server.url).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let row = &corpus.report()[0];
    assert_eq!(row["status"], "uploaded", "{row:?}");
    assert_eq!(row["conversation_id"], "c-0", "the same conversation");
    assert_eq!(row["bytes"], "3500");
    assert_eq!(
        calls(&server, "POST").len(),
        2,
        "no second call 1 for the row"
    );
    assert_eq!(
        calls(&server, "PUT /s3/b/0").len(),
        1,
        "one upload reached S3 whole: {:?}",
        server.seen.lock().unwrap()
    );
}

#[cfg(unix)]
#[test]
fn a_named_pipe_put_in_place_of_a_file_after_its_check_fails_its_row_instead_of_hanging() {
    let corpus = Corpus::new(1, |_| 3_000);
    let recording = corpus.path().join("calls/0000.wav");
    let uploads = AtomicUsize::new(0);
    let server = Scripted::start(move |line, _| {
        if line.starts_with("PUT ") {
            // The first attempt fails transiently; meanwhile the file becomes a named pipe,
            // which the retry opens afresh.
            if uploads.fetch_add(1, Ordering::SeqCst) == 0 {
                std::fs::remove_file(&recording).unwrap();
                let made = Command::new("mkfifo").arg(&recording).status().unwrap();
                assert!(made.success());
                return (503, "text/plain", "busy".into());
            }
            return (200, "text/plain", String::new());
        }
        created(0)
    });
    let out = corpus
        .upload_to(&server.url)
        // A hang is the failure this test is about: the command is killed long before
        // the default.
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let row = &corpus.report()[0];
    assert_eq!(row["status"], "failed");
    assert!(
        row["error"].contains(
            "calls/0000.wav changed since it was checked (it is now a named pipe, not a regular file)"
        ),
        "{row:?}"
    );
}

/// The upload command with `RLIMIT_NOFILE` set to `soft` (and `hard`, if given) in the child.
#[cfg(unix)]
fn upload_with_open_file_limit(
    corpus: &Corpus,
    sandbox: &Sandbox,
    soft: u64,
    hard: Option<u64>,
) -> Output {
    use std::os::unix::process::CommandExt as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_voyc-import"));
    command
        .current_dir(corpus.path())
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL")
        .env("VOYC_TOKEN", TOKEN)
        .args(["upload", "manifest.csv", "--org", "118"])
        .args(["--base-url", &sandbox.url, "--concurrency", "64"])
        .stdin(Stdio::null());
    // SAFETY: only getrlimit and setrlimit run between fork and exec, both async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = soft as libc::rlim_t;
            if let Some(hard) = hard {
                limit.rlim_max = hard as libc::rlim_t;
            }
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert_cmd::Command::from_std(command)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn a_low_open_file_limit_still_uploads_every_row_and_never_calls_one_invalid() {
    // Call 1 takes a while, so that all 64 rows in flight hold a file and a connection at once.
    let sandbox = Sandbox::start(&["--latency-ms", "100"]);
    // A low soft limit under a higher hard one: raised at start.
    let corpus = Corpus::new(150, |i| 2_000 + i);
    let out = upload_with_open_file_limit(&corpus, &sandbox, 64, None);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        corpus
            .report()
            .iter()
            .all(|row| row["status"] == "uploaded"),
        "{}",
        show(&out)
    );

    // A hard limit as low: fewer rows in flight, said once.
    let corpus = Corpus::new(150, |i| 2_000 + i);
    let out = upload_with_open_file_limit(&corpus, &sandbox, 100, Some(100));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--concurrency 64 lowered to ")
            && stderr.contains(": this process may open only 100 files at once (ulimit -n); raise the limit to upload more rows at a time"),
        "{stderr}"
    );
    let report = corpus.report();
    assert!(
        report.iter().all(|row| row["status"] == "uploaded"),
        "{report:?}"
    );
    let conversations = sandbox.conversations();
    assert_eq!(conversations.len(), 300);
    assert!(
        conversations.values().all(|c| c["uploaded"] == true),
        "no conversation without audio"
    );
}

/// Control characters in `text`, other than the line feeds that end its lines.
fn raw_controls(text: &[u8]) -> Vec<u8> {
    text.iter()
        .copied()
        .filter(|b| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
        .collect()
}

#[test]
fn a_file_name_with_control_characters_is_uploaded_and_shown_escaped_everywhere() {
    let dir = Dir::new();
    let name = "a\nb\r\u{1b}[31m.wav";
    dir.write(name, wav(1, 2_000));
    let manifest = "calls\u{1b}[2J.csv";
    dir.write(
        manifest,
        format!(
            "file,channel_id,call_date,call_time,agent\n\"{name}\",support,2024-03-01,09:00:00,Agent 1\n"
        ),
    );
    let escaped = r"a\nb\r\u{1b}[31m.wav";

    let sandbox = Sandbox::start(&[]);
    let upload = |extra: &[&str]| {
        voyc(dir.path())
            .env("VOYC_TOKEN", TOKEN)
            .args([
                "upload",
                manifest,
                "--org",
                "118",
                "--base-url",
                &sandbox.url,
            ])
            .args(extra)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    };
    let dry = upload(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", show(&dry));
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.starts_with(&format!(
            r"calls\u{{1b}}[2J.csv:2: {escaped} (2,000 bytes): "
        )),
        "{stdout}"
    );
    assert_eq!(raw_controls(&dry.stdout), b"", "{stdout}");
    assert_eq!(raw_controls(&dry.stderr), b"", "{}", show(&dry));

    // The presigned POST names the file neutrally, so S3 (here the sandbox) takes it.
    let out = upload(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(raw_controls(&out.stderr), b"", "{}", show(&out));
    let report = read_report(&dir.join("calls\u{1b}[2J.report.csv"));
    assert_eq!(report[0]["status"], "uploaded", "{report:?}");
    assert_eq!(
        report[0]["file"], name,
        "the report keeps the name as written"
    );

    // A failed row's log line escapes the name too.
    let server = Scripted::start(|_, _| {
        (
            400,
            "application/json",
            r#"{"channel_id": ["Unknown channel."]}"#.into(),
        )
    });
    let failed = voyc(dir.path())
        .env("VOYC_TOKEN", TOKEN)
        .args([
            "upload",
            manifest,
            "--org",
            "118",
            "--base-url",
            &server.url,
        ])
        .args(["--report", "failed.csv"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", show(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!(
            r"calls\u{{1b}}[2J.csv:2: {escaped}: failed: call 1: HTTP 400: channel_id: Unknown channel."
        )),
        "{stderr}"
    );
    assert_eq!(raw_controls(&failed.stderr), b"", "{stderr}");
}

#[test]
fn an_organisation_of_dots_is_refused_before_anything_is_sent() {
    let corpus = Corpus::new(1, |_| 1_000);
    let sandbox = Sandbox::start(&[]);
    for org in [".", ".."] {
        let out = voyc(corpus.path())
            .env("VOYC_TOKEN", TOKEN)
            .args([
                "upload",
                "manifest.csv",
                "--org",
                org,
                "--base-url",
                &sandbox.url,
            ])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error: --org {org:?} is not an organisation id: in a URL it would mean the current or the parent folder, so call 1 would go to another path\n"
            )
        );
    }
    assert!(sandbox.conversations().is_empty());
}

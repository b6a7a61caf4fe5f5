//! Hostile input and hostile servers, end to end. Each bad manifest or path gets a clear error
//! that names its line (or the file, when the whole file is at fault) and nothing reaches a
//! spawned sandbox (checked through its inspection endpoint). Each hostile answer to call 1 or
//! to an upload is a clear error on its rows, within the timeouts, never a crash.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::upload::{Sandbox, read_report, wav};
use crate::util::{Dir, show, voyc};
use voyc_testkit::threaded::{Hostile, Raw, http};

const TOKEN: &str = "sandbox-token";
const HEADER: &str = "file,channel_id,call_date,call_time,agent";

/// A folder with three audio files, `a.wav`, `b.wav`, `c.wav`.
fn folder() -> Dir {
    let dir = Dir::new();
    for (i, name) in ["a.wav", "b.wav", "c.wav"].iter().enumerate() {
        dir.write(name, wav(i, 2_000));
    }
    dir
}

/// `voyc-import upload MANIFEST` in `dir` against `base_url`, bounded in time.
fn upload(dir: &Dir, manifest: &str, base_url: &str, extra: &[&str]) -> Output {
    voyc(dir.path())
        .env("VOYC_TOKEN", TOKEN)
        .args(["upload", manifest, "--org", "118", "--base-url", base_url])
        .args(extra)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

fn stderr_of(out: &Output) -> String {
    crate::util::untimed(out)
}

/// Upload refused before anything was sent: exit 2, every `expected` line on stderr, and the
/// sandbox holds no conversation.
fn assert_refused(out: &Output, sandbox: &Sandbox, expected: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    let stderr = stderr_of(out);
    for line in expected {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "expected a line starting {line:?}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        sandbox.conversations().is_empty(),
        "something reached the sandbox"
    );
}

/// Writes `manifest` and uploads it to a fresh sandbox: it must be refused with `expected`.
fn refused(name: &str, manifest: &[u8], expected: &[&str]) {
    let dir = folder();
    dir.write(name, manifest);
    let sandbox = Sandbox::start(&[]);
    let out = upload(&dir, name, &sandbox.url, &[]);
    assert_refused(&out, &sandbox, expected);
}

#[test]
fn an_empty_manifest_or_one_with_only_a_header_is_refused() {
    refused(
        "m.csv",
        b"",
        &["m.csv:1: the manifest is empty: no header and no rows"],
    );
    refused(
        "m.csv",
        format!("{HEADER}\n").as_bytes(),
        &["m.csv:1: no rows: the manifest has a header but nothing below it"],
    );
    refused(
        "m.jsonl",
        b"\n  \n",
        &["m.jsonl:1: no rows: the manifest has no JSON objects"],
    );
}

#[test]
fn a_header_naming_a_column_twice_is_refused() {
    refused(
        "m.csv",
        b"file,agent,channel_id,call_date,call_time,agent\na.wav,x,1,2024-01-01,10:00:00,y\n",
        &["m.csv:1: agent: the header names this column twice (columns 2 and 6)"],
    );
}

#[test]
fn a_megabyte_field_and_ten_thousand_columns_are_refused_naming_their_line() {
    let big = "x".repeat(1 << 20);
    refused(
        "m.csv",
        format!("{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\nb.wav,1,2024-01-01,10:00:00,{big}\n")
            .as_bytes(),
        &["m.csv:3: this row is 1.0 MiB long; a row may be at most 1 MiB"],
    );
    let long = "y".repeat(100_000);
    refused(
        "m.csv",
        format!("{HEADER},note\na.wav,1,2024-01-01,10:00:00,Ann,{long}\n").as_bytes(),
        &[r#"m.csv:2: note "yyyyy"#],
    );
    let names: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let values = vec!["v"; 10_000];
    refused(
        "m.csv",
        format!(
            "{HEADER},{}\na.wav,1,2024-01-01,10:00:00,Ann,{}\n",
            names.join(","),
            values.join(",")
        )
        .as_bytes(),
        &["m.csv:1: the header has 10005 columns; a manifest may have at most 1000"],
    );
}

#[test]
fn an_unbalanced_quote_is_refused_naming_its_line_instead_of_swallowing_the_rows_below() {
    refused(
        "m.csv",
        format!(
            "{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\nb.wav,1,2024-01-01,10:00:00,\"Bob\nc.wav,1,2024-01-01,10:00:00,Cy\n"
        )
        .as_bytes(),
        &["m.csv:3: a quote opens a value on line 3 and never closes"],
    );
}

#[test]
fn nul_bytes_invalid_utf8_and_utf16_are_refused() {
    refused(
        "m.csv",
        format!("{HEADER}\na.wav,1,2024-01-01,10:00:00,A\0nn\n").as_bytes(),
        &[r#"m.csv:2: agent "A\0nn": holds a NUL byte"#],
    );
    let mut latin1 = format!("{HEADER}\na.wav,1,2024-01-01,10:00:00,Jos").into_bytes();
    latin1.extend_from_slice(b"\xe9\n");
    refused(
        "m.csv",
        &latin1,
        &["m.csv:2: agent \"Jos\u{fffd}\": not valid UTF-8 text; save the manifest as UTF-8"],
    );
    let utf16: Vec<u8> = format!("{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\n")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    refused(
        "m.csv",
        &[&b"\xff\xfe"[..], &utf16].concat(),
        &[
            "m.csv:1: the manifest is not UTF-8 text: it looks like UTF-16 (little-endian); save it as UTF-8",
        ],
    );
    refused(
        "m.csv",
        &utf16,
        &["m.csv:1: the manifest is not UTF-8 text: it looks like UTF-16"],
    );
}

#[test]
fn jsonl_arrays_nulls_nested_objects_and_deep_nesting_are_refused_line_by_line() {
    let deep = format!(
        "{{\"file\":\"c.wav\",\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let manifest = format!(
        "[1,2]\nnull\n\
         {{\"file\":\"a.wav\",\"channel_id\":null,\"call_date\":\"2024-01-01\",\"call_time\":\"10:00:00\",\"agent\":{{\"name\":\"Ann\"}}}}\n\
         {{\"file\":null,\"channel_id\":1,\"call_date\":[\"2024-01-01\"],\"call_time\":\"10:00:00\",\"agent\":\"x\"}}\n\
         {deep}\n"
    );
    refused(
        "m.jsonl",
        manifest.as_bytes(),
        &[
            r#"m.jsonl:1: expected a JSON object ({"file": …}), found an array"#,
            r#"m.jsonl:2: expected a JSON object ({"file": …}), found null"#,
            "m.jsonl:3: channel_id: required, but missing",
            r#"m.jsonl:3: agent "{\"name\":\"Ann\"}": expected a string or a number"#,
            "m.jsonl:4: file: required, but missing",
            r#"m.jsonl:4: call_date "[\"2024-01-01\"]": expected a date as a string"#,
            "m.jsonl:5: not valid JSON: recursion limit exceeded",
        ],
    );
}

#[cfg(unix)]
#[test]
fn a_manifest_that_is_a_folder_a_named_pipe_or_a_symlink_loop_is_refused_at_once() {
    let dir = folder();
    std::fs::create_dir(dir.join("folder.csv")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("pipe.csv"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("loop2.csv", dir.join("loop1.csv")).unwrap();
    std::os::unix::fs::symlink("loop1.csv", dir.join("loop2.csv")).unwrap();
    let sandbox = Sandbox::start(&[]);
    for (name, expected) in [
        (
            "folder.csv",
            "error: cannot read the manifest folder.csv: is a folder, not a file",
        ),
        (
            "pipe.csv",
            "error: the manifest pipe.csv is not a regular file (a named pipe or a device)",
        ),
        (
            "loop1.csv",
            "error: cannot read the manifest loop1.csv: Too many levels of symbolic links",
        ),
    ] {
        let started = Instant::now();
        let out = upload(&dir, name, &sandbox.url, &[]);
        assert!(started.elapsed() < Duration::from_secs(30), "{name} hung");
        assert_refused(&out, &sandbox, &[expected]);
    }
}

#[cfg(unix)]
#[test]
fn an_audio_path_that_is_a_named_pipe_or_a_symlink_loop_is_refused_naming_its_line() {
    let dir = folder();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("pipe.wav"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("loop2.wav", dir.join("loop1.wav")).unwrap();
    std::os::unix::fs::symlink("loop1.wav", dir.join("loop2.wav")).unwrap();
    refused_in(
        &dir,
        format!(
            "{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\npipe.wav,1,2024-01-01,10:00:00,Bo\nloop1.wav,1,2024-01-01,10:00:00,Cy\n"
        ),
        &[
            r#"m.csv:3: file "pipe.wav": is a named pipe, not a regular file"#,
            r#"m.csv:4: file "loop1.wav": cannot be read: too many levels of symbolic links"#,
        ],
    );
}

fn refused_in(dir: &Dir, manifest: String, expected: &[&str]) {
    dir.write("m.csv", manifest);
    let sandbox = Sandbox::start(&[]);
    let out = upload(dir, "m.csv", &sandbox.url, &[]);
    assert_refused(&out, &sandbox, expected);
}

/// Runs `script` (sh) in a private mount namespace, where it may mount a tmpfs: the only way
/// to get a read-only or full file system as root, whom file modes do not stop. `None` where
/// that is not allowed (not root, no `unshare`).
#[cfg(target_os = "linux")]
fn in_mount_namespace(dir: &Dir, script: &str) -> Option<Output> {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"])
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: needs unshare -m and mount (run as root, as CI does)");
        return None;
    }
    Some(
        Command::new("unshare")
            .args(["-m", "sh", "-c", script])
            .current_dir(dir.path())
            .env("VOYC", env!("CARGO_BIN_EXE_voyc-import"))
            .env("VOYC_TOKEN", TOKEN)
            .env_remove("VOYC_ORG_ID")
            .env_remove("VOYC_BASE_URL")
            .output()
            .unwrap(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn a_report_in_a_read_only_folder_is_refused_before_anything_is_sent() {
    let dir = folder();
    dir.write(
        "m.csv",
        format!("{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\n"),
    );
    std::fs::create_dir(dir.join("ro")).unwrap();
    let sandbox = Sandbox::start(&[]);
    let Some(out) = in_mount_namespace(
        &dir,
        &format!(
            "mount -t tmpfs -o ro,size=64k tmpfs ro && exec \"$VOYC\" upload m.csv --org 118 --base-url {} --report ro/r.csv",
            sandbox.url
        ),
    ) else {
        return;
    };
    assert_refused(
        &out,
        &sandbox,
        &["error: cannot write the report ro/r.csv: its folder ro is not writable"],
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_for_the_journal_stops_the_run_cleanly_and_a_rerun_uploads_each_row_once() {
    // A 44 KiB tmpfs cannot even hold a new journal; 160 KiB fills after a few rows.
    let dir = folder();
    let mut manifest = format!("{HEADER}\n");
    for i in 0..60 {
        dir.write(format!("calls/{i}.wav"), wav(100 + i, 3_000));
        manifest.push_str(&format!("calls/{i}.wav,1,2024-01-01,10:00:00,Agent {i}\n"));
    }
    dir.write("m.csv", manifest);
    std::fs::create_dir(dir.join("j")).unwrap();
    let sandbox = Sandbox::start(&[]);
    let run = format!(
        "\"$VOYC\" upload m.csv --org 118 --base-url {} --journal j/journal --report r.csv --concurrency 4",
        sandbox.url
    );
    let Some(out) = in_mount_namespace(
        &dir,
        &format!("mount -t tmpfs -o size=44k tmpfs j && exec {run}"),
    ) else {
        return;
    };
    assert_refused(
        &out,
        &sandbox,
        &["error: cannot set up the journal j/journal"],
    );
    assert!(
        stderr_of(&out).contains("database or disk is full"),
        "{}",
        show(&out)
    );

    let Some(out) = in_mount_namespace(
        &dir,
        &format!(
            "mount -t tmpfs -o size=160k tmpfs j && {run}; echo \"first exit $?\" >&2; \
             mount -o remount,size=64m j && exec {run}"
        ),
    ) else {
        return;
    };
    let stderr = stderr_of(&out);
    assert!(stderr.contains("first exit 1"), "{stderr}");
    assert!(
        stderr.contains("error: cannot write the journal j/journal: database or disk is full")
            && stderr.contains("stopped so that no row is uploaded twice later"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Each row's audio is in exactly one conversation; a second upload to the same one only
    // where the report of the stopped run said the journal could not record it.
    let report = read_report(&dir.join("r.csv"));
    assert_eq!(report.len(), 60);
    let mut holders = std::collections::HashMap::new();
    for conversation in sandbox.conversations().values() {
        if conversation["uploaded"] == true {
            let agent = conversation["metadata"]["agent"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                holders
                    .insert(agent.clone(), conversation.clone())
                    .is_none(),
                "{agent} is in two conversations"
            );
            assert!(conversation["uploads"].as_u64().unwrap() <= 2);
        }
    }
    assert_eq!(holders.len(), 60, "every row uploaded");
}

/// Uploads three rows to a hostile server with a 2 s timeout and one retry: every row fails
/// with an error that starts with `error` (after `call 1: ` or `upload: `), within a minute,
/// without a crash; the report has all three rows.
fn each_row_fails(server: &Hostile, error: &str) -> Vec<std::collections::HashMap<String, String>> {
    let (dir, out) = three_rows_to(server, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
    let report = read_report(&dir.join("m.report.csv"));
    assert_eq!(report.len(), 3);
    for row in &report {
        assert_eq!(row["status"], "failed", "{row:?}");
        assert!(row["error"].starts_with(error), "{row:?}");
    }
    report
}

/// Uploads three rows to `server` with a 2 s timeout, one retry and `extra`, within a minute.
fn three_rows_to(server: &Hostile, extra: &[&str]) -> (Dir, Output) {
    let dir = folder();
    dir.write(
        "m.csv",
        format!(
            "{HEADER}\na.wav,1,2024-01-01,10:00:00,Ann\nb.wav,1,2024-01-01,10:00:00,Bo\nc.wav,1,2024-01-01,10:00:00,Cy\n"
        ),
    );
    let started = Instant::now();
    let args = [
        &["--timeout", "2s", "--retries", "1", "--concurrency", "3"],
        extra,
    ]
    .concat();
    let out = upload(&dir, "m.csv", &server.url, &args);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    (dir, out)
}

fn created(body: &str) -> Raw {
    http(
        "201 Created",
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    )
}

#[test]
fn call_1_answering_html_or_an_empty_body_fails_each_row_clearly() {
    let html = Hostile::start(|_, _, _| {
        http(
            "200 OK",
            "Content-Type: text/html\r\n",
            b"<html><head><title>Welcome</title></head><body>\x1b[2J login</body></html>",
        )
    });
    let report = each_row_fails(&html, "call 1: HTTP 200, but the answer is not JSON (");
    assert!(
        report[0]["notes"].contains("Voyc holds a conversation without audio"),
        "{:?}",
        report[0]
    );
    let empty = Hostile::start(|_, _, _| created(""));
    each_row_fails(
        &empty,
        "call 1: HTTP 201, but the answer is not JSON (0 bytes)",
    );
    // An error page with a terminal escape in it: the escape never reaches stderr.
    let escape = Hostile::start(|_, _, _| {
        http(
            "400 Bad Request",
            "Content-Type: text/plain\r\n",
            b"bad \x1b[31mred\x1b[0m request",
        )
    });
    each_row_fails(
        &escape,
        "call 1: HTTP 400: bad \u{fffd}[31mred\u{fffd}[0m request",
    );
}

#[test]
fn call_1_answering_ten_mebibytes_of_json_or_a_body_that_never_ends_fails_each_row_in_time() {
    let huge = Hostile::start(|_, _, _| {
        let mut body = br#"{"conversation_id": "c", "pad": ""#.to_vec();
        body.resize(10 << 20, b'x');
        body.extend_from_slice(br#""}"#);
        created(std::str::from_utf8(&body).unwrap())
    });
    each_row_fails(&huge, "call 1: HTTP 201, but the answer is over 1 MiB");
    let endless_fast = Hostile::start(|_, _, _| Raw::Endless {
        chunk: vec![b' '; 64 << 10],
        every: Duration::from_millis(1),
    });
    each_row_fails(
        &endless_fast,
        "call 1: HTTP 200, but the answer is over 1 MiB",
    );
}

#[test]
fn call_1_answers_that_never_end_are_an_outage_waited_out_up_to_max_outage() {
    // Every call 1 times out, whichever row sends it: Voyc is as good as down. The run waits
    // (one probe at a time), then stops at --max-outage, resumable, instead of failing rows.
    let endless_slow = Hostile::start(|_, _, _| Raw::Endless {
        chunk: b" ".to_vec(),
        every: Duration::from_millis(100),
    });
    let (dir, out) = three_rows_to(&endless_slow, &["--max-outage", "5s"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("Voyc has been unavailable for ")
            && stderr.contains("(no complete answer within 2s (--timeout)), longer than --max-outage 5s; the report and journal are written, and the same command resumes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("waiting: Voyc unavailable for "),
        "{stderr}"
    );
    let report = read_report(&dir.join("m.report.csv"));
    assert_eq!(report.len(), 3);
    for row in &report {
        assert!(
            matches!(row["status"].as_str(), "not_attempted" | "failed"),
            "{row:?}"
        );
    }
    // Rows are left for the same command to finish, each saying that Voyc may hold a
    // conversation its timed-out call 1 created.
    for row in report.iter().filter(|r| r["status"] == "not_attempted") {
        assert!(
            row["notes"].contains("without audio for this row")
                && row["notes"].contains(
                    "(unavailable for longer than --max-outage); run the same command to finish it"
                ),
            "{row:?}"
        );
    }
    assert!(
        report.iter().any(|r| r["status"] == "not_attempted"),
        "{report:?}"
    );
}

#[test]
fn a_presigned_url_with_another_scheme_fails_each_row_and_is_never_followed() {
    for scheme in [
        "file:///etc/passwd",
        "ftp://s3.example.test/b/k",
        "javascript:alert(1)",
    ] {
        let server = Hostile::start(move |_, _, _| {
            created(&format!(
                r#"{{"conversation_id": "c-1", "upload_url": "{scheme}"}}"#
            ))
        });
        each_row_fails(
            &server,
            "call 1: HTTP 201, but the answer's upload_url is not a usable URL (not http or https); keys: conversation_id, upload_url",
        );
        assert_eq!(
            server.requests.load(Ordering::SeqCst),
            3,
            "{scheme}: only the three call 1s were made"
        );
    }
}

#[test]
fn a_redirect_loop_from_call_1_or_from_s3_fails_each_row_without_following_it() {
    let call1 = Hostile::start(|_, line, base| {
        let path = line.split(' ').nth(1).unwrap_or("/");
        http(
            "302 Found",
            &format!("Location: {base}{path}?again=1\r\n"),
            b"",
        )
    });
    each_row_fails(&call1, "call 1: HTTP 302: redirected to http://127.0.0.1:");
    assert_eq!(call1.requests.load(Ordering::SeqCst), 3, "never followed");

    let s3 = Hostile::start(|n, line, base| {
        if line.starts_with("POST") {
            return created(&format!(
                r#"{{"conversation_id": "c-{n}", "upload_url": "{base}/s3/b/k{n}"}}"#
            ));
        }
        http(
            "307 Temporary Redirect",
            &format!("Location: {base}/s3/b/k\r\n"),
            b"",
        )
    });
    each_row_fails(&s3, "upload: HTTP 307: redirected to http://127.0.0.1:");
    assert_eq!(
        s3.requests.load(Ordering::SeqCst),
        6,
        "each upload tried once"
    );
}

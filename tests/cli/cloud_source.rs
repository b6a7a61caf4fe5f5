//! What every object store as a source must do, written once for the emulators that
//! `scripts/test.sh` starts (fake-gcs-server for `gs://`, Azurite for `az://`; SeaweedFS is the
//! upload target through the sandbox, as in `real_s3`): a manifest of objects validates with a
//! missing and a non-audio object reported on their lines, uploads byte for byte, a rerun
//! uploads nothing, a run killed with SIGKILL resumes without a second upload, and `scan` of a
//! prefix writes a manifest that uploads as it is. The objects
//! are put with the emulator's own API, not through voyc-import.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::real_s3::{CONNECT_PATTERN, Seaweed, conversations_created, key_for, seaweed};
use crate::sandbox::sha256_hex;
use crate::upload::{Corpus, wav};
use crate::util::{show, voyc};

/// An emulated object store that recordings are read from.
pub(crate) trait Source {
    /// `gs` or `az`.
    fn scheme(&self) -> &'static str;

    /// Puts `contents` at `key` in `bucket`, making the bucket first if need be.
    async fn put(&self, bucket: &str, key: &str, contents: &[u8]);

    /// The environment of a user reading from the emulator: each variable's value, or `None`
    /// for one that must not be set.
    fn environment(&self) -> Vec<(&'static str, Option<String>)>;

    /// What `--source-endpoint` names.
    fn endpoint(&self) -> &str;

    /// Points a `voyc-import` command at the emulator: its credentials in the environment and
    /// `--source-endpoint` (added after the command's own arguments).
    fn reach(&self, cmd: &mut assert_cmd::Command) {
        for (name, value) in self.environment() {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        cmd.args(["--source-endpoint", self.endpoint()]);
    }

    /// What must never appear in an output (a key); `None` when the store has none.
    fn secret(&self) -> Option<&str>;
}

/// A client for the emulators' own APIs (plain http on loopback, no proxy).
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

/// Fails if `out` shows the source's secret.
pub(crate) fn assert_no_secret(source: &impl Source, out: &Output) {
    if let Some(secret) = source.secret() {
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !String::from_utf8_lossy(text).contains(secret),
                "the secret is shown: {}",
                show(out)
            );
        }
    }
}

fn run(source: &impl Source, mut cmd: assert_cmd::Command) -> Output {
    source.reach(&mut cmd);
    let out = cmd
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run voyc-import");
    assert_no_secret(source, &out);
    out
}

/// A corpus whose recordings are objects in `bucket` and no longer on disk: its manifest names
/// rows 0 and 1 by URL, the others by key relative to `--base-dir SCHEME://bucket/`.
async fn corpus_in(source: &impl Source, bucket: &str, n: usize) -> Corpus {
    let corpus = Corpus::new(n, |i| 40_000 + i * 7_919);
    let mut manifest = String::from("file,channel_id,call_date,call_time,agent,crm_ticket\n");
    for (i, (name, contents)) in corpus.files.iter().enumerate() {
        source.put(bucket, name, contents).await;
        let file = match i < 2 {
            true => format!("{}://{bucket}/{name}", source.scheme()),
            false => name.clone(),
        };
        manifest.push_str(&format!(
            "{file},support,2024-03-01,09:00:00,Agent {i},T-{i}\n"
        ));
    }
    std::fs::remove_dir_all(corpus.path().join("calls")).unwrap();
    std::fs::write(corpus.path().join("manifest.csv"), manifest).unwrap();
    corpus
}

/// A missing object and one that is not audio are reported on their lines; the good one passes.
pub(crate) async fn objects_validate_with_every_problem_on_its_line(source: &impl Source) {
    let scheme = source.scheme();
    let bucket = format!("voyc-{scheme}-validate");
    let corpus = Corpus::new(0, |_| 0);
    source.put(&bucket, "calls/0000.wav", &wav(0, 20_000)).await;
    let page = b"<!DOCTYPE html><html><body>Not Found</body></html>";
    source.put(&bucket, "calls/page.wav", page).await;
    let manifest = format!(
        "file,channel_id,call_date,call_time,agent\n\
         {scheme}://{bucket}/calls/0000.wav,1,2024-03-01,09:00:00,Ann\n\
         {scheme}://{bucket}/calls/missing.wav,1,2024-03-01,09:00:00,Ann\n\
         calls/page.wav,1,2024-03-01,09:00:00,Ann\n"
    );
    std::fs::write(corpus.path().join("bad.csv"), manifest).unwrap();
    let mut cmd = voyc(corpus.path());
    cmd.args(["validate", "bad.csv", "--base-dir"])
        .arg(format!("{scheme}://{bucket}/"));
    let out = run(source, cmd);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("bad.csv:3: file \"{scheme}://{bucket}/calls/missing.wav\": no such object {scheme}://{bucket}/calls/missing.wav").as_str(),
            "bad.csv:4: file \"calls/page.wav\": is not audio: its first bytes match no known audio format; it starts with text: \"<!DOCTYPE html><\"",
            "3 rows checked: 2 problems in 2 rows, 0 warnings",
        ],
        "{}",
        show(&out)
    );
}

/// `upload` reads each object into the sandbox's SeaweedFS byte for byte; a rerun finds every
/// row uploaded (the journal knows each object by its URL, size and ETag) and calls Voyc for
/// none.
pub(crate) async fn objects_upload_byte_exact_and_a_rerun_uploads_nothing(source: &impl Source) {
    let s3 = seaweed();
    let scheme = source.scheme();
    let dest = format!("voyc-{scheme}-dest");
    let sandbox = s3.sandbox(&dest, &[]);
    let bucket = format!("voyc-{scheme}-upload");
    let corpus = corpus_in(source, &bucket, 5).await;
    let base = format!("{scheme}://{bucket}/");
    let upload = || {
        let mut cmd = corpus.upload_to(&sandbox.url);
        cmd.args(["--base-dir", &base]);
        run(source, cmd)
    };
    let out = upload();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report.iter().all(|row| row["status"] == "uploaded"),
        "{report:?}"
    );
    assert_eq!(
        report[0]["file"],
        format!("{scheme}://{bucket}/calls/0000.wav")
    );
    assert_eq!(report[2]["file"], "calls/0002.wav");
    let on_server = s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, &dest, &corpus)
        .await;
    assert_eq!(on_server, 5);

    let out = upload();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        corpus
            .report()
            .iter()
            .all(|row| row["status"] == "already_uploaded"),
        "{}",
        show(&out)
    );
    assert_eq!(sandbox.conversations().await.len(), 5, "no second call 1");
}

/// A run killed with SIGKILL mid-way (no report, the journal as it was) is resumed by the same
/// command: every row ends uploaded, and each recording is in one conversation only.
pub(crate) async fn objects_resume_after_kill_9_without_a_second_upload(source: &impl Source) {
    let s3 = seaweed();
    let scheme = source.scheme();
    let dest = format!("voyc-{scheme}-kill-dest");
    let sandbox = s3.sandbox(&dest, &["--latency-ms", "300"]);
    let bucket = format!("voyc-{scheme}-kill");
    let corpus = corpus_in(source, &bucket, 12).await;
    let base = format!("{scheme}://{bucket}/");
    let args = ["--base-dir", &base, "--concurrency", "3"];
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_voyc-import"));
    first
        .current_dir(corpus.path())
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL")
        .env("VOYC_TOKEN", "sandbox-token");
    for (name, value) in source.environment() {
        match value {
            Some(value) => first.env(name, value),
            None => first.env_remove(name),
        };
    }
    let mut child = first
        .args([
            "upload",
            "manifest.csv",
            "--org",
            "118",
            "--base-url",
            &sandbox.url,
        ])
        .args(args)
        .args(["--source-endpoint", source.endpoint()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start voyc-import upload");
    let deadline = Instant::now() + Duration::from_secs(60);
    while conversations_created(&sandbox).await < 4 {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "no rows started: {}",
                show(&child.wait_with_output().unwrap())
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut rerun = corpus.upload_to(&sandbox.url);
    rerun.args(args);
    let out = run(source, rerun);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report
            .iter()
            .all(|r| r["status"] == "uploaded" || r["status"] == "already_uploaded"),
        "{report:?}"
    );
    let on_server = s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, &dest, &corpus)
        .await;
    assert_eq!(on_server, 12);
    let with_audio = sandbox
        .conversations()
        .await
        .iter()
        .filter(|c| c["uploaded"] == json!(true))
        .count();
    assert_eq!(with_audio, 12, "each recording in one conversation only");
}

/// `scan SCHEME://BUCKET/PREFIX/` lists the objects under the prefix (not those beside it),
/// writes each matching one's URL, says which did not match, and the manifest uploads as it is.
pub(crate) async fn a_scanned_prefix_becomes_a_manifest_that_uploads_as_it_is(
    source: &impl Source,
) {
    let s3: Seaweed = seaweed();
    let scheme = source.scheme();
    let dest = format!("voyc-{scheme}-scan-dest");
    let sandbox = s3.sandbox(&dest, &[]);
    let bucket = format!("voyc-{scheme}-scan");
    let top = "connect/inst-1/CallRecordings";
    let recordings = [
        (
            "2026/11/02/0f6a3c1e-7b2d-4c55-9e1a-2b7d9c4e8a01_20261102T09:15_UTC.wav",
            "2026-11-02",
            "09:15:00",
        ),
        (
            "2026/11/02/5d2e9b40-1c3a-4f6e-8d7b-0a9c1e2f3b4c_20261102T16:40_UTC.wav",
            "2026-11-02",
            "16:40:00",
        ),
        (
            "2026/11/03/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d_20261103T08:05_UTC.wav",
            "2026-11-03",
            "08:05:00",
        ),
    ];
    let mut contents = HashMap::new();
    for (i, (rel, _, _)) in recordings.iter().enumerate() {
        let bytes = wav(i, 30_000 + i * 11_000);
        source.put(&bucket, &format!("{top}/{rel}"), &bytes).await;
        contents.insert(format!("{scheme}://{bucket}/{top}/{rel}"), bytes);
    }
    source
        .put(
            &bucket,
            &format!("{top}/2026/11/03/readme.txt"),
            b"not a call",
        )
        .await;
    // Beside the prefix, not under it: not listed.
    source
        .put(
            &bucket,
            "connect/inst-1/CallRecordings-old/2026/11/02/x_20261102T09:15_UTC.wav",
            b"RIFF",
        )
        .await;

    let corpus = Corpus::new(0, |_| 0);
    let mut cmd = voyc(corpus.path());
    cmd.args(["scan", &format!("{scheme}://{bucket}/{top}/")])
        .args(["--pattern", CONNECT_PATTERN])
        .args(["--set", "channel_id=support", "--set", "agent=connect"])
        .args(["--out", "manifest.csv"]);
    let out = run(source, cmd);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{scheme}://{bucket}/{top}/2026/11/03/readme.txt: does not end with \"_UTC.wav\"\n\
             scanned 4 objects (120.1 KiB) in {scheme}://{bucket}/{top}/: 3 matched, 1 did not; 3 rows written to manifest.csv\n"
        ),
    );
    let manifest = std::fs::read_to_string(corpus.path().join("manifest.csv")).unwrap();
    let mut expected = String::from("file,call_date,contact_id,call_time,channel_id,agent\n");
    for (rel, day, time) in recordings {
        let id = rel.rsplit('/').next().unwrap().split('_').next().unwrap();
        expected.push_str(&format!(
            "{scheme}://{bucket}/{top}/{rel},{day},{id},{time},support,connect\n"
        ));
    }
    assert_eq!(manifest, expected);

    let out = run(source, corpus.upload_to(&sandbox.url));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report.len(), 3, "{report:?}");
    for row in &report {
        assert_eq!(row["status"], "uploaded", "{row:?}");
        let expected = &contents[&row["file"]];
        let stored = s3
            .stored(&sandbox, &dest, &key_for(&row["conversation_id"]))
            .await;
        assert!(
            stored.as_deref() == Some(&expected[..]),
            "{}: the server holds other bytes than the object's",
            row["file"]
        );
        assert_eq!(row["sha256"], sha256_hex(expected));
    }
}

//! The sandbox's external-storage mode against a real S3 server that nobody here wrote:
//! SeaweedFS, installed and started by `scripts/test.sh`, which exports where it is
//! (`VOYC_TEST_S3_ENDPOINT`, `VOYC_TEST_S3_FILER`) and its keys (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`). Plain `cargo test` lists these tests as ignored, with the reason.
//! What arrived is read back through SeaweedFS's filer, not through S3, so that no signing of
//! ours takes part in the check; each test uses a bucket of its own, which the sandbox creates.
//! The first tests drive the sandbox with a plain HTTP client, the later ones `voyc-import
//! upload` through it, and one stops and restarts a SeaweedFS of its own mid-run.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::sandbox::{
    BOTO3_POST_FIELDS, Sandbox, audio, fields_of, form_with, sha256_hex, tamper, valid_body,
    xml_code,
};
use crate::upload::Corpus;
use crate::util::{Dir, show, voyc};

/// Where the SeaweedFS of `scripts/test.sh` is.
pub(crate) struct Seaweed {
    pub(crate) endpoint: String,
    filer: String,
}

pub(crate) fn seaweed() -> Seaweed {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the real-S3 tests need SeaweedFS; run scripts/test.sh")
        })
    };
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        var(name);
    }
    Seaweed {
        endpoint: var("VOYC_TEST_S3_ENDPOINT"),
        filer: var("VOYC_TEST_S3_FILER"),
    }
}

impl Seaweed {
    /// A sandbox whose uploads go to `bucket` on this server.
    pub(crate) fn sandbox(&self, bucket: &str, args: &[&str]) -> Sandbox {
        let mut all = vec!["--s3-endpoint", &self.endpoint, "--s3-bucket", bucket];
        all.extend_from_slice(args);
        Sandbox::start(&all)
    }

    /// The object's bytes as SeaweedFS's filer serves them; `None` when there is none.
    pub(crate) async fn stored(
        &self,
        sandbox: &Sandbox,
        bucket: &str,
        key: &str,
    ) -> Option<Vec<u8>> {
        let response = sandbox
            .http
            .get(format!("{}/buckets/{bucket}/{key}", self.filer))
            .send()
            .await
            .expect("the filer answers");
        match response.status() {
            StatusCode::OK => Some(response.bytes().await.expect("a body").to_vec()),
            StatusCode::NOT_FOUND => None,
            status => panic!("the filer answered {status}"),
        }
    }
}

fn key_of(answer: &Value) -> String {
    let key = match answer.get("upload_url") {
        Some(url) => url
            .as_str()
            .unwrap()
            .split_once('?')
            .unwrap()
            .0
            .split_once("/uploads/")
            .map(|(_, rest)| format!("uploads/{rest}"))
            .unwrap(),
        None => answer["upload"]["fields"]["key"].as_str().unwrap().into(),
    };
    assert!(key.starts_with("uploads/"), "{key}");
    key
}

fn message(body: &str) -> &str {
    let start = body.find("<Message>").map(|i| i + 9).unwrap_or(0);
    let end = body.find("</Message>").unwrap_or(start);
    &body[start..end]
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_presigned_post_lands_byte_exact_on_the_s3_server() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-post", &[]);
    let answer = sandbox.create().await;
    let target = &answer["upload"];
    assert_eq!(target["url"], format!("{}/voyc-post", s3.endpoint));
    let names: Vec<String> = fields_of(target).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, BOTO3_POST_FIELDS);
    let key = key_of(&answer);
    let own_stand_in = sandbox
        .post_form(
            &format!("{}/s3/voyc-sandbox", sandbox.url),
            form_with(vec![], b"RIFF"),
        )
        .await;
    assert_eq!(own_stand_in.0, StatusCode::NOT_FOUND, "the stand-in is off");
    let before = sandbox.conversations().await;
    assert_eq!(
        (&before[0]["uploaded"], &before[0]["bytes"]),
        (&json!(false), &Value::Null)
    );

    let data = audio(300_000);
    let (status, body) = sandbox.upload_post(&answer, &data).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stored = s3.stored(&sandbox, "voyc-post", &key).await;
    assert!(
        stored.as_deref() == Some(&data[..]),
        "SeaweedFS holds other bytes than were uploaded"
    );
    assert_eq!(
        sandbox.conversations().await,
        vec![json!({
            "conversation_id": answer["conversation_id"], "organisation_id": "org-1",
            "metadata": valid_body(), "uploaded": true, "bytes": 300_000,
            "sha256": sha256_hex(&data), "uploads": null,
        })]
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_presigned_put_lands_byte_exact_on_the_s3_server() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-put", &["--upload-style", "put"]);
    let answer = sandbox.create().await;
    let url = answer["upload_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/voyc-put/uploads/", s3.endpoint)),
        "{url}"
    );
    let key = key_of(&answer);
    let data = audio(250_000);
    let (status, body) = sandbox.upload_put(url, &data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = s3.stored(&sandbox, "voyc-put", &key).await;
    assert!(
        stored.as_deref() == Some(&data[..]),
        "SeaweedFS holds other bytes than were uploaded"
    );
    let all = sandbox.conversations().await;
    assert_eq!(
        (&all[0]["uploaded"], &all[0]["bytes"], &all[0]["sha256"]),
        (&json!(true), &json!(250_000), &json!(sha256_hex(&data)))
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn expired_targets_are_refused_with_s3s_own_message() {
    let s3 = seaweed();
    let post = s3.sandbox("voyc-expired", &["--upload-ttl", "1"]);
    let put = s3.sandbox(
        "voyc-expired",
        &["--upload-ttl", "1", "--upload-style", "put"],
    );
    let (post_answer, put_answer) = (post.create().await, put.create().await);
    // A policy's expiration has whole seconds, and S3 refuses only past it.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (status, body) = post.upload_post(&post_answer, b"RIFF").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert_eq!(
        message(&body),
        "Invalid according to Policy: Policy expired",
        "{body}"
    );
    let (status, body) = put
        .upload_put(put_answer["upload_url"].as_str().unwrap(), b"RIFF")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert_eq!(message(&body), "Request has expired", "{body}");
    for (sandbox, answer) in [(&post, &post_answer), (&put, &put_answer)] {
        let key = key_of(answer);
        assert!(s3.stored(sandbox, "voyc-expired", &key).await.is_none());
        assert_eq!(sandbox.conversations().await[0]["uploaded"], false);
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn expired_rate_1_hands_out_targets_the_server_refuses_as_expired() {
    let s3 = seaweed();
    let post = s3.sandbox("voyc-expired-rate", &["--expired-rate", "1"]);
    let answer = post.create().await;
    let (status, body) = post.upload_post(&answer, b"RIFF").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        message(&body),
        "Invalid according to Policy: Policy expired",
        "{body}"
    );
    let put = s3.sandbox(
        "voyc-expired-rate",
        &["--expired-rate", "1", "--upload-style", "put"],
    );
    let answer = put.create().await;
    let (status, body) = put
        .upload_put(answer["upload_url"].as_str().unwrap(), b"RIFF")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(message(&body), "Request has expired", "{body}");
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_post_over_the_size_limit_is_entity_too_large_and_the_limit_itself_passes() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-oversize", &["--max-upload-bytes", "1000"]);
    let answer = sandbox.create().await;
    let (status, body) = sandbox.upload_post(&answer, &audio(1001)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(xml_code(&body), "EntityTooLarge", "{body}");
    assert!(!message(&body).is_empty(), "{body}");
    assert!(
        s3.stored(&sandbox, "voyc-oversize", &key_of(&answer))
            .await
            .is_none()
    );
    let (status, body) = sandbox.upload_post(&answer, &audio(1000)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(sandbox.conversations().await[0]["bytes"], 1000);
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn success_action_status_201_is_answered_with_a_post_response() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-status", &["--success-action-status", "201"]);
    let answer = sandbox.create().await;
    let fields = fields_of(&answer["upload"]);
    assert_eq!(
        fields[0],
        ("success_action_status".to_string(), "201".to_string())
    );
    let (status, body) = sandbox.upload_post(&answer, b"RIFF....WAVE").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("<PostResponse"), "{body}");
    assert!(body.contains("<Bucket>voyc-status</Bucket>"), "{body}");
    assert!(
        body.contains(&format!("<Key>{}</Key>", key_of(&answer))),
        "{body}"
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_tampered_signature_or_another_key_is_refused_by_the_server() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-tamper", &[]);
    let (first, second) = (sandbox.create().await, sandbox.create().await);
    let url = first["upload"]["url"].as_str().unwrap();
    let tampered: Vec<(String, String)> = fields_of(&first["upload"])
        .into_iter()
        .map(|(n, v)| match n.as_str() {
            "x-amz-signature" => (n, tamper(&v)),
            _ => (n, v),
        })
        .collect();
    let (status, body) = sandbox.post_form(url, form_with(tampered, b"RIFF")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(xml_code(&body), "SignatureDoesNotMatch", "{body}");

    let moved: Vec<(String, String)> = fields_of(&first["upload"])
        .into_iter()
        .map(|(n, v)| match n.as_str() {
            "key" => (n, key_of(&second)),
            _ => (n, v),
        })
        .collect();
    let (status, body) = sandbox.post_form(url, form_with(moved, b"RIFF")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert!(
        sandbox
            .conversations()
            .await
            .iter()
            .all(|c| c["uploaded"] == false)
    );
}

/// Runs `voyc-import sandbox --listen 127.0.0.1:0` with `args`, setting (or, for `None`,
/// removing) the environment variables in `env`; it must stop at once with exit 2 and print
/// nothing on stdout. Returns its stderr.
fn refused_start(args: &[&str], env: &[(&str, Option<&str>)]) -> String {
    let dir = Dir::new();
    let mut command = voyc(dir.path());
    command
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .args(args);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let out = command.timeout(Duration::from_secs(30)).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
fn wrong_keys_stop_the_sandbox_at_start_without_showing_the_secret() {
    let s3 = seaweed();
    let stderr = refused_start(
        &[
            "--s3-endpoint",
            &s3.endpoint,
            "--s3-bucket",
            "voyc-wrong-keys",
        ],
        &[("AWS_SECRET_ACCESS_KEY", Some("not-the-secret-at-all"))],
    );
    assert!(
        stderr.contains(&format!("the S3 server {}", s3.endpoint))
            && stderr.contains("\"voyc-wrong-keys\"")
            && stderr.contains("403"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
}

#[test]
fn external_storage_without_keys_in_the_environment_is_a_usage_error_naming_them() {
    let stderr = refused_start(
        &["--s3-endpoint", "http://127.0.0.1:9", "--s3-bucket", "voyc"],
        &[
            ("AWS_ACCESS_KEY_ID", None),
            ("AWS_SECRET_ACCESS_KEY", Some("shh-do-not-print")),
        ],
    );
    assert_eq!(
        stderr,
        "error: --s3-endpoint needs the S3 server's access key and secret in the environment \
         variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n"
    );
}

#[test]
fn an_unreachable_s3_server_stops_the_sandbox_at_start() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let stderr = refused_start(
        &["--s3-endpoint", &endpoint, "--s3-bucket", "voyc"],
        &[
            ("AWS_ACCESS_KEY_ID", Some("AK")),
            ("AWS_SECRET_ACCESS_KEY", Some("SK")),
        ],
    );
    assert!(
        stderr.starts_with(&format!("error: cannot reach the S3 server {endpoint}: ")),
        "{stderr}"
    );
    assert!(!stderr.contains("X-Amz-Signature"), "{stderr}");
}

#[test]
fn s3_fault_options_do_not_mix_with_external_storage() {
    let dir = Dir::new();
    let out = voyc(dir.path())
        .args(["sandbox", "--s3-endpoint", "http://127.0.0.1:9"])
        .args(["--s3-bucket", "voyc", "--s3-drop-rate", "0.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        show(&out)
    );
    let out = voyc(dir.path())
        .args(["sandbox", "--s3-endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--s3-bucket <NAME>"),
        "{}",
        show(&out)
    );
}

// ---- `voyc-import upload` against the real S3 server ----

/// `voyc-import upload manifest.csv` in the corpus folder, against the sandbox.
fn upload(corpus: &Corpus, sandbox: &Sandbox, extra: &[&str]) -> Output {
    corpus
        .upload_to(&sandbox.url)
        .args(extra)
        .timeout(Duration::from_secs(180))
        .output()
        .expect("run voyc-import upload")
}

/// The key call 1 gave a conversation: `uploads/{first byte of SHA-256(id), hex}/{id}`, as
/// docs/sandbox.md says.
pub(crate) fn key_for(conversation_id: &str) -> String {
    let fan = Sha256::digest(conversation_id.as_bytes())[0];
    format!("uploads/{fan:02x}/{conversation_id}")
}

impl Seaweed {
    /// Every row of the report whose status is `uploaded` or `already_uploaded` holds its
    /// file's exact bytes on the server, and the sandbox's inspection (HEAD and GET against the
    /// server) agrees with the report.
    pub(crate) async fn assert_uploaded_rows_are_on_the_server(
        &self,
        sandbox: &Sandbox,
        bucket: &str,
        corpus: &Corpus,
    ) -> usize {
        let report = corpus.report();
        let held: HashMap<String, Value> = sandbox
            .conversations()
            .await
            .into_iter()
            .map(|c| (c["conversation_id"].as_str().unwrap().to_string(), c))
            .collect();
        let mut uploaded = 0;
        for (row, (name, contents)) in report.iter().zip(&corpus.files) {
            if row["status"] != "uploaded" && row["status"] != "already_uploaded" {
                continue;
            }
            uploaded += 1;
            let id = &row["conversation_id"];
            let stored = self.stored(sandbox, bucket, &key_for(id)).await;
            assert!(
                stored.as_deref() == Some(&contents[..]),
                "{name}: the server holds other bytes than the file's"
            );
            assert_eq!(row["sha256"], sha256_hex(contents), "{name}");
            assert_eq!(row["bytes"], contents.len().to_string(), "{name}");
            let conversation = &held[id];
            assert_eq!(
                (&conversation["uploaded"], &conversation["sha256"]),
                (&json!(true), &json!(sha256_hex(contents))),
                "{name}"
            );
        }
        uploaded
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn upload_puts_every_file_byte_exact_on_the_server_in_both_styles() {
    let s3 = seaweed();
    for style in ["post", "put"] {
        let bucket = format!("voyc-upload-{style}");
        let sandbox = s3.sandbox(&bucket, &["--upload-style", style]);
        let corpus = Corpus::new(6, |i| 40_000 + i * 7_919);
        let out = upload(&corpus, &sandbox, &[]);
        assert_eq!(out.status.code(), Some(0), "{style}: {}", show(&out));
        assert!(
            corpus
                .report()
                .iter()
                .all(|row| row["status"] == "uploaded")
        );
        let on_server = s3
            .assert_uploaded_rows_are_on_the_server(&sandbox, &bucket, &corpus)
            .await;
        assert_eq!(on_server, 6, "{style}");
        assert_eq!(
            sandbox.conversations().await.len(),
            6,
            "{style}: one call 1 per row"
        );
        // Uploads went straight to the server: the sandbox cannot count them, and says so.
        let stats = sandbox.stats().await;
        assert!(stats["uploads"].is_null(), "{style}: {stats}");
        assert_eq!(stats["conversations"], 6, "{style}: {stats}");
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn an_expired_target_is_renewed_once_and_noted_and_a_second_expiry_fails_the_row() {
    let s3 = seaweed();
    for (style, refusal) in [
        (
            "post",
            "HTTP 403: AccessDenied: Invalid according to Policy: Policy expired",
        ),
        ("put", "HTTP 403: AccessDenied: Request has expired"),
    ] {
        // With --seed 15 the expiry draws are expired, fresh, expired, expired, fresh: row 1's
        // first target expires and its second does not, row 2's both expire, row 3's does not.
        let bucket = format!("voyc-renewal-{style}");
        let sandbox = s3.sandbox(
            &bucket,
            &[
                "--upload-style",
                style,
                "--expired-rate",
                "0.5",
                "--seed",
                "15",
            ],
        );
        let corpus = Corpus::new(3, |i| 10_000 + i);
        let out = upload(&corpus, &sandbox, &["--concurrency", "1"]);
        assert_eq!(out.status.code(), Some(1), "{style}: {}", show(&out));
        let report = corpus.report();
        let statuses: Vec<&str> = report.iter().map(|r| r["status"].as_str()).collect();
        assert_eq!(statuses, ["uploaded", "failed", "uploaded"], "{report:?}");
        let all = sandbox.conversations().await;
        let ids: Vec<&str> = all
            .iter()
            .map(|c| c["conversation_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 5, "{style}: two renewals: {all:?}");
        assert_eq!(
            report[0]["notes"],
            format!(
                "the upload target expired ({refusal}); call 1 was made again, and \
                 conversation {} keeps no audio",
                ids[0]
            )
        );
        assert_eq!(report[0]["conversation_id"], ids[1], "the renewed one");
        assert_eq!(
            report[1]["error"],
            format!("upload: the target expired again ({refusal})")
        );
        assert_eq!(report[2]["notes"], "");
        let on_server = s3
            .assert_uploaded_rows_are_on_the_server(&sandbox, &bucket, &corpus)
            .await;
        assert_eq!(on_server, 2, "{style}");
        let with_audio: Vec<&str> = all
            .iter()
            .filter(|c| c["uploaded"] == true)
            .map(|c| c["conversation_id"].as_str().unwrap())
            .collect();
        assert_eq!(with_audio, [ids[1], ids[4]], "{style}");
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn an_oversize_file_fails_with_s3s_code_and_message_in_the_report() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-upload-oversize", &["--max-upload-bytes", "2000"]);
    let corpus = Corpus::new(2, |i| if i == 0 { 2000 } else { 5000 });
    let out = upload(&corpus, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report[0]["status"], "uploaded");
    assert_eq!(report[1]["status"], "failed");
    assert_eq!(
        report[1]["attempts"], "1",
        "a 400 is not retried: {:?}",
        report[1]
    );
    // SeaweedFS 4.48's own words, as its XML error carries them.
    assert_eq!(
        report[1]["error"],
        "upload: HTTP 400: EntityTooLarge: Your proposed upload exceeds the maximum allowed \
         object size."
    );
    let id = &report[1]["conversation_id"];
    assert!(
        s3.stored(&sandbox, "voyc-upload-oversize", &key_for(id))
            .await
            .is_none()
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn success_action_status_201_uploads_through_the_engine() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-upload-201", &["--success-action-status", "201"]);
    let corpus = Corpus::new(2, |i| 3_000 + i);
    let out = upload(&corpus, &sandbox, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let on_server = s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, "voyc-upload-201", &corpus)
        .await;
    assert_eq!(on_server, 2);
}

/// A SeaweedFS of the test's own, to stop and restart: `scripts/seaweedfs.sh` in a temporary
/// folder, with the keys of `scripts/test.sh`'s server, which a spawned sandbox inherits.
struct OwnSeaweed {
    dir: Dir,
    s3: Seaweed,
}

impl OwnSeaweed {
    fn start() -> OwnSeaweed {
        seaweed();
        let dir = Dir::new();
        let (key, secret) = (
            std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        );
        let config = json!({"identities": [{"name": "voyc-test",
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]});
        dir.write("s3.json", config.to_string());
        dir.write(
            "keys",
            format!("export AWS_ACCESS_KEY_ID={key}\nexport AWS_SECRET_ACCESS_KEY={secret}\n"),
        );
        seaweedfs_script("start", dir.path());
        let env = std::fs::read_to_string(dir.join("env")).expect("DIR/env");
        let var = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {env}"))
                .to_string()
        };
        OwnSeaweed {
            s3: Seaweed {
                endpoint: var("VOYC_TEST_S3_ENDPOINT"),
                filer: var("VOYC_TEST_S3_FILER"),
            },
            dir,
        }
    }

    fn stop(&self) {
        seaweedfs_script("stop", self.dir.path());
    }

    /// Starts it again on the same ports, with the same data.
    fn restart(&self) {
        seaweedfs_script("start", self.dir.path());
    }
}

impl Drop for OwnSeaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn seaweedfs_script(action: &str, dir: &Path) {
    let status = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/seaweedfs.sh"))
        .arg(action)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run scripts/seaweedfs.sh");
    assert!(status.success(), "scripts/seaweedfs.sh {action} failed");
}

/// `voyc-import upload` as a child process, so the test can act while it runs.
fn spawn_upload(corpus: &Corpus, base_url: &str, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_voyc-import"))
        .current_dir(corpus.path())
        .env_remove("VOYC_ORG_ID")
        .env_remove("VOYC_BASE_URL")
        .env("VOYC_TOKEN", "sandbox-token")
        .args([
            "upload",
            "manifest.csv",
            "--org",
            "118",
            "--base-url",
            base_url,
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start voyc-import upload")
}

/// Waits (up to a minute) until call 1 has created `n` conversations, and hands `child` back;
/// kills it and fails the test, with what it printed, if call 1 did not.
async fn until_conversations(
    sandbox: &Sandbox,
    mut child: std::process::Child,
    n: u64,
) -> std::process::Child {
    let deadline = Instant::now() + Duration::from_secs(60);
    while conversations_created(sandbox).await < n {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "call 1 made fewer than {n} conversations in a minute: {}",
                show(&child.wait_with_output().unwrap())
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// How many conversations call 1 created so far (from `/_sandbox/stats`, which does not ask
/// the S3 server).
pub(crate) async fn conversations_created(sandbox: &Sandbox) -> u64 {
    let stats: Value = sandbox
        .http
        .get(format!("{}/_sandbox/stats", sandbox.url))
        .send()
        .await
        .expect("the sandbox answers")
        .text()
        .await
        .map(|text| serde_json::from_str(&text).expect("JSON"))
        .expect("a body");
    stats["conversations"].as_u64().unwrap()
}

/// Runs an upload with `args` until row 2's call 1 (row 1 is done), stops `own`'s server, and
/// hands back what the run printed once it stopped at `--max-outage 3s` (exit 1, resumable)
/// with `down` named as unavailable.
async fn stopped_at_max_outage(
    own: &OwnSeaweed,
    sandbox: &Sandbox,
    corpus: &Corpus,
    args: &[&str],
    down: &str,
) -> String {
    let child = spawn_upload(corpus, &sandbox.url, args);
    let child = until_conversations(sandbox, child, 2).await;
    own.stop();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains(&format!("{down} has been unavailable for "))
            && stderr.contains("longer than --max-outage 3s; the report and journal are written, and the same command resumes"),
        "{stderr}"
    );
    stderr
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_server_stopped_mid_run_is_waited_for_up_to_max_outage_and_the_rerun_completes() {
    let own = OwnSeaweed::start();
    // A second per call 1, so that the server is down well before the last rows' uploads.
    let sandbox = own.s3.sandbox("voyc-stopped", &["--latency-ms", "1000"]);
    let corpus = Corpus::new(5, |i| 100_000 + i);
    let args = [
        "--concurrency",
        "1",
        "--retries",
        "1",
        "--timeout",
        "5s",
        "--max-outage",
        "3s",
    ];
    // S3 is down: the run waits (one probe at a time), then stops at --max-outage, resumable.
    stopped_at_max_outage(&own, &sandbox, &corpus, &args, "S3").await;
    let report = corpus.report();
    assert_eq!(report[0]["status"], "uploaded", "{report:?}");
    // Row 2's upload may have raced the stop; nothing after it was uploaded.
    for row in &report[2..] {
        assert!(
            matches!(row["status"].as_str(), "failed" | "not_attempted"),
            "nothing after the stop is uploaded: {row:?}"
        );
    }
    assert!(
        report.iter().any(|r| r["status"] == "not_attempted"),
        "the rows after the outage was seen are left, not failed: {report:?}"
    );

    own.restart();
    let out = upload(&corpus, &sandbox, &args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let rerun = corpus.report();
    for (before, after) in report.iter().zip(&rerun) {
        if before["status"] == "uploaded" {
            assert_eq!(after["status"], "already_uploaded", "{after:?}");
        } else {
            assert_eq!(after["status"], "uploaded", "{after:?}");
        }
        // A row whose call 1 was made finishes with that conversation's target.
        if !before["conversation_id"].is_empty() {
            assert_eq!(after["conversation_id"], before["conversation_id"]);
        }
    }
    let on_server = own
        .s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, "voyc-stopped", &corpus)
        .await;
    assert_eq!(on_server, 5);
    assert_eq!(
        conversations_created(&sandbox).await,
        5,
        "no row made a second call 1"
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_recordings_bucket_stopped_mid_run_is_waited_for_as_their_store_and_not_as_s3() {
    let own = OwnSeaweed::start();
    // The recordings are read from a SeaweedFS of the test's own; the uploads go to the
    // sandbox's own S3, which stays up.
    let sandbox = Sandbox::start(&["--latency-ms", "1000"]);
    let bucket = "voyc-source-stopped";
    let corpus = corpus_in_bucket(&own.s3, &sandbox, bucket, 5).await;
    let base = format!("s3://{bucket}/");
    let args = [
        "--base-dir",
        &base,
        "--source-endpoint",
        &own.s3.endpoint,
        "--concurrency",
        "1",
        "--retries",
        "1",
        "--timeout",
        "5s",
        "--max-outage",
        "3s",
    ];
    let stderr =
        stopped_at_max_outage(&own, &sandbox, &corpus, &args, "the recordings' store").await;
    assert!(!stderr.contains("S3 has been unavailable"), "{stderr}");
    let report = corpus.report();
    assert_eq!(report[0]["status"], "uploaded", "{report:?}");
    assert!(
        report.iter().any(|r| r["status"] == "not_attempted"),
        "the rows after the outage was seen are left, not failed: {report:?}"
    );

    own.restart();
    let out = upload(&corpus, &sandbox, &args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for (before, after) in report.iter().zip(&corpus.report()) {
        let expected = match before["status"].as_str() {
            "uploaded" => "already_uploaded",
            _ => "uploaded",
        };
        assert_eq!(after["status"], expected, "{after:?}");
    }
    assert_eq!(
        conversations_created(&sandbox).await,
        5,
        "no row made a second call 1"
    );
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_server_stopped_mid_run_and_back_within_max_outage_costs_no_row() {
    let own = OwnSeaweed::start();
    let sandbox = own.s3.sandbox("voyc-back", &["--latency-ms", "300"]);
    let corpus = Corpus::new(6, |i| 50_000 + i);
    // The default --retries: the three failures that show S3 is down spend at most three of a
    // row's six attempts.
    let args = ["--concurrency", "2", "--timeout", "5s"];
    let child = spawn_upload(&corpus, &sandbox.url, &args);
    let child = until_conversations(&sandbox, child, 2).await;
    own.stop();
    // Down for a few seconds: every request to it fails to connect meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    own.restart();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report.iter().all(|r| r["status"] == "uploaded"),
        "{report:?}"
    );
    let on_server = own
        .s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, "voyc-back", &corpus)
        .await;
    assert_eq!(on_server, 6);
    assert_eq!(conversations_created(&sandbox).await, 6, "no second call 1");
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_target_that_expired_between_runs_is_renewed_by_the_rerun() {
    let own = OwnSeaweed::start();
    for style in ["post", "put"] {
        let bucket = format!("voyc-between-runs-{style}");
        let sandbox = own
            .s3
            .sandbox(&bucket, &["--upload-style", style, "--upload-ttl", "2"]);
        let corpus = Corpus::new(1, |_| 20_000);
        own.stop();
        let args = ["--retries", "0"];
        let out = upload(&corpus, &sandbox, &args);
        assert_eq!(out.status.code(), Some(1), "{style}: {}", show(&out));
        let first = corpus.report()[0]["conversation_id"].clone();
        own.restart();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let out = upload(&corpus, &sandbox, &args);
        assert_eq!(out.status.code(), Some(0), "{style}: {}", show(&out));
        let row = &corpus.report()[0];
        // Whether the rerun tries the old target first (S3 then refuses it as expired) or our
        // clock already rules it out depends on how long SeaweedFS took to restart; the note
        // says which, and both end the same way.
        let notes = row["notes"].as_str();
        assert!(
            notes.starts_with("the upload target from an earlier run had expired;")
                || notes.starts_with(&format!(
                    "resumed with the upload target of conversation {} from an earlier run; \
                     the upload target expired (HTTP 403: AccessDenied: ",
                    first.as_str()
                )),
            "{style}: {notes}"
        );
        assert!(
            notes.ends_with(&format!(
                "call 1 was made again, and conversation {} keeps no audio",
                first.as_str()
            )),
            "{style}: {notes}"
        );
        assert_ne!(row["conversation_id"], first);
        let on_server = own
            .s3
            .assert_uploaded_rows_are_on_the_server(&sandbox, &bucket, &corpus)
            .await;
        assert_eq!(on_server, 1, "{style}");
    }
}

// ---- recordings read from the S3 server (`s3://` in the manifest) ----

impl Seaweed {
    /// Puts `contents` at `key` in `bucket` (created if need be) through the filer, so that the
    /// objects come from no code of ours; the tests read them back over S3.
    async fn put_source(&self, http: &reqwest::Client, bucket: &str, key: &str, contents: &[u8]) {
        let name = key.rsplit('/').next().unwrap().to_string();
        let part = reqwest::multipart::Part::bytes(contents.to_vec()).file_name(name);
        let form = reqwest::multipart::Form::new().part("file", part);
        let answer = http
            .post(format!("{}/buckets/{bucket}/{key}", self.filer))
            .multipart(form)
            .send()
            .await
            .expect("the filer answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }
}

/// A corpus whose recordings are objects in `bucket` and no longer on disk: its manifest
/// names rows 0 and 1 by URL, the others by key relative to `--base-dir s3://bucket/`.
async fn corpus_in_bucket(s3: &Seaweed, sandbox: &Sandbox, bucket: &str, n: usize) -> Corpus {
    let corpus = Corpus::new(n, |i| 40_000 + i * 7_919);
    let mut manifest = String::from("file,channel_id,call_date,call_time,agent,crm_ticket\n");
    for (i, (name, contents)) in corpus.files.iter().enumerate() {
        s3.put_source(&sandbox.http, bucket, name, contents).await;
        let file = match i < 2 {
            true => format!("s3://{bucket}/{name}"),
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

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn objects_in_a_bucket_are_validated_with_every_problem_on_its_line() {
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-objects-dest-v", &[]);
    let bucket = "voyc-objects-src-v";
    let corpus = corpus_in_bucket(&s3, &sandbox, bucket, 2).await;
    let page = b"<!DOCTYPE html><html><body>Not Found</body></html>";
    s3.put_source(&sandbox.http, bucket, "calls/page.wav", page)
        .await;
    let manifest = format!(
        "file,channel_id,call_date,call_time,agent\n\
         s3://{bucket}/calls/0000.wav,1,2024-03-01,09:00:00,Ann\n\
         s3://{bucket}/calls/missing.wav,1,2024-03-01,09:00:00,Ann\n\
         calls/page.wav,1,2024-03-01,09:00:00,Ann\n\
         https://{bucket}.example.com/calls/0001.wav,1,2024-03-01,09:00:00,Ann\n"
    );
    std::fs::write(corpus.path().join("bad.csv"), manifest).unwrap();
    let out = crate::util::voyc(corpus.path())
        .args([
            "validate",
            "bad.csv",
            "--base-dir",
            &format!("s3://{bucket}/"),
        ])
        .args(["--source-endpoint", &s3.endpoint])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!("bad.csv:3: file \"s3://{bucket}/calls/missing.wav\": no such object s3://{bucket}/calls/missing.wav").as_str(),
            "bad.csv:4: file \"calls/page.wav\": is not audio: its first bytes match no known audio format; it starts with text: \"<!DOCTYPE html><\"",
            format!("bad.csv:5: file \"https://{bucket}.example.com/calls/0001.wav\": https:// is not supported: only s3:// (Amazon S3 and S3-compatible stores), gs:// (Google Cloud Storage) and az:// (Azure Blob Storage) are; copy the recordings to one of them or to a local folder").as_str(),
        ],
        "{}",
        show(&out)
    );
    assert_eq!(lines[3], "4 rows checked: 3 problems in 3 rows, 0 warnings");

    // Wrong keys: one sentence for the whole run, and the secret is not in it.
    let out = crate::util::voyc(corpus.path())
        .args([
            "validate",
            "manifest.csv",
            "--base-dir",
            &format!("s3://{bucket}/"),
        ])
        .args(["--source-endpoint", &s3.endpoint])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "manifest.csv:2: the object store refused the credentials for s3://{bucket}: SignatureDoesNotMatch"
        )),
        "{}",
        show(&out)
    );
    assert_eq!(stderr.lines().count(), 1, "{}", show(&out));
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    for text in [&stderr, &String::from_utf8_lossy(&out.stdout)] {
        assert!(!text.contains(&secret) && !text.contains("not-the-secret"));
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn keys_from_an_aws_profile_read_objects_and_a_profile_without_keys_says_how_to_export_them()
{
    let s3 = seaweed();
    let sandbox = s3.sandbox("voyc-objects-dest-p", &[]);
    let bucket = "voyc-objects-src-p";
    let corpus = corpus_in_bucket(&s3, &sandbox, bucket, 2).await;
    let (key, secret) = (
        std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
    );
    let aws = corpus.path().join("aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = wrong\n\n\
             [archive]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        "[profile sso]\nsso_start_url = https://example.awsapps.com/start\n",
    )
    .unwrap();
    let validate = |profile: &str| {
        crate::util::voyc(corpus.path())
            .args(["validate", "manifest.csv", "--base-dir"])
            .arg(format!("s3://{bucket}/"))
            .args(["--source-endpoint", &s3.endpoint])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .env("AWS_PROFILE", profile)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    };
    let out = validate("archive");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "2 rows checked: all valid, 0 warnings"
    );

    // The default profile's keys are not the store's: refused, and neither secret shown.
    let out = validate("default");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the object store refused the credentials"),
        "{stderr}"
    );

    let out = validate("sso");
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AWS_PROFILE=sso: ")
            && stderr.contains("aws configure export-credentials --profile sso --format env"),
        "{stderr}"
    );
    for text in [&stderr, &String::from_utf8_lossy(&out.stdout)] {
        assert!(
            !text.contains(&secret) && !text.contains("wrong\n"),
            "{text}"
        );
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn objects_upload_byte_exact_from_one_bucket_to_another_and_a_rerun_finds_them_uploaded() {
    let s3 = seaweed();
    for style in ["post", "put"] {
        let dest = format!("voyc-objects-dest-{style}");
        let sandbox = s3.sandbox(&dest, &["--upload-style", style]);
        let bucket = format!("voyc-objects-src-{style}");
        let corpus = corpus_in_bucket(&s3, &sandbox, &bucket, 5).await;
        let base = format!("s3://{bucket}/");
        let args = ["--base-dir", &base, "--source-endpoint", &s3.endpoint];
        let out = upload(&corpus, &sandbox, &args);
        assert_eq!(out.status.code(), Some(0), "{style}: {}", show(&out));
        let report = corpus.report();
        assert!(
            report.iter().all(|row| row["status"] == "uploaded"),
            "{report:?}"
        );
        assert_eq!(report[0]["file"], format!("s3://{bucket}/calls/0000.wav"));
        assert_eq!(report[2]["file"], "calls/0002.wav");
        let on_server = s3
            .assert_uploaded_rows_are_on_the_server(&sandbox, &dest, &corpus)
            .await;
        assert_eq!(on_server, 5, "{style}");

        let out = upload(&corpus, &sandbox, &args);
        assert_eq!(out.status.code(), Some(0), "{style}: {}", show(&out));
        assert!(
            corpus
                .report()
                .iter()
                .all(|row| row["status"] == "already_uploaded"),
            "{style}: {}",
            show(&out)
        );
        assert_eq!(
            sandbox.conversations().await.len(),
            5,
            "{style}: no second call 1"
        );
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn objects_resume_after_kill_9_without_a_second_upload_of_any() {
    let s3 = seaweed();
    let dest = "voyc-objects-dest-kill";
    let sandbox = s3.sandbox(dest, &["--latency-ms", "300"]);
    let bucket = "voyc-objects-src-kill";
    let corpus = corpus_in_bucket(&s3, &sandbox, bucket, 12).await;
    let base = format!("s3://{bucket}/");
    let args = [
        "--base-dir",
        &base,
        "--source-endpoint",
        &s3.endpoint,
        "--concurrency",
        "3",
    ];
    let child = spawn_upload(&corpus, &sandbox.url, &args);
    let mut child = until_conversations(&sandbox, child, 4).await;
    child.kill().unwrap(); // SIGKILL: no report, the journal as it was
    child.wait().unwrap();

    let out = upload(&corpus, &sandbox, &args);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert!(
        report
            .iter()
            .all(|r| r["status"] == "uploaded" || r["status"] == "already_uploaded"),
        "{report:?}"
    );
    // Killed with rows left: the rerun sent those.
    assert!(
        report.iter().any(|r| r["status"] == "uploaded"),
        "{report:?}"
    );
    let on_server = s3
        .assert_uploaded_rows_are_on_the_server(&sandbox, dest, &corpus)
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

// ---- `voyc-import scan s3://BUCKET/PREFIX/`: the objects listed, the manifest uploaded ----

/// Amazon Connect's layout: `CallRecordings/YYYY/MM/DD/<contact id>_<YYYYMMDD>T<HH:MM>_UTC.wav`.
pub(crate) const CONNECT_PATTERN: &str =
    "{call_date:%Y/%m/%d}/{contact_id}_{*}T{call_time:%H:%M}_UTC.wav";

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_scanned_prefix_becomes_a_manifest_that_uploads_as_it_is_byte_exact() {
    let s3 = seaweed();
    let dest = "voyc-scan-dest";
    let sandbox = s3.sandbox(dest, &[]);
    let bucket = "voyc-scan-src";
    let top = "connect/inst-1/CallRecordings";
    let recordings = [
        (
            "2026/11/02/0f6a3c1e-7b2d-4c55-9e1a-2b7d9c4e8a01_20261102T09:15_UTC.wav",
            41_000,
        ),
        (
            "2026/11/02/5d2e9b40-1c3a-4f6e-8d7b-0a9c1e2f3b4c_20261102T16:40_UTC.wav",
            57_000,
        ),
        (
            "2026/11/03/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d_20261103T08:05_UTC.wav",
            33_000,
        ),
    ];
    let mut contents = HashMap::new();
    for (i, (rel, size)) in recordings.iter().enumerate() {
        let bytes = crate::upload::wav(i, *size);
        s3.put_source(&sandbox.http, bucket, &format!("{top}/{rel}"), &bytes)
            .await;
        contents.insert(format!("s3://{bucket}/{top}/{rel}"), bytes);
    }
    s3.put_source(
        &sandbox.http,
        bucket,
        &format!("{top}/2026/11/03/readme.txt"),
        b"not a call",
    )
    .await;
    // An empty folder, as a console's "Create folder" leaves one: no object of the export.
    let marker = sandbox
        .http
        .post(format!("{}/buckets/{bucket}/{top}/2026/11/04/", s3.filer))
        .send()
        .await
        .expect("the filer answers");
    // (409: made by an earlier run against the same SeaweedFS.)
    assert!(
        marker.status().is_success() || marker.status() == StatusCode::CONFLICT,
        "{}",
        marker.status()
    );
    // Beside the prefix, not under it: not listed.
    s3.put_source(
        &sandbox.http,
        bucket,
        "connect/inst-1/CallRecordings-old/2026/11/02/x_20261102T09:15_UTC.wav",
        b"RIFF",
    )
    .await;

    let corpus = Corpus::new(0, |_| 0);
    let scan = |prefix: &str| {
        voyc(corpus.path())
            .args(["scan", prefix, "--pattern", CONNECT_PATTERN])
            .args(["--set", "channel_id=support", "--set", "agent=connect"])
            .args(["--out", "manifest.csv", "--source-endpoint", &s3.endpoint])
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    };
    // Without its trailing `/`, the prefix is the same folder.
    for prefix in [
        format!("s3://{bucket}/{top}/"),
        format!("s3://{bucket}/{top}"),
    ] {
        let out = scan(&prefix);
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "s3://{bucket}/{top}/2026/11/03/readme.txt: does not end with \"_UTC.wav\"\n\
                 scanned 4 objects (127.9 KiB) in s3://{bucket}/{top}/: 3 matched, 1 did not; 3 rows written to manifest.csv\n"
            ),
            "{prefix}"
        );
        let manifest = std::fs::read_to_string(corpus.path().join("manifest.csv")).unwrap();
        let mut expected = String::from("file,call_date,contact_id,call_time,channel_id,agent\n");
        for (rel, day, id, time) in [
            (
                recordings[0].0,
                "2026-11-02",
                "0f6a3c1e-7b2d-4c55-9e1a-2b7d9c4e8a01",
                "09:15:00",
            ),
            (
                recordings[1].0,
                "2026-11-02",
                "5d2e9b40-1c3a-4f6e-8d7b-0a9c1e2f3b4c",
                "16:40:00",
            ),
            (
                recordings[2].0,
                "2026-11-03",
                "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
                "08:05:00",
            ),
        ] {
            expected.push_str(&format!(
                "s3://{bucket}/{top}/{rel},{day},{id},{time},support,connect\n"
            ));
        }
        assert_eq!(manifest, expected, "{prefix}");
    }

    let out = upload(&corpus, &sandbox, &["--source-endpoint", &s3.endpoint]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = corpus.report();
    assert_eq!(report.len(), 3, "{report:?}");
    for row in &report {
        assert_eq!(row["status"], "uploaded", "{row:?}");
        let expected = &contents[&row["file"]];
        let stored = s3
            .stored(&sandbox, dest, &key_for(&row["conversation_id"]))
            .await;
        assert!(
            stored.as_deref() == Some(&expected[..]),
            "{}: the server holds other bytes than the object's",
            row["file"]
        );
        assert_eq!(row["sha256"], sha256_hex(expected));
    }
}

#[tokio::test]
#[ignore = "needs SeaweedFS: run scripts/test.sh"]
async fn a_scan_of_a_missing_bucket_or_with_wrong_keys_is_one_sentence_and_no_manifest() {
    let s3 = seaweed();
    let dir = Dir::new();
    let scan = |prefix: &str| {
        let mut cmd = voyc(dir.path());
        cmd.args(["scan", prefix, "--pattern", CONNECT_PATTERN])
            .args(["--out", "manifest.csv", "--source-endpoint", &s3.endpoint])
            .arg("--quiet")
            .timeout(Duration::from_secs(60));
        cmd
    };
    let out = scan("s3://voyc-scan-no-such-bucket/connect/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no such bucket s3://voyc-scan-no-such-bucket\n"
    );
    assert!(!dir.join("manifest.csv").exists());

    // A bucket that exists, so that it is the keys that are refused.
    let bucket = "voyc-scan-keys";
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    s3.put_source(&http, bucket, "connect/a.wav", b"RIFF").await;
    let out = scan(&format!("s3://{bucket}/connect/"))
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: the object store refused the credentials for s3://voyc-scan-keys: SignatureDoesNotMatch"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    assert!(!stderr.contains(&secret) && !stderr.contains("not-the-secret"));
    assert!(!dir.join("manifest.csv").exists());

    // A mistyped prefix lists as an empty one: said, even with --quiet.
    let out = scan(&format!("s3://{bucket}/Connect/")).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "warning: s3://{bucket}/Connect/ holds no objects: if recordings were expected, check the bucket and prefix (names are case-sensitive)\n"
        )
    );
}

//! The sandbox's external-storage mode against a real S3 server that nobody here wrote:
//! SeaweedFS, installed and started by `scripts/test.sh`, which exports where it is
//! (`VOYC_TEST_S3_ENDPOINT`, `VOYC_TEST_S3_FILER`) and its keys (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`). Plain `cargo test` lists these tests as ignored, with the reason.
//! What arrived is read back through SeaweedFS's filer, not through S3, so that no signing of
//! ours takes part in the check; each test uses a bucket of its own, which the sandbox creates.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::sandbox::{
    BOTO3_POST_FIELDS, Sandbox, audio, fields_of, form_with, sha256_hex, tamper, valid_body,
    xml_code,
};
use crate::util::{Dir, show, voyc};

/// Where the SeaweedFS of `scripts/test.sh` is.
struct Seaweed {
    endpoint: String,
    filer: String,
}

fn seaweed() -> Seaweed {
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
    fn sandbox(&self, bucket: &str, args: &[&str]) -> Sandbox {
        let mut all = vec!["--s3-endpoint", &self.endpoint, "--s3-bucket", bucket];
        all.extend_from_slice(args);
        Sandbox::start(&all)
    }

    /// The object's bytes as SeaweedFS's filer serves them; `None` when there is none.
    async fn stored(&self, sandbox: &Sandbox, bucket: &str, key: &str) -> Option<Vec<u8>> {
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

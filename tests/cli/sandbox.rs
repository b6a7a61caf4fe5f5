//! `voyc-import sandbox` driven over real sockets by a plain HTTP client: call 1, both upload
//! styles, every S3 rule, every fault, and the inspection endpoints.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::util::{Dir, SandboxProcess, sandbox_process};

/// A `voyc-import sandbox` process with an HTTP client for it.
pub(crate) struct Sandbox {
    process: SandboxProcess,
    pub(crate) url: String,
    pub(crate) http: Client,
}

impl Sandbox {
    /// Starts the sandbox on a free port with `args`, and reads its URL from stdout.
    pub(crate) fn start(args: &[&str]) -> Sandbox {
        let process = sandbox_process(args);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Sandbox {
            url: process.url.clone(),
            process,
            http,
        }
    }

    fn call1_url(&self, org: &str) -> String {
        format!(
            "{}/api/v2/workspace/{org}/conversation/upload_data/",
            self.url
        )
    }

    /// Call 1 with the default token; returns status, headers and body text.
    async fn call1(&self, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, String) {
        self.call1_as("org-1", Some("sandbox-token"), body).await
    }

    async fn call1_as(
        &self,
        org: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut request = self
            .http
            .post(self.call1_url(org))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("call 1 gets an answer");
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("a body"))
    }

    /// Call 1 that must succeed; returns its JSON answer.
    pub(crate) async fn create(&self) -> Value {
        let (status, _, body) = self.call1(&valid_body()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_str(&body).expect("call 1 answers JSON")
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK);
        serde_json::from_str(&response.text().await.expect("a body")).expect("JSON")
    }

    pub(crate) async fn conversations(&self) -> Vec<Value> {
        match self.get_json("/_sandbox/conversations").await {
            Value::Array(all) => all,
            other => panic!("not an array: {other}"),
        }
    }

    pub(crate) async fn stats(&self) -> Value {
        self.get_json("/_sandbox/stats").await
    }

    async fn faults(&self) -> Value {
        self.stats().await["faults"].clone()
    }

    /// Sends `form` (already holding the fields and file in the order wanted) to a POST target.
    pub(crate) async fn post_form(&self, url: &str, form: Form) -> (StatusCode, String) {
        let response = self
            .http
            .post(url)
            .multipart(form)
            .send()
            .await
            .expect("an answer");
        (response.status(), response.text().await.expect("a body"))
    }

    /// Uploads `data` to a presigned POST the way a client must: every field in order, then the file.
    pub(crate) async fn upload_post(&self, answer: &Value, data: &[u8]) -> (StatusCode, String) {
        let target = &answer["upload"];
        let form = form_with(fields_of(target), data);
        self.post_form(target["url"].as_str().unwrap(), form).await
    }

    pub(crate) async fn upload_put(&self, url: &str, data: &[u8]) -> (StatusCode, String) {
        let response = self
            .http
            .put(url)
            .body(data.to_vec())
            .send()
            .await
            .expect("an answer");
        (response.status(), response.text().await.expect("a body"))
    }

    /// Stops the sandbox with SIGINT as Ctrl-C would; returns its exit code and stderr.
    #[cfg(unix)]
    fn interrupt(mut self) -> (Option<i32>, String) {
        self.process.stop("-INT")
    }
}

/// The fields of a presigned POST, in the order boto3's `generate_presigned_post` gives them.
pub(crate) const BOTO3_POST_FIELDS: [&str; 6] = [
    "key",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "policy",
    "x-amz-signature",
];

pub(crate) fn valid_body() -> Value {
    json!({
        "channel_id": "42", "call_date": "2024-02-29", "call_time": "09:05:00",
        "agent": "Ann", "direction": "inbound", "speakers": 2, "team": "north"
    })
}

pub(crate) fn fields_of(target: &Value) -> Vec<(String, String)> {
    target["fields"]
        .as_object()
        .expect("fields")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string field").to_string()))
        .collect()
}

pub(crate) fn form_with(fields: Vec<(String, String)>, data: &[u8]) -> Form {
    fields
        .into_iter()
        .fold(Form::new(), |form, (name, value)| form.text(name, value))
        .part("file", Part::bytes(data.to_vec()).file_name("call.wav"))
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn xml_code(body: &str) -> &str {
    let start = body.find("<Code>").map(|i| i + 6).unwrap_or(0);
    let end = body.find("</Code>").unwrap_or(start);
    &body[start..end]
}

pub(crate) fn audio(len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(len as u64);
    (0..len).map(|_| rng.u8(..)).collect()
}

#[tokio::test]
async fn the_url_comes_first_and_the_inspection_endpoint_starts_empty() {
    let sandbox = Sandbox::start(&[]);
    assert!(sandbox.conversations().await.is_empty());
    assert_eq!(sandbox.faults().await["fail"], 0);
}

#[tokio::test]
async fn call_1_without_the_right_token_is_401_with_a_detail() {
    let sandbox = Sandbox::start(&["--token", "s3cret"]);
    let (status, headers, body) = sandbox.call1_as("o", None, &valid_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "Authentication credentials were not provided."})
    );
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, body) = sandbox
        .call1_as("o", Some("sandbox-token"), &valid_body())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "Invalid token."})
    );
    let (status, _, _) = sandbox.call1_as("o", Some("s3cret"), &valid_body()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(sandbox.conversations().await.len(), 1);
}

#[tokio::test]
async fn the_standardized_style_answers_like_voycs_live_api() {
    let sandbox = Sandbox::start(&["--error-style", "standardized"]);
    let (status, _, body) = sandbox.call1_as("o", None, &valid_body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"type": "client_error", "errors": [{"code": "not_authenticated",
            "detail": "Authentication credentials were not provided.", "attr": null}]})
    );
    let (status, _, body) = sandbox.call1_as("o", Some("wrong"), &valid_body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("\"authentication_failed\""), "{body}");
    let mut bad = valid_body();
    bad["call_date"] = json!("2024-13-01");
    let (status, _, body) = sandbox.call1(&bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"type": "validation_error", "errors": [{"code": "invalid",
            "detail": "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.",
            "attr": "call_date"}]})
    );
}

#[tokio::test]
async fn each_invalid_field_is_a_400_that_names_it_and_creates_nothing() {
    let sandbox = Sandbox::start(&[]);
    // DRF's own words: Voyc's serializer is what the sandbox stands in for.
    const DATE: &str = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.";
    const TIME: &str =
        "Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]].";
    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        ("channel_id", None, "This field is required."),
        ("call_date", None, "This field is required."),
        ("call_time", None, "This field is required."),
        ("agent", None, "This field is required."),
        ("agent", Some(json!("  ")), "This field may not be blank."),
        ("call_date", Some(json!("03/02/2024")), DATE),
        ("call_date", Some(json!("2023-02-29")), DATE),
        ("call_time", Some(json!("9h05")), TIME),
        ("call_time", Some(json!("24:00:00")), TIME),
        (
            "direction",
            Some(json!("sideways")),
            "\"sideways\" is not a valid choice.",
        ),
        (
            "speakers",
            Some(json!(0)),
            "Ensure this value is greater than or equal to 1.",
        ),
        ("agent", Some(json!({"name": "Ann"})), "Not a valid string."),
    ];
    for (field, value, message) in cases {
        let mut body = valid_body();
        match &value {
            None => {
                body.as_object_mut().unwrap().remove(field);
            }
            Some(v) => body[field] = v.clone(),
        }
        let (status, _, text) = sandbox.call1(&body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {value:?}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let messages = answer[field].as_array().unwrap_or_else(|| panic!("{text}"));
        assert_eq!(messages.len(), 1, "{text}");
        assert_eq!(messages[0], message, "{field} {value:?}: {text}");
        assert_eq!(answer.as_object().unwrap().len(), 1, "{text}");
    }
    assert!(sandbox.conversations().await.is_empty());
}

#[tokio::test]
async fn dates_times_and_numbers_in_the_other_forms_drf_reads_are_accepted() {
    let sandbox = Sandbox::start(&[]);
    for (field, value) in [
        ("call_date", json!("2024-3-5")),
        ("call_time", json!("9:05")),
        ("call_time", json!("09:05:00.250")),
        ("speakers", json!("2.0")),
        ("channel_id", json!(42)),
    ] {
        let mut body = valid_body();
        body[field] = value.clone();
        let (status, _, text) = sandbox.call1(&body).await;
        assert_eq!(status, StatusCode::CREATED, "{field} {value}: {text}");
    }
    let kept = sandbox.conversations().await;
    assert_eq!(kept.len(), 5);
    assert_eq!(kept[1]["metadata"]["call_time"], "9:05", "kept as sent");
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let (status, _, body) = sandbox.call1(&json!(["a"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
    );
    let send = |content_type: &'static str, body: &'static str| {
        sandbox
            .http
            .post(sandbox.call1_url("o"))
            .bearer_auth("sandbox-token")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = send("application/json", "{not json").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let detail: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(
        detail["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error - "),
        "{detail}"
    );
    let response = send("text/plain", "{}").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(sandbox.conversations().await.is_empty());
}

#[tokio::test]
async fn another_organisation_is_not_found_when_one_is_set() {
    let sandbox = Sandbox::start(&["--org", "acme"]);
    let (status, _, body) = sandbox
        .call1_as("other", Some("sandbox-token"), &valid_body())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "Not found."})
    );
    let (status, _, _) = sandbox
        .call1_as("acme", Some("sandbox-token"), &valid_body())
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_presigned_post_upload_is_stored_and_shown_with_its_size_and_sha256() {
    let dir = Dir::new();
    let data_dir = dir.path().to_str().unwrap();
    let sandbox = Sandbox::start(&["--data-dir", data_dir]);
    let answer = sandbox.create().await;
    let id = answer["conversation_id"].as_str().unwrap();
    let target = &answer["upload"];
    let names: Vec<String> = fields_of(target).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, BOTO3_POST_FIELDS);
    assert_eq!(
        target["url"].as_str().unwrap(),
        format!("{}/s3/voyc-sandbox", sandbox.url)
    );
    let before = &sandbox.conversations().await[0];
    assert_eq!(
        (before["uploaded"].clone(), before["bytes"].clone()),
        (json!(false), Value::Null)
    );

    let data = audio(300_000);
    let (status, body) = sandbox.upload_post(&answer, &data).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let all = sandbox.conversations().await;
    assert_eq!(
        all,
        vec![json!({
            "conversation_id": id, "organisation_id": "org-1", "metadata": valid_body(),
            "uploaded": true, "bytes": 300_000, "sha256": sha256_hex(&data), "uploads": 1,
        })]
    );
    let key = target["fields"]["key"].as_str().unwrap();
    let stored = std::fs::read(dir.join("voyc-sandbox").join(key)).expect("the stored file");
    assert!(
        stored == data,
        "the stored bytes differ from the uploaded ones"
    );
}

#[tokio::test]
async fn a_presigned_put_upload_is_stored_and_shown() {
    let sandbox = Sandbox::start(&["--upload-style", "put"]);
    let answer = sandbox.create().await;
    let url = answer["upload_url"].as_str().unwrap();
    for param in [
        "X-Amz-Expires=3600",
        "X-Amz-Signature=",
        "X-Amz-Credential=",
    ] {
        assert!(url.contains(param), "{url}");
    }
    let data = audio(70_000);
    let (status, body) = sandbox.upload_put(url, &data).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all = sandbox.conversations().await;
    assert_eq!(all[0]["conversation_id"], answer["conversation_id"]);
    assert_eq!(all[0]["bytes"], 70_000);
    assert_eq!(all[0]["sha256"], sha256_hex(&data));
    assert_eq!(all[0]["uploads"], 1);
}

#[tokio::test]
async fn uploading_the_same_file_twice_shows_two_uploads() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    for _ in 0..2 {
        let (status, body) = sandbox.upload_post(&answer, b"RIFF....WAVE").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    assert_eq!(sandbox.conversations().await[0]["uploads"], 2);
}

#[tokio::test]
async fn success_action_status_201_answers_an_s3_post_response() {
    let sandbox = Sandbox::start(&["--success-action-status", "201"]);
    let answer = sandbox.create().await;
    assert_eq!(answer["upload"]["fields"]["success_action_status"], "201");
    let (status, body) = sandbox.upload_post(&answer, b"abc").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.contains("<PostResponse>"), "{body}");
    assert!(body.contains("<Bucket>voyc-sandbox</Bucket>"), "{body}");
}

#[tokio::test]
async fn every_response_shape_carries_an_id_and_a_usable_target() {
    for (style, shape) in [
        ("post", "nested"),
        ("put", "nested"),
        ("post", "numeric"),
        ("put", "numeric"),
    ] {
        let sandbox = Sandbox::start(&["--upload-style", style, "--response-shape", shape]);
        let answer = sandbox.create().await;
        let (id, target) = match shape {
            "nested" => (
                answer["conversation"]["id"].clone(),
                if style == "post" {
                    answer["presigned_post"].clone()
                } else {
                    answer["presigned_url"].clone()
                },
            ),
            _ => (
                answer["id"].clone(),
                if style == "post" {
                    json!({"url": answer["url"], "fields": answer["fields"]})
                } else {
                    answer["url"].clone()
                },
            ),
        };
        if shape == "numeric" {
            assert_eq!(id, json!(1), "{answer}");
        }
        let (status, body) = match target {
            Value::String(url) => sandbox.upload_put(&url, b"abc").await,
            post => {
                let form = form_with(fields_of(&post), b"abc");
                sandbox.post_form(post["url"].as_str().unwrap(), form).await
            }
        };
        assert!(status.is_success(), "{style} {shape}: {status} {body}");
        let all = sandbox.conversations().await;
        let shown_id = match &id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(all[0]["conversation_id"], shown_id.as_str());
        assert_eq!(all[0]["uploaded"], true);
    }
}

#[tokio::test]
async fn a_file_part_before_the_fields_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    let target = &answer["upload"];
    let form = fields_of(target).into_iter().fold(
        Form::new().part("file", Part::bytes(b"abc".to_vec()).file_name("a.wav")),
        |form, (name, value)| form.text(name, value),
    );
    let (status, body) = sandbox
        .post_form(target["url"].as_str().unwrap(), form)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(xml_code(&body), "InvalidArgument", "{body}");
    assert!(
        body.contains("Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields."),
        "{body}"
    );
    assert_eq!(sandbox.conversations().await[0]["uploaded"], false);
}

#[tokio::test]
async fn an_expired_policy_or_url_is_refused_as_s3_does() {
    let post = Sandbox::start(&["--upload-ttl", "0"]);
    let answer = post.create().await;
    let (status, body) = post.upload_post(&answer, b"abc").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert!(
        body.contains("<Message>Invalid according to Policy: Policy expired.</Message>"),
        "{body}"
    );
    assert_eq!(post.conversations().await[0]["uploaded"], false);

    let put = Sandbox::start(&["--upload-ttl", "0", "--upload-style", "put"]);
    let answer = put.create().await;
    let (status, body) = put
        .upload_put(answer["upload_url"].as_str().unwrap(), b"abc")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("<Message>Request has expired</Message>"),
        "{body}"
    );
    assert_eq!(put.conversations().await[0]["uploaded"], false);
}

/// Changes the first hex digit of a signature.
pub(crate) fn tamper(signature: &str) -> String {
    let first = if signature.starts_with('0') { "1" } else { "0" };
    format!("{first}{}", &signature[1..])
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    let fields: Vec<(String, String)> = fields_of(&answer["upload"])
        .into_iter()
        .map(|(n, v)| match n.as_str() {
            "x-amz-signature" => (n, tamper(&v)),
            _ => (n, v),
        })
        .collect();
    let (status, body) = sandbox
        .post_form(
            answer["upload"]["url"].as_str().unwrap(),
            form_with(fields, b"abc"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(xml_code(&body), "SignatureDoesNotMatch", "{body}");

    let put = Sandbox::start(&["--upload-style", "put"]);
    let url = put.create().await["upload_url"]
        .as_str()
        .unwrap()
        .to_string();
    let (head, signature) = url.split_once("X-Amz-Signature=").unwrap();
    let (status, body) = put
        .upload_put(
            &format!("{head}X-Amz-Signature={}", tamper(signature)),
            b"abc",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(xml_code(&body), "SignatureDoesNotMatch", "{body}");
    assert_eq!(put.conversations().await[0]["uploaded"], false);
}

#[tokio::test]
async fn an_upload_to_another_key_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let first = sandbox.create().await;
    let second = sandbox.create().await;
    let other_key = second["upload"]["fields"]["key"]
        .as_str()
        .unwrap()
        .to_string();
    let fields: Vec<(String, String)> = fields_of(&first["upload"])
        .into_iter()
        .map(|(n, v)| {
            if n == "key" {
                (n, other_key.clone())
            } else {
                (n, v)
            }
        })
        .collect();
    let (status, body) = sandbox
        .post_form(
            first["upload"]["url"].as_str().unwrap(),
            form_with(fields, b"abc"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(xml_code(&body), "AccessDenied", "{body}");
    assert!(
        body.contains(
            "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$key\", \"uploads/"
        ),
        "{body}"
    );

    let put = Sandbox::start(&["--upload-style", "put"]);
    let first = put.create().await["upload_url"]
        .as_str()
        .unwrap()
        .to_string();
    let second = put.create().await["upload_url"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, first_query) = first.split_once('?').unwrap();
    let (second_path, _) = second.split_once('?').unwrap();
    let (status, body) = put
        .upload_put(&format!("{second_path}?{first_query}"), b"abc")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(xml_code(&body), "SignatureDoesNotMatch", "{body}");
    let all = sandbox.conversations().await;
    assert!(all.iter().all(|c| c["uploaded"] == false), "{all:?}");
    assert!(
        put.conversations()
            .await
            .iter()
            .all(|c| c["uploaded"] == false)
    );
}

#[tokio::test]
async fn an_upload_over_the_size_limit_is_entity_too_large() {
    let sandbox = Sandbox::start(&["--max-upload-bytes", "1000"]);
    let answer = sandbox.create().await;
    let (status, body) = sandbox.upload_post(&answer, &audio(5000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(xml_code(&body), "EntityTooLarge", "{body}");
    assert!(
        body.contains("<MaxSizeAllowed>1000</MaxSizeAllowed>"),
        "{body}"
    );
    assert!(body.contains("<ProposedSize>5000</ProposedSize>"), "{body}");
    let (status, _) = sandbox.upload_post(&answer, &audio(1000)).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "exactly the limit is accepted"
    );

    let put = Sandbox::start(&["--max-upload-bytes", "1000", "--upload-style", "put"]);
    let url = put.create().await["upload_url"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = put.upload_put(&url, &audio(1001)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(xml_code(&body), "EntityTooLarge", "{body}");
    assert_eq!(put.conversations().await[0]["uploaded"], false);
}

#[tokio::test]
async fn an_empty_file_is_entity_too_small() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    let (status, body) = sandbox.upload_post(&answer, b"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(xml_code(&body), "EntityTooSmall", "{body}");
    assert_eq!(sandbox.conversations().await[0]["uploaded"], false);
}

#[tokio::test]
async fn a_field_the_policy_does_not_cover_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    let mut fields = fields_of(&answer["upload"]);
    fields.insert(1, ("Content-Type".into(), "audio/wav".into()));
    let (status, body) = sandbox
        .post_form(
            answer["upload"]["url"].as_str().unwrap(),
            form_with(fields, b"abc"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("Invalid according to Policy: Extra input fields: content-type"),
        "{body}"
    );
}

#[tokio::test]
async fn an_upload_without_a_content_length_is_411() {
    let sandbox = Sandbox::start(&[]);
    let answer = sandbox.create().await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(b"abc".to_vec())];
    let stream = futures_util::stream::iter(chunks);
    let form = fields_of(&answer["upload"])
        .into_iter()
        .fold(Form::new(), |form, (n, v)| form.text(n, v))
        .part("file", Part::stream(reqwest::Body::wrap_stream(stream)));
    let (status, body) = sandbox
        .post_form(answer["upload"]["url"].as_str().unwrap(), form)
        .await;
    assert_eq!(status, StatusCode::LENGTH_REQUIRED);
    assert_eq!(xml_code(&body), "MissingContentLength", "{body}");
}

#[tokio::test]
async fn fail_rate_1_answers_503_before_anything_is_created() {
    let sandbox = Sandbox::start(&["--fail-rate", "1"]);
    let (status, _, _) = sandbox.call1(&valid_body()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(sandbox.conversations().await.is_empty());
    assert_eq!(sandbox.faults().await["fail"], 1);
}

#[tokio::test]
async fn ambiguous_rate_1_creates_the_conversation_then_answers_500() {
    let sandbox = Sandbox::start(&["--ambiguous-rate", "1"]);
    let (status, _, _) = sandbox.call1(&valid_body()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let all = sandbox.conversations().await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["metadata"], valid_body());
    assert_eq!(all[0]["uploaded"], false);
    assert_eq!(sandbox.faults().await["ambiguous"], 1);
}

#[tokio::test]
async fn throttle_rate_1_answers_429_with_retry_after() {
    let sandbox = Sandbox::start(&["--throttle-rate", "1"]);
    let (status, headers, body) = sandbox.call1(&valid_body()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("throttled"), "{body}");
    assert!(sandbox.conversations().await.is_empty());
    assert_eq!(sandbox.faults().await["throttle"], 1);
}

#[tokio::test]
async fn s3_fail_rate_1_answers_slow_down() {
    let sandbox = Sandbox::start(&["--s3-fail-rate", "1"]);
    let answer = sandbox.create().await;
    let (status, body) = sandbox.upload_post(&answer, &audio(100_000)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(xml_code(&body), "SlowDown", "{body}");
    assert_eq!(sandbox.conversations().await[0]["uploaded"], false);
    assert_eq!(sandbox.faults().await["s3_fail"], 1);
}

#[tokio::test]
async fn expired_rate_1_hands_out_targets_that_are_already_expired() {
    let post = Sandbox::start(&["--expired-rate", "1"]);
    let answer = post.create().await;
    let (status, body) = post.upload_post(&answer, b"RIFF").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("<Message>Invalid according to Policy: Policy expired.</Message>"),
        "{body}"
    );

    let put = Sandbox::start(&["--expired-rate", "1", "--upload-style", "put"]);
    let answer = put.create().await;
    let (status, body) = put
        .upload_put(answer["upload_url"].as_str().unwrap(), b"RIFF")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("<Message>Request has expired</Message>"),
        "{body}"
    );
    assert_eq!(put.conversations().await[0]["uploaded"], false);
    assert_eq!(put.faults().await["expired"], 1);
}

#[tokio::test]
async fn token_ttl_1_accepts_the_token_at_once_then_refuses_it_as_invalid_and_counts_it() {
    let sandbox = Sandbox::start(&["--token-ttl", "1", "--upload-style", "put"]);
    let answer = sandbox.create().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, headers, body) = sandbox.call1(&valid_body()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detail": "Invalid token."})
    );
    assert!(headers.contains_key("www-authenticate"));
    // Uploads carry no token: a target handed out before the expiry still takes the file.
    let (status, body) = sandbox
        .upload_put(answer["upload_url"].as_str().unwrap(), b"RIFF")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all = sandbox.conversations().await;
    assert_eq!(all.len(), 1, "the refused call created nothing");
    assert_eq!(all[0]["uploaded"], true);
    let faults = sandbox.faults().await;
    assert_eq!(faults["token_expired"], 1, "{faults}");
    assert_eq!(faults["fail"], 0, "{faults}");
    #[cfg(unix)]
    {
        let (code, stderr) = sandbox.interrupt();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("expires 1 s after start"), "{stderr}");
        assert!(stderr.contains("token-expired 1"), "{stderr}");
    }
}

/// Three call 1s at once against `--rate-limit 1`: they arrive within far less than a second
/// of each other, however loaded the machine, so the window can let only one of them through.
#[tokio::test]
async fn rate_limit_1_answers_429_with_retry_after_to_call_1s_beyond_one_a_second() {
    let sandbox = Sandbox::start(&["--rate-limit", "1", "--upload-style", "put"]);
    let body = valid_body();
    let answers = futures_util::future::join_all((0..3).map(|_| sandbox.call1(&body))).await;
    let created = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::CREATED)
        .count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(created + throttled.len(), 3, "{answers:?}");
    assert!(created >= 1 && !throttled.is_empty(), "{answers:?}");
    for (_, headers, body) in &throttled {
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1, "{headers:?}");
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"detail": "Request was throttled. Expected available in 1 second."})
        );
    }
    assert_eq!(sandbox.conversations().await.len(), created);
    let stats = sandbox.stats().await;
    assert_eq!(stats["api_requests"], 3, "{stats}");
    assert_eq!(stats["rate_limited"], throttled.len(), "{stats}");
    assert_eq!(
        stats["faults"]["throttle"], 0,
        "the random throttle is another count"
    );
    #[cfg(unix)]
    {
        let (code, stderr) = sandbox.interrupt();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("at most 1 call 1 a second"), "{stderr}");
        assert!(
            stderr.contains(&format!("rate-limited {}", throttled.len())),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn an_outage_answers_every_api_and_s3_request_503_right_after_the_nth_call_1() {
    for style in ["post", "put"] {
        // Ten minutes: the outage is still on when the test looks, however slow the machine.
        let sandbox = Sandbox::start(&[
            "--outage-after",
            "1",
            "--outage-secs",
            "600",
            "--upload-style",
            style,
        ]);
        let answer = sandbox.create().await;
        let (status, headers, body) = sandbox.call1(&valid_body()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{style}: {body}");
        assert_eq!(
            headers["content-type"], "text/html",
            "{style}: a gateway's page"
        );
        // The first row's upload meets the outage too.
        let (status, body) = match style {
            "post" => sandbox.upload_post(&answer, b"RIFF").await,
            _ => {
                let url = answer["upload_url"].as_str().unwrap();
                sandbox.upload_put(url, b"RIFF").await
            }
        };
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{style}: {body}");
        assert_eq!(xml_code(&body), "ServiceUnavailable", "{style}: {body}");
        // The inspection endpoints stay up.
        let all = sandbox.conversations().await;
        assert_eq!((all.len(), &all[0]["uploaded"]), (1, &json!(false)));
        let stats = sandbox.stats().await;
        assert_eq!(stats["outages"], 1, "{stats}");
        assert_eq!(stats["outage_on"], true, "{stats}");
        assert_eq!(stats["outage_api_requests"], 1, "{stats}");
        assert_eq!(stats["outage_s3_requests"], 1, "{stats}");
        assert_eq!(stats["api_requests"], 2, "{stats}");
        assert_eq!(stats["faults"]["fail"], 0, "{stats}");
    }
}

#[tokio::test]
async fn after_the_outage_call_1_and_uploads_are_served_again() {
    let sandbox = Sandbox::start(&["--outage-after", "1", "--outage-secs", "1"]);
    sandbox.create().await;
    // How long the outage lasted is the unit tests' business (against a hand-moved clock);
    // here only that service resumes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let (status, _, body) = sandbox.call1(&valid_body()).await;
        match status {
            StatusCode::CREATED => break serde_json::from_str::<Value>(&body).unwrap(),
            StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other}: {body}"),
        }
    };
    let (status, body) = sandbox.upload_post(&answer, b"RIFF").await;
    assert!(status.is_success(), "{status}: {body}");
    let stats = sandbox.stats().await;
    assert_eq!(
        (&stats["outages"], &stats["outage_on"]),
        (&json!(1), &json!(false))
    );
}

#[test]
fn an_outage_needs_both_switches_and_a_repeat_needs_calls_between() {
    let dir = Dir::new();
    let voyc = || crate::util::voyc(dir.path());
    let out = voyc()
        .args(["sandbox", "--listen", "127.0.0.1:0", "--outage-after", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--outage-secs <SECS>"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = voyc()
        .args(["sandbox", "--listen", "127.0.0.1:0", "--outage-after", "0"])
        .args(["--outage-secs", "5", "--outage-repeat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: a repeated outage needs at least 1 call 1 between outages (--outage-after 1 or more)\n"
    );
    let out = voyc()
        .args(["sandbox", "--listen", "127.0.0.1:0", "--rate-limit", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn s3_drop_rate_1_closes_the_connection_without_an_answer() {
    for style in ["post", "put"] {
        let sandbox = Sandbox::start(&["--s3-drop-rate", "1", "--upload-style", style]);
        for size in [10, 3_000_000] {
            let answer = sandbox.create().await;
            let data = audio(size);
            let request = match style {
                "post" => sandbox
                    .http
                    .post(answer["upload"]["url"].as_str().unwrap())
                    .multipart(form_with(fields_of(&answer["upload"]), &data)),
                _ => sandbox
                    .http
                    .put(answer["upload_url"].as_str().unwrap())
                    .body(data),
            };
            match request.send().await {
                Ok(response) => panic!("{style} {size}: answered {}", response.status()),
                Err(err) => assert!(!err.is_status(), "{err}"),
            }
        }
        let all = sandbox.conversations().await;
        assert!(all.iter().all(|c| c["uploaded"] == false), "{all:?}");
        assert_eq!(sandbox.faults().await["s3_drop"], 2);
    }
}

#[tokio::test]
async fn latency_delays_every_request() {
    let sandbox = Sandbox::start(&["--latency-ms", "300", "--upload-style", "put"]);
    let started = Instant::now();
    let answer = sandbox.create().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    let (status, _) = sandbox
        .upload_put(answer["upload_url"].as_str().unwrap(), b"abc")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    async fn statuses(seed: &str) -> Vec<u16> {
        let sandbox = Sandbox::start(&["--seed", seed, "--fail-rate", "0.5"]);
        let mut seen = Vec::new();
        for _ in 0..24 {
            seen.push(sandbox.call1(&valid_body()).await.0.as_u16());
        }
        seen
    }
    let first = statuses("7").await;
    assert!(first.contains(&201) && first.contains(&503), "{first:?}");
    assert_eq!(first, statuses("7").await);
    assert_ne!(first, statuses("8").await);
}

#[tokio::test]
async fn a_rate_outside_0_to_1_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_voyc-import"))
        .args(["sandbox", "--listen", "127.0.0.1:0", "--fail-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fail-rate"), "{stderr}");
    assert!(stderr.contains("between 0 and 1"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn ctrl_c_stops_the_sandbox_cleanly_and_removes_its_temporary_folder() {
    let sandbox = Sandbox::start(&["--throttle-rate", "1"]);
    let (status, _, _) = sandbox.call1(&valid_body()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (code, stderr) = sandbox.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("throttle 1"), "{stderr}");
    let folder = stderr
        .split("uploads kept in ")
        .nth(1)
        .and_then(|rest| rest.split(" (removed on exit)").next())
        .unwrap_or_else(|| panic!("no folder in {stderr}"));
    assert!(
        !std::path::Path::new(folder).exists(),
        "{folder} is still there"
    );
}

#[cfg(unix)]
#[test]
fn the_sandbox_shows_its_default_token_but_never_one_given_with_token() {
    let (_, stderr) = Sandbox::start(&[]).interrupt();
    assert!(
        stderr.starts_with("sandbox: organisation any, token \"sandbox-token\", "),
        "{stderr}"
    );
    let (_, stderr) = Sandbox::start(&["--token", "a-real-looking-token-1f3a"]).interrupt();
    assert!(!stderr.contains("a-real-looking-token-1f3a"), "{stderr}");
    assert!(
        stderr.starts_with("sandbox: organisation any, the token given by --token, "),
        "{stderr}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn an_upload_the_sandbox_cannot_store_is_a_500_whose_cause_it_logs() {
    let data = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(&["--data-dir", data.path().to_str().unwrap()]);
    // The bucket's folder turns into a file: no upload can be stored under it.
    let bucket = data.path().join("voyc-sandbox");
    std::fs::remove_dir_all(&bucket).unwrap();
    std::fs::write(&bucket, "").unwrap();
    let answer = sandbox.create().await;
    let (status, body) = sandbox.upload_post(&answer, b"RIFF\0\0\0\0WAVE").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(xml_code(&body), "InternalError", "{body}");
    assert!(
        body.contains("the sandbox could not store the upload: "),
        "{body}"
    );
    let (_, stderr) = sandbox.interrupt();
    assert!(
        stderr.contains(
            "sandbox: answered 500 InternalError: the sandbox could not store the upload: "
        ),
        "{stderr}"
    );
}

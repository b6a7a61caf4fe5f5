//! `az://` recordings read from Azurite, Microsoft's Azure Storage emulator, installed from npm
//! and started by `scripts/test.sh` (`scripts/azurite.sh`), which exports its account's blob
//! endpoint (`VOYC_TEST_AZURITE_ENDPOINT`, path-style: `http://127.0.0.1:PORT/devstoreaccount1`)
//! and its well-known development account and key. Azurite checks the Shared Key signature of
//! every request, so a wrong key is refused as Azure refuses it. The upload target is the
//! SeaweedFS of `real_s3`. Plain `cargo test` lists these tests as ignored, with the reason.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::cloud_source::{self, Source, assert_no_secret};
use crate::upload::wav;
use crate::util::{Dir, show, voyc};

struct Azurite {
    /// The account's blob endpoint.
    endpoint: String,
    account: String,
    key: String,
    http: reqwest::Client,
}

fn azurite() -> Azurite {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the real-Azure tests need Azurite; run scripts/test.sh")
        })
    };
    Azurite {
        endpoint: var("VOYC_TEST_AZURITE_ENDPOINT"),
        account: var("VOYC_TEST_AZURITE_ACCOUNT"),
        key: var("VOYC_TEST_AZURITE_KEY"),
        http: cloud_source::http_client(),
    }
}

/// Azure variables a developer's machine may have that would point the tests elsewhere.
const AZURE_SETTINGS: [&str; 9] = [
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_ENDPOINT",
    "AZURE_STORAGE_USE_EMULATOR",
    "AZURITE_BLOB_STORAGE_URL",
    "AZURE_CLIENT_ID",
    "AZURE_STORAGE_TOKEN",
];

fn without_azure_settings(cmd: &mut assert_cmd::Command) {
    for name in AZURE_SETTINGS {
        cmd.env_remove(name);
    }
}

impl Azurite {
    /// A request to Azurite signed with Shared Key (the Blob service's own scheme, written out
    /// here so that the objects come from no code of voyc-import's).
    async fn signed(&self, method: reqwest::Method, path: &str, query: &str, body: &[u8]) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        let blob = !query.contains("restype=container");
        let length = match body.len() {
            0 => String::new(),
            n => n.to_string(),
        };
        let mut headers = vec![("x-ms-date", date.as_str()), ("x-ms-version", version)];
        if blob {
            headers.push(("x-ms-blob-type", "BlockBlob"));
        }
        headers.sort();
        let canonical_headers: String = headers
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        // The account's endpoint has the account in its path (path-style), and the resource
        // starts with the account again.
        let url_path = format!("/{}{path}", self.account);
        let mut resource = format!("/{}{url_path}", self.account);
        let mut pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .collect();
        pairs.sort();
        for (name, value) in &pairs {
            resource.push_str(&format!("\n{name}:{value}"));
        }
        let to_sign = format!(
            "{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n{canonical_headers}{resource}",
            method = method.as_str()
        );
        let key = BASE64.decode(&self.key).expect("a base64 key");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(to_sign.as_bytes());
        let signature = BASE64.encode(mac.finalize().into_bytes());
        let base = self
            .endpoint
            .trim_end_matches(&format!("/{}", self.account));
        let url = match query.is_empty() {
            true => format!("{base}{url_path}"),
            false => format!("{base}{url_path}?{query}"),
        };
        let mut request = self.http.request(method, url).header(
            "authorization",
            format!("SharedKey {}:{signature}", self.account),
        );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request
            .body(body.to_vec())
            .send()
            .await
            .expect("Azurite answers");
        let status = answer.status();
        // 409: the container was made by an earlier put.
        assert!(
            status.is_success() || (!blob && status == reqwest::StatusCode::CONFLICT),
            "{status}: {}",
            answer.text().await.unwrap_or_default()
        );
    }
}

impl Source for Azurite {
    fn scheme(&self) -> &'static str {
        "az"
    }

    async fn put(&self, container: &str, key: &str, contents: &[u8]) {
        self.signed(
            reqwest::Method::PUT,
            &format!("/{container}"),
            "restype=container",
            b"",
        )
        .await;
        self.signed(
            reqwest::Method::PUT,
            &format!("/{container}/{key}"),
            "",
            contents,
        )
        .await;
    }

    fn environment(&self) -> Vec<(&'static str, Option<String>)> {
        let mut environment: Vec<(&'static str, Option<String>)> =
            AZURE_SETTINGS.iter().map(|name| (*name, None)).collect();
        environment.push(("AZURE_STORAGE_ACCOUNT_NAME", Some(self.account.clone())));
        environment.push(("AZURE_STORAGE_ACCOUNT_KEY", Some(self.key.clone())));
        environment
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn secret(&self) -> Option<&str> {
        Some(&self.key)
    }
}

#[tokio::test]
#[ignore = "needs Azurite: run scripts/test.sh"]
async fn azure_blobs_validate_with_every_problem_on_its_line() {
    cloud_source::objects_validate_with_every_problem_on_its_line(&azurite()).await;
}

#[tokio::test]
#[ignore = "needs Azurite and SeaweedFS: run scripts/test.sh"]
async fn azure_blobs_upload_byte_exact_and_a_rerun_uploads_nothing() {
    cloud_source::objects_upload_byte_exact_and_a_rerun_uploads_nothing(&azurite()).await;
}

#[tokio::test]
#[ignore = "needs Azurite and SeaweedFS: run scripts/test.sh"]
async fn azure_blobs_resume_after_kill_9_without_a_second_upload() {
    cloud_source::objects_resume_after_kill_9_without_a_second_upload(&azurite()).await;
}

#[tokio::test]
#[ignore = "needs Azurite and SeaweedFS: run scripts/test.sh"]
async fn a_scanned_azure_prefix_becomes_a_manifest_that_uploads_as_it_is() {
    cloud_source::a_scanned_prefix_becomes_a_manifest_that_uploads_as_it_is(&azurite()).await;
}

#[tokio::test]
#[ignore = "needs Azurite: run scripts/test.sh"]
async fn a_wrong_key_is_one_sentence_without_it_and_the_emulator_variables_reach_azurite() {
    let az = azurite();
    let dir = Dir::new();
    az.put("voyc-az-keys", "a.wav", &wav(2, 5_000)).await;
    az.put("voyc-az-keys", "b.wav", &wav(3, 6_000)).await;
    dir.write(
        "calls.csv",
        "file,channel_id,call_date,call_time,agent\n\
         az://voyc-az-keys/a.wav,1,2024-03-01,09:00:00,Ann\n\
         az://voyc-az-keys/b.wav,1,2024-03-01,09:05:00,Ann\n",
    );
    // Another valid key (base64 of 64 bytes), not the account's.
    let wrong = BASE64.encode([7u8; 64]);
    let mut cmd = voyc(dir.path());
    without_azure_settings(&mut cmd);
    let out = cmd
        .args(["validate", "calls.csv", "--source-endpoint", &az.endpoint])
        .env("AZURE_STORAGE_ACCOUNT_NAME", &az.account)
        .env("AZURE_STORAGE_ACCOUNT_KEY", &wrong)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one sentence for the run: {stderr}"
    );
    assert!(
        stderr.starts_with(
            "error: calls.csv:2: the object store refused the credentials for az://voyc-az-keys: AuthorizationFailure: "
        ) && stderr.contains("check AZURE_STORAGE_ACCOUNT_NAME"),
        "{stderr}"
    );
    assert_no_secret(&az, &out);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(text).contains(&wrong),
            "{}",
            show(&out)
        );
    }

    // AZURE_STORAGE_USE_EMULATOR: Azurite's account and key, at AZURITE_BLOB_STORAGE_URL.
    let base = az.endpoint.trim_end_matches(&format!("/{}", az.account));
    let mut cmd = voyc(dir.path());
    without_azure_settings(&mut cmd);
    let out = cmd
        .args(["validate", "calls.csv"])
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env("AZURITE_BLOB_STORAGE_URL", base)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "2 rows checked: all valid, 0 warnings"
    );

    // No account at all: what to set, before any request.
    let mut cmd = voyc(dir.path());
    without_azure_settings(&mut cmd);
    let out = cmd
        .args(["validate", "calls.csv"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: calls.csv:2: cannot set up access to az://voyc-az-keys: ")
            && stderr.contains("set AZURE_STORAGE_ACCOUNT_NAME"),
        "{stderr}"
    );
}

//! `gs://` recordings read from a real GCS emulator that nobody here wrote: fake-gcs-server,
//! installed and started by `scripts/test.sh` (`scripts/fake-gcs.sh`), which exports where it
//! is (`VOYC_TEST_GCS_ENDPOINT`) and a service account file for it (`"disable_oauth": true`,
//! `"gcs_base_url"`: how object_store is pointed at an emulator). The upload target is the
//! SeaweedFS of `real_s3`. Plain `cargo test` lists these tests as ignored, with the reason.

use std::time::Duration;

use crate::cloud_source::{self, Source};
use crate::upload::wav;
use crate::util::{Dir, show, voyc};

struct FakeGcs {
    endpoint: String,
    service_account: String,
    http: reqwest::Client,
}

fn fake_gcs() -> FakeGcs {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the real-GCS tests need fake-gcs-server; run scripts/test.sh"
            )
        })
    };
    FakeGcs {
        endpoint: var("VOYC_TEST_GCS_ENDPOINT"),
        service_account: var("VOYC_TEST_GCS_SERVICE_ACCOUNT"),
        http: cloud_source::http_client(),
    }
}

impl Source for FakeGcs {
    fn scheme(&self) -> &'static str {
        "gs"
    }

    /// Through the JSON API (`storage/v1`), which voyc-import does not use.
    async fn put(&self, bucket: &str, key: &str, contents: &[u8]) {
        let made = self
            .http
            .post(format!("{}/storage/v1/b", self.endpoint))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "name": bucket }).to_string())
            .send()
            .await
            .expect("fake-gcs-server answers");
        // 409: made by an earlier put.
        assert!(
            made.status().is_success() || made.status() == reqwest::StatusCode::CONFLICT,
            "{}",
            made.status()
        );
        let url = reqwest::Url::parse_with_params(
            &format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint),
            [("uploadType", "media"), ("name", key)],
        )
        .unwrap();
        let put = self
            .http
            .post(url)
            .body(contents.to_vec())
            .send()
            .await
            .expect("fake-gcs-server answers");
        assert!(put.status().is_success(), "{}", put.status());
    }

    fn environment(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("GOOGLE_APPLICATION_CREDENTIALS", None),
            ("GOOGLE_SERVICE_ACCOUNT_KEY", None),
            ("GOOGLE_BASE_URL", None),
            ("GOOGLE_SERVICE_ACCOUNT", Some(self.service_account.clone())),
        ]
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn secret(&self) -> Option<&str> {
        None
    }
}

#[tokio::test]
#[ignore = "needs fake-gcs-server: run scripts/test.sh"]
async fn gcs_objects_validate_with_every_problem_on_its_line() {
    cloud_source::objects_validate_with_every_problem_on_its_line(&fake_gcs()).await;
}

#[tokio::test]
#[ignore = "needs fake-gcs-server and SeaweedFS: run scripts/test.sh"]
async fn gcs_objects_upload_byte_exact_and_a_rerun_uploads_nothing() {
    cloud_source::objects_upload_byte_exact_and_a_rerun_uploads_nothing(&fake_gcs()).await;
}

#[tokio::test]
#[ignore = "needs fake-gcs-server and SeaweedFS: run scripts/test.sh"]
async fn gcs_objects_resume_after_kill_9_without_a_second_upload() {
    cloud_source::objects_resume_after_kill_9_without_a_second_upload(&fake_gcs()).await;
}

#[tokio::test]
#[ignore = "needs fake-gcs-server and SeaweedFS: run scripts/test.sh"]
async fn a_scanned_gcs_prefix_becomes_a_manifest_that_uploads_as_it_is() {
    cloud_source::a_scanned_prefix_becomes_a_manifest_that_uploads_as_it_is(&fake_gcs()).await;
}

#[tokio::test]
#[ignore = "needs fake-gcs-server: run scripts/test.sh"]
async fn the_service_account_file_alone_reaches_the_emulator_and_a_missing_one_is_one_sentence() {
    let gcs = fake_gcs();
    let dir = Dir::new();
    gcs.put("voyc-gs-account", "a.wav", &wav(1, 5_000)).await;
    dir.write(
        "calls.csv",
        "file,channel_id,call_date,call_time,agent\n\
         gs://voyc-gs-account/a.wav,1,2024-03-01,09:00:00,Ann\n\
         gs://voyc-gs-account/b.wav,1,2024-03-01,09:00:00,Ann\n",
    );
    // No --source-endpoint: the file's gcs_base_url names the emulator.
    let mut cmd = voyc(dir.path());
    for (name, value) in gcs.environment() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd
        .args(["validate", "calls.csv"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "calls.csv:3: file \"gs://voyc-gs-account/b.wav\": no such object gs://voyc-gs-account/b.wav\n\
         2 rows checked: 1 problem in 1 row, 0 warnings\n",
        "{}",
        show(&out)
    );

    let missing = dir.join("no-such-key.json");
    let out = voyc(dir.path())
        .args(["validate", "calls.csv"])
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env("GOOGLE_SERVICE_ACCOUNT", &missing)
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
        stderr.starts_with("error: calls.csv:2: cannot set up access to gs://voyc-gs-account: ")
            && stderr.contains(&format!(
                " (GOOGLE_SERVICE_ACCOUNT={}); GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) must name a readable service account key file",
                missing.display()
            )),
        "{stderr}"
    );
}

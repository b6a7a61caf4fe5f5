//! One object_store client for a bucket (container) of each cloud, set up from that cloud's
//! usual environment: S3 from the AWS variables and shared files ([`super::profile`]), Google
//! Cloud Storage from `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT*` (else the
//! metadata server), Azure Blob Storage from `AZURE_STORAGE_ACCOUNT_NAME` with its key, a SAS,
//! a service principal or a managed identity (or the Azurite emulator's variables).
//! `--source-endpoint` is the server every one of them is read from when it is given: an
//! S3-compatible store, a GCS emulator (its XML API), or an Azure account's blob endpoint
//! (Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
//!
//! Before the first request of a store its credentials are fetched once, so that missing
//! credentials are one sentence for the run rather than one per row.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use super::error::{self, Problem};
use super::{Purpose, Scheme, SourceOptions, check_endpoint, profile};

/// Requests each store retries by itself (connection errors, 5xx, throttling) before it says
/// the request failed.
const STORE_RETRIES: usize = 3;

/// The store of `bucket` in `scheme`'s cloud, its credentials fetched.
pub async fn open(
    scheme: Scheme,
    bucket: &str,
    options: &SourceOptions,
    purpose: Purpose,
) -> Result<Arc<dyn ObjectStore>, Problem> {
    crate::upload::http::install_crypto_provider();
    let top = format!("{scheme}://{bucket}");
    match scheme {
        Scheme::S3 => {
            let store = s3(bucket, options, purpose)?;
            if !skips_signature("AWS_SKIP_SIGNATURE") {
                store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| Problem::credentials(scheme, &top, &e))?;
            }
            Ok(Arc::new(store))
        }
        Scheme::Gs => {
            let store = gcs(bucket, options, purpose)?;
            if !skips_signature("GOOGLE_SKIP_SIGNATURE") {
                store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| Problem::credentials(scheme, &top, &e))?;
            }
            Ok(Arc::new(store))
        }
        Scheme::Az => {
            let store = azure(bucket, options, purpose)?;
            if !skips_signature("AZURE_SKIP_SIGNATURE") {
                store
                    .credentials()
                    .get_credential()
                    .await
                    .map_err(|e| Problem::credentials(scheme, &top, &e))?;
            }
            Ok(Arc::new(store))
        }
    }
}

/// `VAR=true`: a public bucket, read without credentials.
fn skips_signature(var: &str) -> bool {
    std::env::var(var)
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The endpoint in force: `--source-endpoint`, else what the environment names (`var`),
/// checked as the flag is.
fn endpoint(
    options: &SourceOptions,
    var: &str,
    from_env: Option<String>,
) -> Result<Option<reqwest::Url>, Problem> {
    match (&options.endpoint, from_env) {
        (Some(url), _) => Ok(Some(url.clone())),
        (None, Some(given)) => check_endpoint(var, &given)
            .map(Some)
            .map_err(|e| Problem::config(format!("{e:#}"))),
        (None, None) => Ok(None),
    }
}

/// The HTTP settings every store shares; a plain-http endpoint (only ever a loopback one,
/// as [`check_endpoint`] makes sure) is allowed.
fn client(purpose: Purpose, endpoint: Option<&reqwest::Url>) -> ClientOptions {
    let client = ClientOptions::new()
        .with_user_agent(reqwest::header::HeaderValue::from_static(concat!(
            "voyc-import/",
            env!("CARGO_PKG_VERSION")
        )))
        .with_connect_timeout(Duration::from_secs(10))
        .with_allow_http(endpoint.is_some_and(|url| url.scheme() == "http"));
    match purpose {
        Purpose::Check => client.with_timeout(Duration::from_secs(60)),
        Purpose::Upload { idle } => client.with_timeout_disabled().with_read_timeout(idle),
    }
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: STORE_RETRIES,
        retry_timeout: Duration::from_secs(60),
        ..RetryConfig::default()
    }
}

/// object_store's refusal to set a store up, as a sentence with what to set.
fn setup_failed(scheme: Scheme, bucket: &str, err: &object_store::Error) -> Problem {
    let hint = match scheme {
        Scheme::S3 => String::new(),
        Scheme::Gs => {
            // The file's path is no secret, and says which of the variables was read.
            let named = ["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_APPLICATION_CREDENTIALS"]
                .iter()
                .find_map(|var| std::env::var(var).ok().map(|path| format!(" ({var}={path})")))
                .unwrap_or_default();
            format!(
                "{named}; GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) must name a readable service account key file"
            )
        }
        Scheme::Az => "; set AZURE_STORAGE_ACCOUNT_NAME (and its key, a SAS or a service principal), or AZURE_STORAGE_USE_EMULATOR=true for Azurite".into(),
    };
    Problem::config(format!(
        "cannot set up access to {scheme}://{bucket}: {}{hint}",
        error::plain(err)
    ))
}

fn s3(
    bucket: &str,
    options: &SourceOptions,
    purpose: Purpose,
) -> Result<object_store::aws::AmazonS3, Problem> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    // Keys in the environment come first, then the shared files' profile, then the roles.
    let needs_keys = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_none()
        && !skips_signature("AWS_SKIP_SIGNATURE");
    let found = profile::from_env(needs_keys).map_err(Problem::config)?;
    if let Some(keys) = found.keys.filter(|_| needs_keys) {
        builder = builder
            .with_access_key_id(keys.access_key_id)
            .with_secret_access_key(keys.secret_access_key);
        if let Some(token) = keys.session_token {
            builder = builder.with_token(token);
        }
    }
    let env_region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|var| std::env::var_os(var).is_some());
    if let Some(region) = found.region.filter(|_| !env_region) {
        builder = builder.with_region(region);
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    let from_env = builder
        .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
        .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
    let endpoint = endpoint(options, "AWS_ENDPOINT_URL", from_env)?;
    if let Some(url) = &endpoint {
        builder = builder
            .with_endpoint(url.as_str().trim_end_matches('/'))
            .with_virtual_hosted_style_request(false);
    }
    builder
        .with_client_options(client(purpose, endpoint.as_ref()))
        .with_retry(retry())
        .build()
        .map_err(|e| setup_failed(Scheme::S3, bucket, &e))
}

fn gcs(
    bucket: &str,
    options: &SourceOptions,
    purpose: Purpose,
) -> Result<object_store::gcp::GoogleCloudStorage, Problem> {
    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    // An emulator is named by `--source-endpoint`, by GOOGLE_BASE_URL, or by the
    // `gcs_base_url` of the service account file (with `"disable_oauth": true`).
    let (var, from_env) = match builder.get_config_value(&GoogleConfigKey::BaseUrl) {
        Some(url) => ("GOOGLE_BASE_URL", Some(url)),
        None => (
            "gcs_base_url (in the service account file)",
            builder
                .get_config_value(&GoogleConfigKey::ServiceAccount)
                .and_then(|path| base_url_in(&path)),
        ),
    };
    let endpoint = endpoint(options, var, from_env)?;
    if let Some(url) = &endpoint {
        builder = builder.with_base_url(url.as_str().trim_end_matches('/'));
    }
    builder
        .with_client_options(client(purpose, endpoint.as_ref()))
        .with_retry(retry())
        .build()
        .map_err(|e| setup_failed(Scheme::Gs, bucket, &e))
}

/// The `gcs_base_url` a service account file names, if it names one (an unreadable file is
/// object_store's to report).
fn base_url_in(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("gcs_base_url")?.as_str().map(str::to_string)
}

fn azure(
    container: &str,
    options: &SourceOptions,
    purpose: Purpose,
) -> Result<object_store::azure::MicrosoftAzure, Problem> {
    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
    let emulator = builder
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
    let (var, from_env) = match builder.get_config_value(&AzureConfigKey::Endpoint) {
        Some(url) => ("AZURE_STORAGE_ENDPOINT", Some(url)),
        None => ("AZURITE_BLOB_STORAGE_URL", None),
    };
    let endpoint = endpoint(options, var, from_env)?;
    match &endpoint {
        // The account's blob endpoint as given (Azurite's has the account in its path).
        Some(url) => {
            builder = builder
                .with_use_emulator(false)
                .with_endpoint(url.as_str().trim_end_matches('/').to_string());
        }
        // object_store reads the emulator's own URL (default http://127.0.0.1:10000) and
        // allows plain http to it: it must be a loopback one.
        None if emulator => {
            if let Ok(given) = std::env::var("AZURITE_BLOB_STORAGE_URL") {
                check_endpoint("AZURITE_BLOB_STORAGE_URL", &given)
                    .map_err(|e| Problem::config(format!("{e:#}")))?;
            }
        }
        None => {}
    }
    builder
        .with_client_options(client(purpose, endpoint.as_ref()))
        .with_retry(retry())
        .build()
        .map_err(|e| setup_failed(Scheme::Az, container, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_file_may_name_an_emulator() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("emulator.json");
        std::fs::write(
            &path,
            r#"{"gcs_base_url": "http://127.0.0.1:4443", "disable_oauth": true}"#,
        )
        .unwrap();
        let path = path.to_str().unwrap();
        assert_eq!(base_url_in(path).as_deref(), Some("http://127.0.0.1:4443"));
        std::fs::write(path, r#"{"type": "service_account"}"#).unwrap();
        assert_eq!(base_url_in(path), None);
        assert_eq!(base_url_in("/nonexistent/key.json"), None);
    }
}

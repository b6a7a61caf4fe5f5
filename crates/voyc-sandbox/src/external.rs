//! External-storage mode: call 1 hands out upload targets presigned for a real S3 server
//! (SeaweedFS in our tests, or AWS itself) instead of the sandbox's own stand-in, and reads
//! back what that server holds for the inspection endpoint (`inspect.rs`). Signing is AWS's `aws-sigv4`
//! crate, not ours: our `sigv4.rs` only checks what arrives at the stand-in, and a test here
//! checks the two against each other and against botocore.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;
use reqwest::Url;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::S3Storage;
use crate::sigv4::{ALGORITHM, amz_date, uri_encode};

/// The longest lifetime S3 accepts for a presigned URL: one week.
const MAX_URL_SECS: u64 = 604_800;
/// A presigned upload target for one key.
pub(crate) enum Target {
    /// boto3's `generate_presigned_post`: the bucket's URL and the form fields, in order.
    Post {
        url: String,
        fields: Vec<(String, String)>,
    },
    Put(String),
}

/// The running side of external-storage mode: the server's parsed address and an HTTP client.
pub(crate) struct External {
    storage: S3Storage,
    /// The endpoint without a trailing slash.
    endpoint: Url,
    http: reqwest::Client,
}

impl External {
    /// Checks the endpoint and bucket name and makes the HTTP client; contacts nothing.
    pub(crate) fn new(storage: S3Storage) -> anyhow::Result<External> {
        let mut endpoint = Url::parse(&storage.endpoint).with_context(|| {
            format!(
                "--s3-endpoint {:?} is not a URL such as http://127.0.0.1:8333",
                storage.endpoint
            )
        })?;
        anyhow::ensure!(
            matches!(endpoint.scheme(), "http" | "https")
                && endpoint.has_host()
                && endpoint.query().is_none()
                && endpoint.fragment().is_none(),
            "--s3-endpoint {:?} must be an http:// or https:// URL with a host and no query",
            storage.endpoint
        );
        let trimmed = endpoint.path().trim_end_matches('/').to_string();
        endpoint.set_path(&trimmed);
        anyhow::ensure!(
            is_bucket_name(&storage.bucket),
            "--s3-bucket {:?} is not a valid S3 bucket name: 3 to 63 lower-case letters, digits, \
             dots and hyphens, starting and ending with a letter or digit",
            storage.bucket
        );
        anyhow::ensure!(!storage.region.is_empty(), "--s3-region must not be empty");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if storage.direct {
            http = http.no_proxy();
        }
        let http = http
            .build()
            .context("cannot set up the HTTP client for the S3 server")?;
        Ok(External {
            storage,
            endpoint,
            http,
        })
    }

    /// `{endpoint}` without a trailing slash, as shown to the user.
    pub(crate) fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.storage.bucket
    }

    fn bucket_url(&self) -> Url {
        let mut url = self.endpoint.clone();
        let path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            uri_encode(&self.storage.bucket, false)
        );
        url.set_path(&path);
        url
    }

    fn object_url(&self, key: &str) -> Url {
        let mut url = self.bucket_url();
        let path = format!("{}/{}", url.path(), uri_encode(key, true));
        url.set_path(&path);
        url
    }

    /// `url` with SigV4 query authentication for `method`, valid for `ttl` from `now`.
    fn presign(&self, method: &str, url: Url, now: SystemTime, ttl: Duration) -> Url {
        let identity: Identity = self.storage.credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl.min(Duration::from_secs(MAX_URL_SECS)));
        // S3 signs the path as sent: no second encoding, no normalisation.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.storage.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .expect("every signing parameter is set")
            .into();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .expect("a URL that parsed is signable");
        let (instructions, _signature) = sign(request, &params)
            .expect("static credentials sign")
            .into_parts();
        let mut signed = url;
        {
            let mut query = signed.query_pairs_mut();
            for (name, value) in instructions.params() {
                query.append_pair(name, value);
            }
        }
        signed
    }

    /// The upload target for `key`, in the configured style, valid for `ttl_secs` from `now`.
    pub(crate) fn target(
        &self,
        post: bool,
        key: &str,
        now: DateTime<Utc>,
        ttl_secs: u64,
        max_bytes: u64,
        success_action_status: Option<u16>,
    ) -> Target {
        if post {
            Target::Post {
                url: self.bucket_url().to_string(),
                fields: self.presign_post(key, now, ttl_secs, max_bytes, success_action_status),
            }
        } else {
            let url = self.presign(
                "PUT",
                self.object_url(key),
                now.into(),
                Duration::from_secs(ttl_secs),
            );
            Target::Put(url.to_string())
        }
    }

    /// The form fields of a presigned POST, as boto3's `generate_presigned_post(Bucket, Key,
    /// Fields={"success_action_status": ...}, Conditions=[{"success_action_status": ...},
    /// ["content-length-range", 1, max]])` returns them, in its order.
    fn presign_post(
        &self,
        key: &str,
        now: DateTime<Utc>,
        ttl_secs: u64,
        max_bytes: u64,
        success_action_status: Option<u16>,
    ) -> Vec<(String, String)> {
        let credentials = &self.storage.credentials;
        let date = amz_date(now);
        let credential = format!(
            "{}/{}/{}/s3/aws4_request",
            credentials.access_key_id(),
            &date[..8],
            self.storage.region
        );
        let expiration = now + chrono::Duration::seconds(ttl_secs.min(i64::MAX as u64) as i64);
        let mut fields = Vec::with_capacity(8);
        let mut conditions = Vec::with_capacity(8);
        if let Some(status) = success_action_status {
            fields.push(("success_action_status".to_string(), status.to_string()));
            conditions.push(json!({"success_action_status": status.to_string()}));
        }
        conditions.extend([
            json!(["content-length-range", 1, max_bytes]),
            json!({"bucket": self.storage.bucket}),
            json!({"key": key}),
            json!({"x-amz-algorithm": ALGORITHM}),
            json!({"x-amz-credential": credential}),
            json!({"x-amz-date": date}),
        ]);
        fields.extend([
            ("key".to_string(), key.to_string()),
            ("x-amz-algorithm".to_string(), ALGORITHM.to_string()),
            ("x-amz-credential".to_string(), credential),
            ("x-amz-date".to_string(), date),
        ]);
        if let Some(token) = credentials.session_token() {
            conditions.push(json!({"x-amz-security-token": token}));
            fields.push(("x-amz-security-token".to_string(), token.to_string()));
        }
        let policy = json!({
            "expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "conditions": conditions,
        });
        let policy = BASE64.encode(policy.to_string());
        let signing_key = v4::generate_signing_key(
            credentials.secret_access_key(),
            now.into(),
            &self.storage.region,
            "s3",
        );
        let signature = v4::calculate_signature(signing_key, policy.as_bytes());
        fields.push(("policy".to_string(), policy));
        fields.push(("x-amz-signature".to_string(), signature));
        fields
    }

    /// Makes sure the bucket exists, creating it when the server says there is none.
    pub(crate) async fn ensure_bucket(&self) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let ttl = Duration::from_secs(60);
        let head = self
            .send(
                self.http
                    .head(self.presign("HEAD", self.bucket_url(), now, ttl)),
            )
            .await?;
        match head.status() {
            status if status.is_success() => return Ok(()),
            StatusCode::NOT_FOUND => {}
            status => anyhow::bail!(
                "the S3 server {} refused to show the bucket {:?}: {}",
                self.endpoint(),
                self.storage.bucket,
                s3_refusal(status, "")
            ),
        }
        let created = self
            .send(
                self.http
                    .put(self.presign("PUT", self.bucket_url(), now, ttl))
                    .header(reqwest::header::CONTENT_LENGTH, "0"),
            )
            .await?;
        let status = created.status();
        if status.is_success() {
            return Ok(());
        }
        let body = created.text().await.unwrap_or_default();
        // Another sandbox may have created it meanwhile: fine if we can see it now.
        let again = self
            .send(
                self.http
                    .head(self.presign("HEAD", self.bucket_url(), now, ttl)),
            )
            .await?;
        if again.status().is_success() {
            return Ok(());
        }
        anyhow::bail!(
            "the S3 server {} did not create the bucket {:?}: {}",
            self.endpoint(),
            self.storage.bucket,
            s3_refusal(status, &body)
        )
    }

    /// Sends a request to the server; the error names the server, never the signed URL.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        request.send().await.map_err(|err| {
            anyhow::anyhow!(
                "cannot reach the S3 server {}: {}",
                self.endpoint(),
                error_chain(&err.without_url())
            )
        })
    }

    /// What the server holds at `key`: size from HEAD, SHA-256 from a streamed GET (never
    /// whole in memory); `None` when there is no such object.
    pub(crate) async fn held(&self, key: &str) -> anyhow::Result<Option<(u64, String)>> {
        let now = SystemTime::now();
        let ttl = Duration::from_secs(300);
        let head = self
            .send(
                self.http
                    .head(self.presign("HEAD", self.object_url(key), now, ttl)),
            )
            .await?;
        match head.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => anyhow::bail!("HEAD of {key:?} was refused: {}", s3_refusal(status, "")),
        }
        let size = head
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("HEAD of {key:?} answered without a Content-Length"))?;
        let get = self
            .send(
                self.http
                    .get(self.presign("GET", self.object_url(key), now, ttl)),
            )
            .await?;
        let status = get.status();
        if status != StatusCode::OK {
            let body = get.text().await.unwrap_or_default();
            anyhow::bail!("GET of {key:?} was refused: {}", s3_refusal(status, &body));
        }
        let mut hasher = Sha256::new();
        let mut read = 0u64;
        let mut body = get.bytes_stream();
        while let Some(chunk) = body.try_next().await.map_err(|err| {
            anyhow::anyhow!(
                "GET of {key:?} broke off: {}",
                error_chain(&err.without_url())
            )
        })? {
            hasher.update(&chunk);
            read += chunk.len() as u64;
        }
        anyhow::ensure!(
            read == size,
            "{key:?} changed while it was read: HEAD said {size} bytes, GET gave {read}"
        );
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }
}

/// `403 AccessDenied: Access Denied`, from S3's XML error when there is one.
fn s3_refusal(status: StatusCode, body: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{} {code}: {message}", status.as_u16()),
        (Some(code), None) => format!("{} {code}", status.as_u16()),
        _ => status.to_string(),
    }
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// S3's rules for bucket names (the ones that matter for path-style URLs).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use axum::http::{HeaderMap, HeaderValue};
    use serde_json::Value;

    /// What the stand-in's form check needs from a field list: names in lower case.
    fn lowered(fields: &[(String, String)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect()
    }

    fn storage(endpoint: &str, bucket: &str) -> S3Storage {
        S3Storage {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            credentials: Credentials::new("SANDBOXKEY", "secret", None, None, "test"),
            direct: false,
        }
    }

    /// Bucket `b` at http://127.0.0.1:9/s3, as in the botocore vectors: too short a name for
    /// a real bucket, so `new`'s checks are skipped.
    fn external() -> External {
        let storage = storage("http://127.0.0.1:9/s3", "b");
        let _ = rustls::crypto::ring::default_provider().install_default();
        External {
            endpoint: Url::parse(&storage.endpoint).unwrap(),
            http: reqwest::Client::new(),
            storage,
        }
    }

    // The sandbox's own S3 stand-in, written separately from aws-sigv4, with the same keys.
    use crate::sigv4::tests::{at, creds as stand_in};

    fn query_pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect()
    }

    // Generated with botocore 1.43 (`generate_presigned_url("put_object", ...)`, endpoint
    // http://127.0.0.1:9/s3, path style, key SANDBOXKEY / secret): the same vector as sigv4.rs.
    const BOTOCORE_PUT_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=SANDBOXKEY%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261128T142435Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=2630ea6447072ab8d385aff1cfddbd382cd9e12bffc4a8b4f6a1460f8ef9f68b";

    #[test]
    fn a_presigned_put_url_is_the_one_botocore_makes() {
        let Target::Put(url) = external().target(
            false,
            "uploads/1",
            at("2026-11-28T14:24:35Z"),
            60,
            100,
            None,
        ) else {
            panic!("a PUT target")
        };
        assert_eq!(
            url,
            format!("http://127.0.0.1:9/s3/b/uploads/1?{BOTOCORE_PUT_QUERY}")
        );
    }

    #[test]
    fn a_presigned_put_url_passes_the_stand_ins_check_until_it_expires() {
        let now = at("2026-01-02T03:04:05Z");
        let Target::Put(url) = external().target(false, "uploads/ab/c-1", now, 30, 100, None)
        else {
            panic!("a PUT target")
        };
        let url = Url::parse(&url).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
        let check =
            |t| stand_in().check_presigned("PUT", url.path(), &query_pairs(&url), &headers, t);
        check(now).unwrap();
        assert_eq!(
            check(at("2026-01-02T03:04:36Z")).unwrap_err().message,
            "Request has expired"
        );
    }

    #[test]
    fn a_presigned_post_has_boto3s_fields_and_passes_the_stand_ins_check() {
        let now = at("2026-01-02T03:04:05Z");
        let Target::Post { url, fields } =
            external().target(true, "uploads/ab/c-1", now, 600, 1000, None)
        else {
            panic!("a POST target")
        };
        assert_eq!(url, "http://127.0.0.1:9/s3/b");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "policy",
                "x-amz-signature"
            ]
        );
        assert_eq!(fields[2].1, "SANDBOXKEY/20260102/us-east-1/s3/aws4_request");
        let grant = stand_in()
            .check_post_form("b", &lowered(&fields), at("2026-01-02T03:14:05Z"))
            .unwrap();
        assert_eq!(
            (grant.key.as_str(), grant.min_bytes, grant.max_bytes),
            ("uploads/ab/c-1", 1, 1000)
        );
        let late = stand_in()
            .check_post_form("b", &lowered(&fields), at("2026-01-02T03:14:06Z"))
            .unwrap_err();
        assert_eq!(late.message, "Invalid according to Policy: Policy expired.");
    }

    #[test]
    fn the_policy_names_expiry_bucket_key_size_range_and_signing_fields() {
        let fields = external().presign_post("k", at("2026-01-02T03:04:05Z"), 60, 9, Some(201));
        assert_eq!(fields[0], ("success_action_status".into(), "201".into()));
        let policy: Value = serde_json::from_slice(
            &BASE64
                .decode(&fields.iter().find(|(n, _)| n == "policy").unwrap().1)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            policy,
            json!({"expiration": "2026-01-02T03:05:05Z", "conditions": [
                {"success_action_status": "201"},
                ["content-length-range", 1, 9],
                {"bucket": "b"},
                {"key": "k"},
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": "SANDBOXKEY/20260102/us-east-1/s3/aws4_request"},
                {"x-amz-date": "20260102T030405Z"},
            ]})
        );
        let grant = stand_in()
            .check_post_form("b", &lowered(&fields), at("2026-01-02T03:04:05Z"))
            .unwrap();
        assert_eq!(grant.success_action_status, Some(201));
    }

    #[test]
    fn a_session_token_is_a_field_and_a_condition() {
        let mut with_token = external();
        with_token.storage.credentials =
            Credentials::new("K", "S", Some("TOKEN".into()), None, "test");
        let fields = with_token.presign_post("k", at("2026-01-02T03:04:05Z"), 60, 9, None);
        assert!(fields.contains(&("x-amz-security-token".into(), "TOKEN".into())));
        let policy = String::from_utf8(BASE64.decode(&fields[5].1).unwrap()).unwrap();
        assert!(
            policy.contains(r#"{"x-amz-security-token":"TOKEN"}"#),
            "{policy}"
        );
    }

    #[test]
    fn endpoint_and_bucket_are_checked_with_sentences() {
        let err = |endpoint: &str, bucket: &str| {
            External::new(storage(endpoint, bucket))
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            err("127.0.0.1:8333", "b12"),
            "--s3-endpoint \"127.0.0.1:8333\" is not a URL such as http://127.0.0.1:8333"
        );
        assert_eq!(
            err("http://h/?x=1", "b12"),
            "--s3-endpoint \"http://h/?x=1\" must be an http:// or https:// URL with a host and no query"
        );
        assert!(err("ftp://h", "b12").contains("must be an http://"));
        assert!(
            err("http://h", "My_Bucket")
                .starts_with("--s3-bucket \"My_Bucket\" is not a valid S3 bucket name")
        );
        let ok = External::new(storage("http://h:1/prefix/", "voyc-test")).unwrap();
        assert_eq!(ok.endpoint(), "http://h:1/prefix");
        assert_eq!(
            ok.object_url("uploads/a b").as_str(),
            "http://h:1/prefix/voyc-test/uploads/a%20b"
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let mut storage = storage("http://h", "b");
        storage.credentials = Credentials::new("AKID", "wJalr-very-secret", None, None, "test");
        let text = format!("{storage:?}");
        assert!(!text.contains("wJalr"), "{text}");
        assert!(text.contains("AKID"));
    }

    #[test]
    fn s3_refusals_carry_code_and_message() {
        assert_eq!(
            s3_refusal(
                StatusCode::FORBIDDEN,
                "<Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>"
            ),
            "403 AccessDenied: Access Denied."
        );
        assert_eq!(s3_refusal(StatusCode::FORBIDDEN, ""), "403 Forbidden");
    }
}

//! Everything the sandbox can be told, checked before it starts: the fault rates, the token,
//! the shapes and styles of call 1's answers, and the S3 server of external-storage mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aws_credential_types::Credentials;

use crate::faults;
use crate::gate::Outage;

/// How call 1 hands out the upload target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadStyle {
    /// A presigned POST: `url` and form `fields`, as boto3's `generate_presigned_post` returns.
    #[default]
    Post,
    /// A presigned PUT URL with its expiry and signature in the query.
    Put,
}

/// How call 1 words its errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Plain Django REST Framework: `{"detail": "..."}`, `{"call_date": ["..."]}`, 401.
    #[default]
    Drf,
    /// The drf-standardized-errors envelope Voyc's live API uses: `{"type": ..., "errors": [...]}`,
    /// and 403 `not_authenticated` for missing credentials.
    Standardized,
}

/// Where call 1's response puts the conversation id and the upload target, so that a client's
/// parser meets every shape PRODUCT.md says it must accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseShape {
    /// `{"conversation_id": "…", "upload": {"url", "fields"}}` or `{"conversation_id": "…", "upload_url": "…"}`.
    #[default]
    Flat,
    /// `{"conversation": {"id": "…"}, "presigned_post": {"url", "fields"}}` or `{"conversation": {"id": "…"}, "presigned_url": "…"}`.
    Nested,
    /// `{"id": 17, "url": "…", "fields": {…}}` or `{"id": 17, "url": "…"}`: numeric ids, target at the top level.
    Numeric,
}

/// The longest `upload_ttl`: far beyond any use, and short enough for date arithmetic.
const MAX_UPLOAD_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Everything the sandbox can be told; `Default` is a well-behaved server on a free port.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks any free port.
    pub listen: SocketAddr,
    /// The bearer token call 1 accepts.
    pub token: String,
    /// When set, call 1 accepts the token only this long after the sandbox starts, and then
    /// refuses it exactly as it refuses a wrong one: an expired token. `None`: it never expires.
    pub token_ttl: Option<Duration>,
    /// When set, only this organisation id exists; others get 404.
    pub org: Option<String>,
    pub upload_style: UploadStyle,
    pub error_style: ErrorStyle,
    pub response_shape: ResponseShape,
    /// Added before every API and S3 request is answered.
    pub latency: Duration,
    /// Probability that call 1 is answered 503 before it is processed.
    pub fail_rate: f64,
    /// Probability that call 1 is processed (the conversation exists) and then answered 500.
    pub ambiguous_rate: f64,
    /// Probability that call 1 is answered 429 with `Retry-After: 1`.
    pub throttle_rate: f64,
    /// When set, call-1 requests beyond this many in any one second are answered 429.
    pub rate_limit: Option<u32>,
    /// When set, every API and S3 request is answered 503 for a while after the Nth call 1.
    pub outage: Option<Outage>,
    /// Probability that an upload is answered 503 `SlowDown`.
    pub s3_fail_rate: f64,
    /// Probability that an upload's connection is closed after part of its body.
    pub s3_drop_rate: f64,
    /// Probability that call 1 hands out an upload target that has already expired (signed as
    /// if `upload_ttl` and another minute had passed), so that S3 refuses it as expired.
    pub expired_rate: f64,
    /// How long a presigned POST policy or PUT URL stays valid (whole seconds).
    pub upload_ttl: Duration,
    /// The largest upload accepted (S3's limit for one presigned upload is 5 GiB).
    pub max_upload_bytes: u64,
    /// When set (200, 201 or 204), presigned POSTs carry this `success_action_status` field.
    pub success_action_status: Option<u16>,
    /// Seed of the fault generator (and of ids and the signing secret); random when unset.
    pub seed: Option<u64>,
    /// Where uploads are stored, under `{bucket}/{key}`; a temporary folder removed on stop
    /// when unset.
    pub data_dir: Option<PathBuf>,
    /// When set, call 1 presigns uploads for this S3 server instead of the sandbox's own
    /// stand-in, and the inspection endpoint reports what that server holds.
    pub s3: Option<S3Storage>,
    /// Print on stderr why an upload could not be stored (its 500 `InternalError` says it to
    /// the client too): `voyc-import sandbox` does; the in-process sandbox of `upload
    /// --sandbox` does not, as its stderr is the run's log.
    pub log_errors: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "sandbox-token".into(),
            token_ttl: None,
            org: None,
            upload_style: UploadStyle::Post,
            error_style: ErrorStyle::Drf,
            response_shape: ResponseShape::Flat,
            latency: Duration::ZERO,
            fail_rate: 0.0,
            ambiguous_rate: 0.0,
            throttle_rate: 0.0,
            rate_limit: None,
            outage: None,
            s3_fail_rate: 0.0,
            s3_drop_rate: 0.0,
            expired_rate: 0.0,
            upload_ttl: Duration::from_secs(3600),
            max_upload_bytes: 5 << 30,
            success_action_status: None,
            seed: None,
            data_dir: None,
            s3: None,
            log_errors: false,
        }
    }
}

impl SandboxConfig {
    pub(crate) fn rates(&self) -> faults::Rates {
        faults::Rates {
            fail: self.fail_rate,
            ambiguous: self.ambiguous_rate,
            throttle: self.throttle_rate,
            s3_fail: self.s3_fail_rate,
            s3_drop: self.s3_drop_rate,
            expired: self.expired_rate,
        }
    }

    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for (name, rate) in self.rates().named() {
            anyhow::ensure!(
                (0.0..=1.0).contains(&rate),
                "the {name} must be a probability between 0 and 1, not {rate}"
            );
        }
        if let Some(status) = self.success_action_status {
            anyhow::ensure!(
                matches!(status, 200 | 201 | 204),
                "success_action_status must be 200, 201 or 204, not {status}"
            );
        }
        anyhow::ensure!(
            !self.token.is_empty(),
            "the sandbox token must not be empty"
        );
        anyhow::ensure!(
            self.upload_ttl <= MAX_UPLOAD_TTL,
            "the upload TTL must be at most {} seconds (a century), not {}",
            MAX_UPLOAD_TTL.as_secs(),
            self.upload_ttl.as_secs()
        );
        anyhow::ensure!(
            self.rate_limit != Some(0),
            "the rate limit must be at least 1 call 1 a second"
        );
        if let Some(outage) = self.outage {
            anyhow::ensure!(
                !outage.duration.is_zero() && outage.duration <= MAX_UPLOAD_TTL,
                "an outage must last between 1 second and a century, not {} s",
                outage.duration.as_secs()
            );
            anyhow::ensure!(
                !(outage.repeat && outage.after_calls == 0),
                "a repeated outage needs at least 1 call 1 between outages (--outage-after 1 or more)"
            );
        }
        if self.s3.is_some() {
            anyhow::ensure!(
                self.s3_fail_rate == 0.0 && self.s3_drop_rate == 0.0,
                "the S3 fail and drop rates act on the sandbox's own S3 stand-in; \
                 with --s3-endpoint uploads go to that server instead"
            );
        }
        Ok(())
    }
}

/// The environment variables the access key, secret and (optional) session token come from,
/// as every AWS tool reads them.
pub const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
pub const SESSION_TOKEN_VAR: &str = "AWS_SESSION_TOKEN";

/// An S3 server that call 1 presigns uploads for, addressed path-style
/// (`{endpoint}/{bucket}/{key}`).
#[derive(Clone, Debug)]
pub struct S3Storage {
    /// `http://127.0.0.1:8333`, or with a path prefix; no query.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Its `Debug` form hides the secret and the session token.
    pub credentials: Credentials,
    /// Reach the server directly, never through the proxies the environment names
    /// (`HTTPS_PROXY`, ...). The caller decides: the sandbox cannot tell which hosts its user
    /// reaches without a proxy (`voyc-import sandbox` sets it for a loopback endpoint).
    pub direct: bool,
}

impl S3Storage {
    /// Takes the key pair from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN` when set); a missing one is an error that names both. The server is
    /// reached through the environment's proxies until `direct` is set.
    pub fn from_env(endpoint: &str, bucket: &str, region: &str) -> anyhow::Result<S3Storage> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let (Some(access_key), Some(secret_key)) = (var(ACCESS_KEY_VAR), var(SECRET_KEY_VAR))
        else {
            anyhow::bail!(
                "--s3-endpoint needs the S3 server's access key and secret in the environment \
                 variables {ACCESS_KEY_VAR} and {SECRET_KEY_VAR}"
            );
        };
        Ok(S3Storage {
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            region: region.to_string(),
            credentials: Credentials::new(
                access_key,
                secret_key,
                var(SESSION_TOKEN_VAR),
                None,
                "environment",
            ),
            direct: false,
        })
    }
}

//! Recordings in object storage: a manifest's `file` may be `s3://BUCKET/KEY`,
//! `gs://BUCKET/OBJECT` or `az://CONTAINER/BLOB` (and `--base-dir s3://BUCKET/PREFIX/` makes
//! relative paths keys under that prefix). Validation asks each object's HEAD (it exists, its
//! size) and its first bytes (a ranged GET), and the upload streams its body; both through the
//! `object_store` crate, which authorizes every request with credentials from that cloud's
//! usual environment ([`store`]).
//!
//! `scan s3://BUCKET/PREFIX/` (or `gs://`, `az://`) lists the objects under a prefix ([`list`]).
//!
//! A secret is never printed: the stores are never shown with `Debug`, and errors become
//! sentences ([`error::sentence`]).

mod error;
mod list;
mod profile;
mod store;
mod url;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path as KeyPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _};

pub use error::{Kind, Problem};
pub use url::{ObjectUrl, Scheme, is_object_url};

/// How to reach the object stores: `--source-endpoint` and `--source-region`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// The server objects are read from: an S3-compatible server's URL, e.g.
    /// `http://127.0.0.1:8333`, a GCS emulator's, or an Azure account's blob endpoint; `None`:
    /// the cloud itself (or the endpoint its environment names, e.g. `AWS_ENDPOINT_URL`).
    pub endpoint: Option<reqwest::Url>,
    /// The region to sign `s3://` requests for; `None`: `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// the profile's, else `us-east-1`.
    pub region: Option<String>,
}

impl SourceOptions {
    /// The options as given on the command line, checked: an endpoint must be an `http(s)`
    /// URL, and plain `http` only to a loopback address (the requests are signed, not sent
    /// in clear, but the recordings and the key id or token would be).
    pub fn new(endpoint: Option<&str>, region: Option<&str>) -> anyhow::Result<SourceOptions> {
        let endpoint = endpoint
            .map(|given| check_endpoint("--source-endpoint", given))
            .transpose()?;
        let region = match region.map(str::trim) {
            Some("") => anyhow::bail!("--source-region: expected a region, e.g. eu-west-1"),
            region => region.map(str::to_string),
        };
        Ok(SourceOptions { endpoint, region })
    }
}

/// An endpoint URL, checked as [`SourceOptions::new`] says; `flag` names where it came from.
fn check_endpoint(flag: &str, given: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(given.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{flag} {given:?}: not a URL ({e}); expected e.g. https://minio.example.com:9000"
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if crate::upload::http::is_loopback(&url) => {}
        "http" => anyhow::bail!(
            "{flag} {given:?}: plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost): the recordings and the credentials' key id or token would cross the network in clear; use https"
        ),
        other => anyhow::bail!("{flag} {given:?}: expected an http or https URL, not {other}:"),
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "{flag}: expected a plain server URL, without credentials or a query (credentials come from the cloud's environment: AWS_*, GOOGLE_*, AZURE_*)"
        );
    }
    Ok(url)
}

/// What an object is as validation saw it: the upload asks for exactly this one (`If-Match`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteObject {
    pub url: ObjectUrl,
    /// The store's entity tag, when it gives one.
    pub etag: Option<String>,
}

/// What [`ObjectSources::inspect`] found: the object, its size and first bytes, or why it
/// cannot be read (a sentence without the URL; the caller says which row).
pub struct Looked {
    pub object: RemoteObject,
    pub size: u64,
    /// At most as many leading bytes as were asked for (fewer only for a short object).
    pub head: Bytes,
}

/// What the stores are for, which decides their timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// HEAD and a short ranged GET: each request is short.
    Check,
    /// A body streamed into an upload, which may take an hour: only idle time counts.
    Upload { idle: Duration },
}

/// One store per bucket, built on first use and kept (with its connections). Build one per
/// tokio runtime: connections belong to the runtime they were made on.
pub struct ObjectSources {
    options: SourceOptions,
    purpose: Purpose,
    stores: Mutex<HashMap<(Scheme, String), Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for ObjectSources {
    /// Bucket names only: a store's own `Debug` may show its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores = self.stores.lock().expect("stores");
        let mut buckets: Vec<String> = stores
            .keys()
            .map(|(scheme, bucket)| format!("{scheme}://{bucket}"))
            .collect();
        buckets.sort();
        f.debug_struct("ObjectSources")
            .field("options", &self.options)
            .field("buckets", &buckets)
            .finish()
    }
}

impl ObjectSources {
    pub fn new(options: SourceOptions, purpose: Purpose) -> ObjectSources {
        ObjectSources {
            options,
            purpose,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// The store of a bucket; the first time, its credentials are fetched once, so that
    /// missing credentials are one clear error rather than one per row.
    async fn store(&self, scheme: Scheme, bucket: &str) -> Result<Arc<dyn ObjectStore>, Problem> {
        let id = (scheme, bucket.to_string());
        if let Some(store) = self.stores.lock().expect("stores").get(&id) {
            return Ok(store.clone());
        }
        let store = store::open(scheme, bucket, &self.options, self.purpose).await?;
        let mut stores = self.stores.lock().expect("stores");
        Ok(stores.entry(id).or_insert(store).clone())
    }

    /// HEAD, then (when the size is one an upload takes) a GET of the first `head_len` bytes:
    /// what validation checks of every object. `Err` is a sentence for the row's `file`.
    pub async fn inspect(
        &self,
        url: &ObjectUrl,
        head_len: usize,
        size_ok: impl Fn(u64) -> Result<(), String>,
    ) -> Result<Looked, Problem> {
        let store = self.store(url.scheme, &url.bucket).await?;
        let key = url.key_path();
        let meta = match store.head(&key).await {
            Ok(meta) => meta,
            // A HEAD answer has no body to say why: a GET's does (a refused signature is a
            // problem of the credentials, not of this object).
            Err(
                e @ (object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }),
            ) => {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(0..1)),
                    ..GetOptions::default()
                };
                let err = store.get_opts(&key, options).await.err().unwrap_or(e);
                return Err(Problem::from_store(url, &err));
            }
            Err(e) => return Err(Problem::from_store(url, &e)),
        };
        let object = RemoteObject {
            url: url.clone(),
            etag: meta.e_tag.clone(),
        };
        size_ok(meta.size).map_err(Problem::row)?;
        let want = (head_len as u64).min(meta.size);
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..want)),
            if_match: object.etag.clone(),
            ..GetOptions::default()
        };
        let head = store
            .get_opts(&key, options)
            .await
            .map_err(|e| Problem::from_store(url, &e))?
            .bytes()
            .await
            .map_err(|e| Problem::from_store(url, &e))?;
        Ok(Looked {
            object,
            size: meta.size,
            head,
        })
    }

    /// The object's body as a stream of chunks, exactly the object validation saw
    /// (`If-Match` its ETag: a replaced object is an error, not other bytes).
    pub async fn open(
        &self,
        object: &RemoteObject,
    ) -> Result<BoxStream<'static, Result<Bytes, Problem>>, Problem> {
        let store = self.store(object.url.scheme, &object.url.bucket).await?;
        let options = GetOptions {
            if_match: object.etag.clone(),
            ..GetOptions::default()
        };
        let url = object.url.clone();
        let result = store
            .get_opts(&object.url.key_path(), options)
            .await
            .map_err(|e| Problem::from_store(&url, &e))?;
        Ok(result
            .into_stream()
            .map_err(move |e| Problem::from_store(&url, &e))
            .boxed())
    }
}

impl ObjectUrl {
    fn key_path(&self) -> KeyPath {
        // Checked when the URL was parsed (no empty, `.` or `..` segment, no control character).
        KeyPath::parse(&self.key).unwrap_or_else(|_| KeyPath::from(self.key.as_str()))
    }
}

/// Runs `inspect` for many objects at once, at most [`IN_FLIGHT`] requests at a time, and
/// returns the answers in the order asked.
pub async fn inspect_all<'a>(
    sources: &'a ObjectSources,
    urls: impl IntoIterator<Item = &'a ObjectUrl>,
    head_len: usize,
    size_ok: impl Fn(u64) -> Result<(), String> + Copy + 'a,
) -> Vec<Result<Looked, Problem>> {
    futures_util::stream::iter(urls)
        .map(|url| sources.inspect(url, head_len, size_ok))
        .buffered(IN_FLIGHT)
        .collect()
        .await
}

/// Objects checked at once during validation.
pub const IN_FLIGHT: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_allowed_only_to_loopback() {
        let endpoint = |url: &str| SourceOptions::new(Some(url), None).map(|o| o.endpoint);
        assert!(endpoint("http://127.0.0.1:8333").unwrap().is_some());
        assert!(endpoint("http://localhost:9000/").unwrap().is_some());
        assert!(endpoint("https://minio.example.com").unwrap().is_some());
        let err = endpoint("http://minio.example.com:9000")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--source-endpoint \"http://minio.example.com:9000\": plain http is allowed only to a loopback address"),
            "{err}"
        );
        let err = endpoint("ftp://x").unwrap_err().to_string();
        assert!(err.contains("expected an http or https URL"), "{err}");
        let err = endpoint("https://AK:SK@minio.example.com")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SK"),
            "a secret in the URL is not repeated: {err}"
        );
        let err = SourceOptions::new(None, Some(" ")).unwrap_err().to_string();
        assert_eq!(err, "--source-region: expected a region, e.g. eu-west-1");
    }

    #[test]
    fn the_sources_never_show_their_stores() {
        let sources = ObjectSources::new(SourceOptions::default(), Purpose::Check);
        let shown = format!("{sources:?}");
        assert!(shown.starts_with("ObjectSources"), "{shown}");
        assert!(!shown.contains("credential"), "{shown}");
    }
}

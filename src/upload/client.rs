//! The two HTTP calls for one row: call 1 to Voyc's API, then the upload to S3.
//!
//! One `reqwest` client (rustls with the `ring` provider, the platform's roots plus
//! `--ca-cert`, `HTTPS_PROXY` honoured, redirects never followed) serves every worker. The
//! token goes only on call 1, only to `--base-url`. Call 1 is bounded as a whole by
//! `--timeout` (its answer is small: a server trickling a byte a second must not hold a
//! worker), while an upload, which may take an hour, is bounded only by idle time: a watchdog
//! fails it when no byte has moved for `--timeout`. The file streams from disk with an exact
//! length and its SHA-256 is computed on the way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::Stream;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::response::{self, Call1Response, UploadTarget, without_query};
use super::retry::{Call, Failure, parse_retry_after, s3_code_is_transient};
use super::server_error::{api_message, cut_short, s3_error};
use crate::secret::Token;

/// Voyc's API when `--base-url` is not given.
pub const DEFAULT_BASE_URL: &str = "https://api.app.voyc.ai";

/// The most of call 1's answer we read: it is a few hundred bytes of JSON.
const MAX_API_ANSWER: usize = 1 << 20;
/// The most of an S3 error body we read.
const MAX_S3_ANSWER: usize = 64 << 10;
/// Size of the reads from disk while uploading.
const CHUNK: usize = 256 << 10;

/// What the client needs to know, already checked.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub base_url: Url,
    pub organisation: String,
    pub token: Token,
    /// Bounds connecting, any idle gap, and the whole of call 1.
    pub timeout: Duration,
    /// Extra trusted roots (PEM), for corporate TLS-inspecting proxies.
    pub ca_cert: Option<PathBuf>,
}

/// A finished upload: what went over the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the bytes sent.
    pub sha256: String,
}

/// What an upload's last byte waits for: the journal's commit of its target (`Err` says why
/// it failed). Everything else goes out meanwhile, so the commit overlaps the transfer, and
/// S3 cannot store the file before the journal knows where it went.
pub type Gate = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The client every worker shares.
#[derive(Clone, Debug)]
pub struct VoycClient {
    http: reqwest::Client,
    base_url: Url,
    endpoint: Url,
    token: Token,
    timeout: Duration,
}

/// Checks `--base-url`: http(s), no credentials, query or fragment, and plain `http://` only
/// to a loopback address (the token must not cross a network in clear).
pub fn check_base_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text.trim()).with_context(|| {
        format!("--base-url {text:?} is not a URL (expected e.g. {DEFAULT_BASE_URL})")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => bail!(
            "--base-url {text:?} uses plain http:// to a host that is not loopback: the token would cross the network in clear; use https://"
        ),
        other => bail!("--base-url {text:?} has scheme {other:?}; expected https://"),
    }
    if url.host().is_none() {
        bail!("--base-url {text:?} names no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "--base-url must not hold a user name or password; the token goes in VOYC_TOKEN or --token-file"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--base-url {text:?} must not have a query or fragment");
    }
    Ok(url)
}

/// Checks `--org`: the organisation id goes in the URL path, so it must be a plain token.
pub fn check_organisation(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if text.is_empty() {
        bail!("--org is empty; give the organisation id (or set VOYC_ORG_ID)");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!(
            "--org {text:?} is not an organisation id (expected letters, digits, '-', '_' or '.')"
        );
    }
    Ok(text.to_string())
}

/// localhost, 127.0.0.0/8 or ::1.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `{base}/api/v2/workspace/{organisation}/conversation/upload_data/`.
pub fn call1_endpoint(base_url: &Url, organisation: &str) -> Url {
    let mut url = base_url.clone();
    let path = format!(
        "{}/api/v2/workspace/{organisation}/conversation/upload_data/",
        base_url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url
}

/// Installs rustls' `ring` provider for the process; later calls do nothing.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client: rustls, platform roots plus `ca_cert`, no redirects, the environment's
/// proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) unless `direct`. A plain-http base URL
/// (only a loopback one is allowed) must be reached `direct`: through a proxy, call 1 and its
/// token would travel to the proxy in clear.
pub fn http_client(
    timeout: Duration,
    ca_cert: Option<&Path>,
    direct: bool,
) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("voyc-import/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(60));
    if direct {
        builder = builder.no_proxy();
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "--ca-cert {} does not hold PEM certificates",
                path.display()
            )
        })?;
        if certs.is_empty() {
            bail!(
                "--ca-cert {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
                path.display()
            );
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .context("cannot set up the HTTP client (TLS roots or proxy settings)")
}

impl VoycClient {
    pub fn new(config: ClientConfig) -> anyhow::Result<VoycClient> {
        let http = http_client(
            config.timeout,
            config.ca_cert.as_deref(),
            config.base_url.scheme() == "http",
        )?;
        Ok(VoycClient::with_http(http, config))
    }

    /// A client over an HTTP client already made by [`http_client`] with the same
    /// `timeout` and `ca_cert`.
    pub fn with_http(http: reqwest::Client, config: ClientConfig) -> VoycClient {
        VoycClient {
            endpoint: call1_endpoint(&config.base_url, &config.organisation),
            http,
            base_url: config.base_url,
            token: config.token,
            timeout: config.timeout,
        }
    }

    /// Where call 1 goes.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Call 1: the row's JSON body; the conversation id and upload target back.
    pub async fn call1(&self, body: Bytes) -> Result<Call1Response, Failure> {
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.token.authorization())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|err| transport_failure(Call::Api, err))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_limited(response, MAX_API_ANSWER)
                .await
                .map_err(|err| transport_failure(Call::Api, err))?;
            Ok::<_, Failure>((status, headers, body))
        };
        let (status, headers, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Failure::from_transport(
                    Call::Api,
                    true,
                    format!(
                        "no complete answer within {} (--timeout)",
                        human_duration(self.timeout)
                    ),
                ));
            }
        };
        if status.is_success() {
            if body.len() >= MAX_API_ANSWER {
                return Err(Failure {
                    status: Some(status.as_u16()),
                    ..Failure::permanent(
                        Call::Api,
                        format!("HTTP {}, but the answer is over 1 MiB", status.as_u16()),
                    )
                });
            }
            return response::parse(&body, &self.base_url).map_err(|shape| Failure {
                status: Some(status.as_u16()),
                conversation: response::conversation_id_in(&body),
                ..Failure::permanent(Call::Api, format!("HTTP {}, but {shape}", status.as_u16()))
            });
        }
        Err(api_failure(status, &headers, &body))
    }

    /// Call 2: streams `path` (`size` bytes, as checked) to the target. `sent` counts the
    /// bytes as they go (for progress) and is wound back if the attempt fails.
    pub async fn upload(
        &self,
        target: &UploadTarget,
        path: &Path,
        size: u64,
        sent: &Arc<AtomicU64>,
    ) -> Result<Uploaded, Failure> {
        self.upload_after(target, path, size, sent, None, None)
            .await
    }

    /// [`VoycClient::upload`] from a file already opened with [`open_for_upload`] (if
    /// `opened` is given), whose last byte is held back until `gate` resolves; if the gate
    /// fails, the upload is abandoned before that byte, so S3 stores nothing.
    pub async fn upload_after(
        &self,
        target: &UploadTarget,
        path: &Path,
        size: u64,
        sent: &Arc<AtomicU64>,
        opened: Option<Opened>,
        mut gate: Option<Gate>,
    ) -> Result<Uploaded, Failure> {
        let opened = match opened {
            Some(opened) => opened,
            None => open_for_upload(path, size).await?,
        };
        if size == 0
            && let Some(gate) = gate.take()
        {
            // No byte to hold back: wait before anything is sent.
            gate.await
                .map_err(|err| Failure::permanent(Call::Upload, gate_failed(&err)))?;
        }
        let started = Instant::now();
        let watch = Arc::new(Watch {
            started,
            last_ms: AtomicU64::new(0),
            state: Mutex::new((Sha256::new(), 0)),
            sent: sent.clone(),
        });
        let body = reqwest::Body::wrap_stream(FileStream {
            remaining: size - opened.first.len() as u64,
            file: opened.file,
            next: Some(opened.first).filter(|first| !first.is_empty()),
            buffer: Vec::new(),
            watch: watch.clone(),
            gate,
            held: None,
        });
        let request = match target {
            UploadTarget::Post { url, fields } => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(name.clone(), value.clone());
                }
                let file_name = path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "audio".to_string());
                let part = reqwest::multipart::Part::stream_with_length(body, size)
                    .file_name(file_name)
                    .mime_str("application/octet-stream")
                    .expect("a valid MIME type");
                self.http
                    .post(url.clone())
                    .multipart(form.part("file", part))
            }
            UploadTarget::Put { url } => self
                .http
                .put(url.clone())
                .header(CONTENT_LENGTH, size)
                .body(body),
        };
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|err| transport_failure(Call::Upload, err))?;
            watch.touch();
            let status = response.status();
            let headers = response.headers().clone();
            let body = if s3_stored(status) {
                // Read it (S3 may send `<PostResponse>`) so that the connection can carry the
                // next upload; the status already says the upload is stored.
                let _ = read_limited(response, MAX_S3_ANSWER).await;
                Vec::new()
            } else {
                read_limited(response, MAX_S3_ANSWER)
                    .await
                    .map_err(|err| transport_failure(Call::Upload, err))?
            };
            Ok::<_, Failure>((status, headers, body))
        };
        let outcome = tokio::select! {
            result = exchange => result,
            idle = watch.stalled(self.timeout) => Err(Failure::transient(
                Call::Upload,
                format!("no progress for {} (--timeout)", human_duration(idle)),
            )),
        };
        let (status, headers, body) = match outcome {
            Ok(answer) => answer,
            Err(failure) => {
                sent.fetch_sub(watch.bytes(), Ordering::Relaxed);
                return Err(failure);
            }
        };
        if s3_stored(status) {
            let (hasher, bytes) = std::mem::take(&mut *watch.state.lock().expect("hash state"));
            if bytes != size {
                sent.fetch_sub(bytes, Ordering::Relaxed);
                return Err(Failure::transient(
                    Call::Upload,
                    format!(
                        "HTTP {} after only {bytes} of {size} bytes were sent",
                        status.as_u16()
                    ),
                ));
            }
            return Ok(Uploaded {
                bytes,
                sha256: hex::encode(hasher.finalize()),
            });
        }
        sent.fetch_sub(watch.bytes(), Ordering::Relaxed);
        Err(s3_failure(status, &headers, &body, target))
    }
}

/// A file opened for an upload, its size checked again and its first chunk read.
pub struct Opened {
    file: tokio::fs::File,
    first: Bytes,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("first", &self.first.len())
            .finish()
    }
}

/// Opens `path`, checks that it still has the `size` bytes validation saw, and reads its
/// first chunk, in one trip to the blocking pool: the pool does it while call 1 is in flight,
/// so that no disk access is left between call 1's answer and the upload's first byte.
pub async fn open_for_upload(path: &Path, size: u64) -> Result<Opened, Failure> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || open_blocking(&path, size))
        .await
        .unwrap_or_else(|err| {
            Err(Failure::permanent(
                Call::Upload,
                format!("cannot open the file: {err}"),
            ))
        })
}

fn open_blocking(path: &Path, size: u64) -> Result<Opened, Failure> {
    use std::io::Read as _;
    let failed = |what: &str, err: std::io::Error| {
        Failure::permanent(
            Call::Upload,
            format!("cannot {what} {}: {err}", path.display()),
        )
    };
    let mut file = std::fs::File::open(path).map_err(|err| failed("open", err))?;
    let now = file.metadata().map_err(|err| failed("read", err))?.len();
    let changed = |now: u64| {
        Failure::permanent(
            Call::Upload,
            format!(
                "{} changed since it was checked ({size} bytes then, {now} now)",
                path.display()
            ),
        )
    };
    if now != size {
        return Err(changed(now));
    }
    let mut first = vec![0; usize::try_from(size).unwrap_or(usize::MAX).min(CHUNK)];
    let mut filled = 0;
    while filled < first.len() {
        match file.read(&mut first[filled..]) {
            Ok(0) => return Err(changed(filled as u64)),
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(failed("read", err)),
        }
    }
    Ok(Opened {
        file: tokio::fs::File::from_std(file),
        first: Bytes::from(first),
    })
}

/// What the upload watchdog and the body stream share: when a byte last moved, the hash and
/// count of what went out, and the progress counter.
struct Watch {
    started: Instant,
    last_ms: AtomicU64,
    state: Mutex<(Sha256, u64)>,
    sent: Arc<AtomicU64>,
}

impl Watch {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn bytes(&self) -> u64 {
        self.state.lock().expect("hash state").1
    }

    fn record(&self, chunk: &[u8]) {
        let mut state = self.state.lock().expect("hash state");
        state.0.update(chunk);
        state.1 += chunk.len() as u64;
        drop(state);
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Resolves with the idle time once nothing has moved for `limit`.
    async fn stalled(&self, limit: Duration) -> Duration {
        let tick = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::time::sleep(tick).await;
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let idle = self.started.elapsed().saturating_sub(last);
            if idle >= limit {
                return idle;
            }
        }
    }
}

fn gate_failed(err: &str) -> String {
    format!("not completed, as the journal could not record its target: {err}")
}

/// The file as a stream of chunks: exactly its size in bytes, hashed and counted as they go.
/// With a gate, the last byte is held back until the gate resolves.
struct FileStream {
    file: tokio::fs::File,
    /// Bytes not read from the file yet.
    remaining: u64,
    /// A chunk read ahead (the first), to go before any other read.
    next: Option<Bytes>,
    /// Allocated at the first read from `file`.
    buffer: Vec<u8>,
    watch: Arc<Watch>,
    gate: Option<Gate>,
    /// The last byte, while it waits for the gate.
    held: Option<Bytes>,
}

impl FileStream {
    /// Sends a chunk on, holding back the file's last byte if there is a gate.
    fn emit(
        &mut self,
        mut chunk: Bytes,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::io::Result<Bytes>>> {
        self.watch.record(&chunk);
        if self.remaining == 0 && self.next.is_none() && self.gate.is_some() {
            self.held = Some(chunk.split_off(chunk.len() - 1));
            if chunk.is_empty() {
                return self.poll_held(cx);
            }
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    fn poll_held(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<std::io::Result<Bytes>>> {
        let Some(gate) = self.gate.as_mut() else {
            return Poll::Ready(self.held.take().map(Ok));
        };
        match gate.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.gate = None;
                match result {
                    Ok(()) => Poll::Ready(self.held.take().map(Ok)),
                    Err(err) => {
                        self.held = None;
                        Poll::Ready(Some(Err(std::io::Error::other(gate_failed(&err)))))
                    }
                }
            }
        }
    }
}

impl Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.held.is_some() {
            return this.poll_held(cx);
        }
        if let Some(chunk) = this.next.take() {
            return this.emit(chunk, cx);
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if this.buffer.is_empty() {
            this.buffer = vec![0; CHUNK];
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buffer.len());
        let mut buf = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file shrank while it was read ({} bytes missing)",
                        this.remaining
                    ),
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(buf.filled());
                this.remaining -= chunk.len() as u64;
                this.emit(chunk, cx)
            }
        }
    }
}

/// Reads at most `limit` bytes of a body (the rest is dropped with the connection).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// A failure without an answer: connect errors happened before anything was sent.
fn transport_failure(call: Call, err: reqwest::Error) -> Failure {
    let sent = !err.is_connect();
    if let Some(problem) = certificate_problem(&err) {
        let host = err.url().map(host_and_port).unwrap_or_default();
        return Failure {
            untrusted_certificate: true,
            ..Failure::permanent(
                call,
                format!(
                    "the TLS certificate of {host} is not trusted ({problem}); if a corporate proxy inspects TLS, pass its root certificate with --ca-cert PEM"
                ),
            )
        };
    }
    let message = if err.is_connect() {
        let host = err
            .url()
            .map(|url| format!(" to {}", host_and_port(url)))
            .unwrap_or_default();
        format!("cannot connect{host}: {}", root_cause(&err))
    } else if err.is_timeout() {
        "timed out".to_string()
    } else {
        format!("connection failed: {}", root_cause(&err))
    };
    Failure {
        unreachable: err.is_connect() && !err.is_timeout(),
        ..Failure::from_transport(call, sent, message)
    }
}

/// rustls' verdict on the server's certificate, if that is why the connection failed. It
/// travels inside an `io::Error`, whose `source()` skips it, hence `get_ref`.
fn certificate_problem(err: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(rustls::Error::InvalidCertificate(problem)) =
            current.downcast_ref::<rustls::Error>()
        {
            return Some(format!("{problem:?}"));
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

fn host_and_port(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => url.scheme().to_string(),
    }
}

/// The innermost cause of an error, which is the one that says what happened
/// (`Connection refused (os error 111)`, `connection reset by peer`, ...). Never the URL.
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    if text.is_empty() || std::error::Error::source(err).is_none() {
        // Only reqwest's own sentence, which may hold the URL with its signature.
        return strip_url(err);
    }
    text
}

fn strip_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(url.as_str(), &without_query(url)),
        None => text,
    }
}

/// A non-success answer from Voyc's API.
fn api_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
    if status.is_redirection() {
        return Failure {
            status: Some(status.as_u16()),
            ..Failure::permanent(Call::Api, redirect_message(status, headers, "--base-url"))
        };
    }
    let said = api_message(body);
    let message = match &said {
        Some(said) => format!("HTTP {}: {}", status.as_u16(), said.text),
        None => status_line(status),
    };
    let mut failure = Failure::from_status(Call::Api, status.as_u16(), message);
    failure.retry_after = retry_after(headers);
    if status == StatusCode::FORBIDDEN && said.as_ref().is_some_and(|s| s.is_about_credentials()) {
        failure.about_credentials = true;
    }
    failure
}

/// A non-success answer from S3 (or whatever sits at the upload URL).
/// S3 answers 200 (PUT, or POST by default), 201 (POST with `success_action_status` 201) or
/// 204 (POST) when it has stored a file; any other answer, 2xx included, does not say so.
fn s3_stored(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 201 | 204)
}

fn s3_failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    target: &UploadTarget,
) -> Failure {
    if status.is_success() {
        return Failure {
            status: Some(status.as_u16()),
            ..Failure::permanent(
                Call::Upload,
                format!(
                    "HTTP {}: S3 answers 200, 201 or 204 when it has stored a file, so this answer does not say the file was stored (is the upload URL an S3 endpoint?)",
                    status.as_u16()
                ),
            )
        };
    }
    if status.is_redirection() {
        return Failure {
            status: Some(status.as_u16()),
            ..Failure::permanent(
                Call::Upload,
                redirect_message(status, headers, &format!("the {}", target.style())),
            )
        };
    }
    let xml = s3_error(body);
    let message = match (&xml, api_message(body)) {
        (Some(xml), _) => format!("HTTP {}: {}", status.as_u16(), xml.render()),
        (None, Some(said)) => format!("HTTP {}: {}", status.as_u16(), said.text),
        (None, None) => status_line(status),
    };
    let mut failure = Failure::from_status(Call::Upload, status.as_u16(), message);
    failure.retry_after = retry_after(headers);
    if let Some(xml) = xml {
        if s3_code_is_transient(&xml.code) {
            failure.class = super::retry::Class::Transient;
        }
        failure.expired_target = xml.is_expired_target();
    }
    failure
}

fn redirect_message(status: StatusCode, headers: &HeaderMap, what: &str) -> String {
    let location = headers
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(|location| match Url::parse(location) {
            Ok(url) => without_query(&url),
            Err(_) => cut_short(location.split('?').next().unwrap_or_default()),
        });
    match location {
        Some(location) => format!(
            "HTTP {}: redirected to {location}, which is not followed (the token goes only to --base-url); check {what}",
            status.as_u16()
        ),
        None => format!(
            "HTTP {}: a redirect, which is not followed; check {what}",
            status.as_u16()
        ),
    }
}

fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()))
}

/// `30s`, `1.5s`, `250ms`, `2m`.
pub fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Reads `--timeout`: `30`, `30s`, `500ms`, `2m` (a bare number is seconds).
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (expected e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s or m)"
            ));
        }
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("{text:?} must be more than 0 and at most a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::super::test_server::{Reply, closed_port_url, serve};
    use super::*;
    use crate::upload::retry::Class;

    const TOKEN: &str = "test-token-123";

    fn client(base: &Url, timeout: Duration) -> VoycClient {
        VoycClient::new(ClientConfig {
            base_url: base.clone(),
            organisation: "118".into(),
            token: Token::parse(TOKEN).unwrap(),
            timeout,
            ca_cert: None,
        })
        .unwrap()
    }

    fn post_answer(base: &Url) -> String {
        format!(
            r#"{{"conversation_id": "c-9", "upload": {{"url": "{base}s3/bucket", "fields": {{"key": "k/9", "policy": "cG9saWN5", "x-amz-signature": "sig"}}}}}}"#
        )
    }

    /// A file of `size` bytes with varied content, and its SHA-256.
    fn audio_file(dir: &tempfile::TempDir, size: usize) -> (PathBuf, String) {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.path().join("call.wav");
        std::fs::write(&path, &bytes).unwrap();
        (path, hex::encode(Sha256::digest(&bytes)))
    }

    /// What most upload tests start from: a server answering with `script`, an audio file of
    /// `size` bytes, and a PUT target on the server (`/s3/b/k`).
    struct PutCase {
        server: super::super::test_server::Server,
        _dir: tempfile::TempDir,
        path: PathBuf,
        sha256: String,
        target: UploadTarget,
    }

    async fn put_case(
        script: impl Fn(&super::super::test_server::Head) -> Reply + Send + Sync + 'static,
        size: usize,
    ) -> PutCase {
        let server = serve(script).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, size);
        let target = UploadTarget::Put {
            url: server.url.join("s3/b/k").unwrap(),
        };
        PutCase {
            server,
            _dir: dir,
            path,
            sha256,
            target,
        }
    }

    #[tokio::test]
    async fn call_1_posts_the_body_with_the_token_and_reads_the_target() {
        let server = serve(|head| {
            let base = format!("http://{}/", head.header("host").unwrap());
            Reply::json(201, &post_answer(&Url::parse(&base).unwrap()))
        })
        .await;
        let response = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(br#"{"channel_id":"42"}"#))
            .await
            .unwrap();
        assert_eq!(response.conversation_id.0, "c-9");
        let UploadTarget::Post { url, fields } = &response.target else {
            panic!("expected a POST target");
        };
        assert_eq!(url.path(), "/s3/bucket");
        assert_eq!(fields[0], ("key".to_string(), "k/9".to_string()));

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.head.method, "POST");
        assert_eq!(
            request.head.target,
            "/api/v2/workspace/118/conversation/upload_data/"
        );
        assert_eq!(
            request.head.header("authorization"),
            Some("Bearer test-token-123")
        );
        assert_eq!(
            request.head.header("content-type"),
            Some("application/json")
        );
        assert_eq!(request.body, br#"{"channel_id":"42"}"#);
    }

    #[tokio::test]
    async fn a_drf_400_is_permanent_with_the_servers_message() {
        let server =
            serve(|_| Reply::json(400, r#"{"call_date": ["Date has wrong format."]}"#)).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(
            failure.describe(),
            "call 1: HTTP 400: call_date: Date has wrong format."
        );
        assert!(!failure.about_credentials);
    }

    #[tokio::test]
    async fn a_403_not_authenticated_is_a_credentials_problem() {
        let server = serve(|_| {
            Reply::json(
                403,
                r#"{"type":"client_error","errors":[{"code":"not_authenticated","detail":"Authentication credentials were not provided.","attr":null}]}"#,
            )
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.status, Some(403));
        assert!(failure.about_credentials);
        assert_eq!(
            failure.message,
            "HTTP 403: Authentication credentials were not provided."
        );
    }

    #[tokio::test]
    async fn a_429_is_transient_and_carries_retry_after() {
        let server = serve(|_| {
            Reply::json(429, r#"{"detail": "Slow down."}"#).with_header("Retry-After", "3")
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient());
        assert!(!failure.ambiguous);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(failure.message, "HTTP 429: Slow down.");
    }

    #[tokio::test]
    async fn a_502_html_page_is_transient_ambiguous_and_rendered_by_its_title() {
        let server = serve(|_| Reply::Respond {
            status: 502,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                .to_vec(),
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous);
        assert_eq!(failure.message, "HTTP 502: 502 Bad Gateway");
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_names_where_it_pointed() {
        let server = serve(|head| {
            if head.target.starts_with("/elsewhere") {
                Reply::json(201, r#"{"id": 1, "upload_url": "http://127.0.0.1/x"}"#)
            } else {
                let host = head.header("host").unwrap().to_string();
                Reply::json(301, "")
                    .with_header("Location", &format!("http://{host}/elsewhere/?sig=SECRET"))
            }
        })
        .await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(
            failure
                .message
                .starts_with("HTTP 301: redirected to http://127.0.0.1:")
                && failure
                    .message
                    .contains("/elsewhere/, which is not followed"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("SECRET"));
        assert_eq!(
            server.requests().len(),
            1,
            "the redirect must not be followed"
        );
    }

    #[tokio::test]
    async fn a_server_trickling_its_answer_cannot_hold_call_1_past_the_timeout() {
        let server = serve(|_| Reply::Trickle {
            body: br#"{"id": 1, "upload_url": "http://127.0.0.1/x"}"#.to_vec(),
            every: Duration::from_millis(100),
        })
        .await;
        let failure = client(&server.url, Duration::from_millis(500))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous, "{failure:?}");
        assert_eq!(
            failure.message,
            "no complete answer within 500ms (--timeout)"
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out_as_ambiguous() {
        let server = serve(|_| Reply::Silent).await;
        let failure = client(&server.url, Duration::from_millis(300))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous);
    }

    #[tokio::test]
    async fn a_reset_after_sending_call_1_is_transient_and_ambiguous() {
        let server = serve(|_| Reply::Reset).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && failure.ambiguous, "{failure:?}");
        assert!(
            failure.message.starts_with("connection failed: "),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_but_not_ambiguous() {
        let url = closed_port_url().await;
        let failure = client(&url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && !failure.ambiguous, "{failure:?}");
        assert!(
            failure.message.starts_with("cannot connect to 127.0.0.1:"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn an_unknown_answer_shape_fails_permanently_naming_the_keys() {
        let server =
            serve(|_| Reply::json(201, r#"{"conversation_id": "c", "s3": "SECRET"}"#)).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .call1(Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(failure.status, Some(201));
        assert_eq!(
            failure.message,
            "HTTP 201, but the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url); keys: conversation_id, s3"
        );
    }

    #[tokio::test]
    async fn a_presigned_post_sends_the_fields_in_order_then_the_file_with_an_exact_length() {
        let server = serve(|_| Reply::json(204, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 300_000);
        let target = UploadTarget::Post {
            url: server.url.join("s3/bucket").unwrap(),
            fields: vec![
                ("key".into(), "k/1".into()),
                ("x-amz-algorithm".into(), "AWS4-HMAC-SHA256".into()),
                ("policy".into(), "cG9saWN5".into()),
                ("x-amz-signature".into(), "sig".into()),
            ],
        };
        let sent = Arc::new(AtomicU64::new(0));
        let uploaded = client(&server.url, Duration::from_secs(5))
            .upload(&target, &path, 300_000, &sent)
            .await
            .unwrap();
        assert_eq!(uploaded.bytes, 300_000);
        assert_eq!(uploaded.sha256, sha256);
        assert_eq!(sent.load(Ordering::Relaxed), 300_000);

        let request = &server.requests()[0];
        assert_eq!(request.head.method, "POST");
        assert_eq!(request.head.target, "/s3/bucket");
        assert_eq!(request.head.header("authorization"), None, "no token to S3");
        assert_eq!(request.head.header("transfer-encoding"), None);
        let length: usize = request
            .head
            .header("content-length")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, request.body.len());

        let boundary =
            multer::parse_boundary(request.head.header("content-type").unwrap()).unwrap();
        let body = request.body.clone();
        let stream =
            futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(body)) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut names = Vec::new();
        let mut file_bytes = Vec::new();
        while let Some(field) = multipart.next_field().await.unwrap() {
            let name = field.name().unwrap().to_string();
            let data = field.bytes().await.unwrap();
            if name == "file" {
                file_bytes = data.to_vec();
            }
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "policy",
                "x-amz-signature",
                "file"
            ]
        );
        assert_eq!(hex::encode(Sha256::digest(&file_bytes)), sha256);
    }

    #[tokio::test]
    async fn a_presigned_put_sends_the_bytes_with_an_exact_content_length_and_no_token() {
        let server = serve(|_| Reply::json(200, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 1_000_003);
        let target = UploadTarget::Put {
            url: server.url.join("s3/bucket/k?X-Amz-Signature=abc").unwrap(),
        };
        let uploaded = client(&server.url, Duration::from_secs(5))
            .upload(&target, &path, 1_000_003, &Arc::new(AtomicU64::new(0)))
            .await
            .unwrap();
        assert_eq!(uploaded.sha256, sha256);
        let request = &server.requests()[0];
        assert_eq!(request.head.method, "PUT");
        assert_eq!(request.head.target, "/s3/bucket/k?X-Amz-Signature=abc");
        assert_eq!(request.head.header("content-length"), Some("1000003"));
        assert_eq!(request.head.header("transfer-encoding"), None);
        assert_eq!(request.head.header("authorization"), None);
        assert_eq!(hex::encode(Sha256::digest(&request.body)), sha256);
    }

    #[tokio::test]
    async fn only_200_201_and_204_from_s3_say_the_file_is_stored() {
        for (status, stored) in [
            (200, true),
            (201, true),
            (204, true),
            (202, false),
            (299, false),
        ] {
            let PutCase {
                server,
                path,
                target,
                ..
            } = &put_case(move |_| Reply::json(status, ""), 1000).await;
            let result = client(&server.url, Duration::from_secs(5))
                .upload(target, path, 1000, &Arc::new(AtomicU64::new(0)))
                .await;
            match result {
                Ok(uploaded) => assert!(stored, "{status}: {uploaded:?}"),
                Err(failure) => {
                    assert!(!stored, "{status}: {}", failure.message);
                    assert_eq!(failure.class, Class::Permanent);
                    assert_eq!(failure.status, Some(status));
                    assert_eq!(
                        failure.message,
                        format!(
                            "HTTP {status}: S3 answers 200, 201 or 204 when it has stored a file, so this answer does not say the file was stored (is the upload URL an S3 endpoint?)"
                        )
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn an_expired_policy_is_recognised_and_not_retried_as_is() {
        let case = put_case(|_| Reply::Respond {
            status: 403,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: b"<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>".to_vec(),
        }, 1000)
        .await;
        let PutCase {
            server,
            path,
            target,
            ..
        } = &case;
        let sent = Arc::new(AtomicU64::new(0));
        let failure = client(&server.url, Duration::from_secs(5))
            .upload(target, path, 1000, &sent)
            .await
            .unwrap_err();
        assert!(failure.expired_target);
        assert_eq!(failure.class, Class::Permanent);
        assert_eq!(
            failure.describe(),
            "upload: HTTP 403: AccessDenied: Invalid according to Policy: Policy expired."
        );
        assert_eq!(sent.load(Ordering::Relaxed), 0, "progress wound back");
    }

    #[tokio::test]
    async fn s3_slow_down_is_transient_with_its_retry_after() {
        let case = put_case(|_| {
            Reply::Respond {
                status: 503,
                headers: vec![],
                body: b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_vec(),
            }
            .with_header("Retry-After", "1")
        }, 10)
        .await;
        let failure = client(&case.server.url, Duration::from_secs(5))
            .upload(&case.target, &case.path, 10, &Arc::new(AtomicU64::new(0)))
            .await
            .unwrap_err();
        assert!(failure.is_transient() && !failure.ambiguous);
        assert_eq!(failure.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            failure.message,
            "HTTP 503: SlowDown: Please reduce your request rate."
        );
    }

    #[tokio::test]
    async fn an_upload_nobody_reads_fails_after_the_idle_timeout() {
        let size = 16 << 20;
        let case = put_case(|_| Reply::StallBody, size).await;
        let sent = Arc::new(AtomicU64::new(0));
        let failure = client(&case.server.url, Duration::from_millis(400))
            .upload(&case.target, &case.path, size as u64, &sent)
            .await
            .unwrap_err();
        assert!(failure.is_transient(), "{failure:?}");
        assert!(
            failure.message.starts_with("no progress for "),
            "{}",
            failure.message
        );
        assert_eq!(sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_slow_but_steady_upload_outlasts_the_timeout() {
        // 1 MiB every 100 ms: each gap is far below --timeout (the kernel's send buffer,
        // up to 4 MiB, drains in under half a second at the end), the whole is above it.
        let size = 40 << 20;
        let case = put_case(
            |_| Reply::SlowRead {
                chunk: 1 << 20,
                every: Duration::from_millis(100),
                status: 204,
            },
            size,
        )
        .await;
        let timeout = Duration::from_secs(2);
        let started = Instant::now();
        let uploaded = client(&case.server.url, timeout)
            .upload(
                &case.target,
                &case.path,
                size as u64,
                &Arc::new(AtomicU64::new(0)),
            )
            .await
            .unwrap();
        assert_eq!(uploaded.sha256, case.sha256);
        // The point of the test: the whole took longer than --timeout, and that is fine.
        assert!(started.elapsed() > timeout, "the test server read too fast");
    }

    /// A gate the test opens (or fails) by sending on the returned channel.
    fn gate() -> (tokio::sync::oneshot::Sender<Result<(), String>>, Gate) {
        let (open, opened) = tokio::sync::oneshot::channel();
        let gate = Box::pin(async move { opened.await.unwrap_or_else(|_| Err("dropped".into())) });
        (open, gate)
    }

    async fn until_sent(sent: &AtomicU64, bytes: u64) {
        for _ in 0..1000 {
            if sent.load(Ordering::Relaxed) >= bytes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "only {} of {bytes} bytes went out",
            sent.load(Ordering::Relaxed)
        );
    }

    #[tokio::test]
    async fn a_gated_upload_sends_all_but_its_last_byte_and_completes_once_the_gate_opens() {
        let server = serve(|_| Reply::json(200, "")).await;
        let dir = tempfile::tempdir().unwrap();
        let (path, sha256) = audio_file(&dir, 300_001);
        let target = UploadTarget::Put {
            url: server.url.join("s3/b/k").unwrap(),
        };
        let (open, gate) = gate();
        let sent = Arc::new(AtomicU64::new(0));
        let upload = tokio::spawn({
            let (client, sent) = (client(&server.url, Duration::from_secs(5)), sent.clone());
            async move {
                client
                    .upload_after(&target, &path, 300_001, &sent, None, Some(gate))
                    .await
            }
        });
        until_sent(&sent, 300_001).await;
        assert!(
            server.requests().is_empty(),
            "S3 cannot have the whole file yet"
        );
        open.send(Ok(())).unwrap();
        let uploaded = upload.await.unwrap().unwrap();
        assert_eq!(uploaded.sha256, sha256);
        assert_eq!(
            hex::encode(Sha256::digest(&server.requests()[0].body)),
            sha256
        );
    }

    #[tokio::test]
    async fn a_gated_upload_whose_gate_fails_never_completes() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 1000).await;
        let opened = open_for_upload(path, 1000).await.unwrap();
        let (open, gate) = gate();
        open.send(Err("disk full".into())).unwrap();
        let failure = client(&server.url, Duration::from_secs(5))
            .upload_after(
                target,
                path,
                1000,
                &Arc::new(AtomicU64::new(0)),
                Some(opened),
                Some(gate),
            )
            .await
            .unwrap_err();
        assert!(
            failure
                .message
                .contains("not completed, as the journal could not record its target: disk full"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn a_file_that_changed_size_since_validation_is_not_sent() {
        let PutCase {
            server,
            path,
            target,
            ..
        } = &put_case(|_| Reply::json(200, ""), 100).await;
        let failure = client(&server.url, Duration::from_secs(5))
            .upload(target, path, 99, &Arc::new(AtomicU64::new(0)))
            .await
            .unwrap_err();
        assert_eq!(failure.class, Class::Permanent);
        assert!(
            failure
                .message
                .ends_with("changed since it was checked (99 bytes then, 100 now)"),
            "{}",
            failure.message
        );
        assert!(server.requests().is_empty());
    }

    #[test]
    fn plain_http_is_refused_unless_the_host_is_loopback() {
        assert!(check_base_url("https://api.app.voyc.ai").is_ok());
        assert!(check_base_url("http://127.0.0.1:8787").is_ok());
        assert!(check_base_url("http://localhost:8787/").is_ok());
        assert!(check_base_url("http://[::1]:8787/").is_ok());
        let err = check_base_url("http://api.app.voyc.ai")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plain http:// to a host that is not loopback"),
            "{err}"
        );
        let err = check_base_url("http://127.0.0.1.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not loopback"), "{err}");
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://user:pw@api.app.voyc.ai").is_err());
        assert!(check_base_url("https://api.app.voyc.ai/?a=b").is_err());
        assert!(check_base_url("api.app.voyc.ai").is_err());
    }

    #[test]
    fn the_call_1_endpoint_keeps_a_base_path() {
        let url = call1_endpoint(&Url::parse("https://x.test/prefix/").unwrap(), "118");
        assert_eq!(
            url.as_str(),
            "https://x.test/prefix/api/v2/workspace/118/conversation/upload_data/"
        );
        let url = call1_endpoint(&Url::parse("https://x.test").unwrap(), "7");
        assert_eq!(
            url.as_str(),
            "https://x.test/api/v2/workspace/7/conversation/upload_data/"
        );
    }

    #[test]
    fn an_organisation_must_be_a_plain_id() {
        assert_eq!(check_organisation(" 118 ").unwrap(), "118");
        assert!(check_organisation("").is_err());
        assert!(check_organisation("1/../2").is_err());
    }

    #[test]
    fn timeouts_are_read_with_units() {
        assert_eq!(parse_timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_timeout("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_timeout("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("3h").is_err());
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn a_ca_cert_that_holds_no_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = format!(
            "{:#}",
            http_client(Duration::from_secs(1), Some(&path), false).unwrap_err()
        );
        assert!(err.contains("--ca-cert"), "{err}");
        let err = format!(
            "{:#}",
            http_client(
                Duration::from_secs(1),
                Some(&dir.path().join("missing.pem")),
                false
            )
            .unwrap_err()
        );
        assert!(err.starts_with("cannot read --ca-cert"), "{err}");
    }
}

//! voyc-sandbox: a local stand-in for Voyc's upload API and for S3, with fault injection.
//!
//! There is no public Voyc test server, so users rehearse a migration against this one, our
//! tests and benchmarks run against it, and `voyc-import upload --sandbox` runs a whole import
//! against it in-process. It is a crate of its own so that everything only a server needs
//! (axum, hyper, multer, aws-sigv4, ...) stays out of the client's dependencies, and so that
//! it cannot reach into the client's code: it checks call 1 with its own rules, written as
//! Voyc's Django REST Framework serializer would apply them, so that a client rule that
//! disagrees with Voyc shows up in the tests instead of being shared by both sides.
//!
//! One server on one port: call 1 under `/api/v2/...`, the S3 side under `/s3/...`, the
//! inspection endpoints under `/_sandbox/...`. It runs its own accept loop rather than
//! `axum::serve` so that a handler can make its connection drop in the middle of a body, the
//! way a flaky network does; a clean HTTP error would not test the same thing.

// The modules, from the top down: each uses only modules of the groups below its own.
//
// The handlers: call 1, the S3 stand-in's uploads, the inspection endpoints.
mod api;
mod inspect;
mod s3;

// The state the handlers share, and the gateway in front of them (rate limit, outage).
mod gate;
mod shared;

// External-storage mode: presigning for a real S3 server and reading back what it holds.
mod external;

// Everything the sandbox can be told.
mod config;

// Call 1's rules, the latency and fault generators, S3's signatures, the conversations.
mod delay;
mod faults;
pub mod serializer;
mod sigv4;
mod store;

// S3's error answers (the signature checks refuse with them too).
mod s3_error;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::http::Request;
use axum::routing::{get, post, put};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service as _;

pub use config::{ErrorStyle, ResponseShape, S3Storage, SandboxConfig, UploadStyle};
pub use faults::FaultCounts;
pub use gate::{GateCounts, Outage};
pub use shared::Stats;
pub use store::Conversation;

use crate::shared::{ConnectionHandle, Shared};

/// A running sandbox. Stop it with [`Sandbox::stop`]; dropping it also stops it, abruptly.
pub struct Sandbox {
    base_url: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    /// The temporary data folder, removed once the server has stopped.
    _temp_dir: Option<tempfile::TempDir>,
}

/// Binds the listening socket and starts serving on the current tokio runtime.
pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
    config.check()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let external = match &config.s3 {
        Some(storage) => {
            let external = external::External::new(storage.clone())?;
            external.ensure_bucket().await?;
            Some(external)
        }
        None => None,
    };
    let (temp_dir, data_dir) = match &config.data_dir {
        // Uploads go to the S3 server: nothing is stored here.
        _ if external.is_some() => (None, PathBuf::new()),
        Some(dir) => (None, dir.clone()),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("voyc-sandbox-")
                .tempdir()
                .context("cannot create a temporary folder for the sandbox's uploads")?;
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    };
    let bucket = "voyc-sandbox".to_string();
    if external.is_none() {
        std::fs::create_dir_all(data_dir.join(&bucket)).with_context(|| {
            format!(
                "cannot create the upload folder {}",
                data_dir.join(&bucket).display()
            )
        })?;
    }
    let seed = config.seed.unwrap_or_else(|| fastrand::u64(..));
    let mut secrets = fastrand::Rng::with_seed(seed ^ 0x5ec2_e7ba_5e5a_17ed);
    let secret_key: String = std::iter::repeat_with(|| secrets.alphanumeric())
        .take(40)
        .collect();
    let shared = Arc::new(Shared {
        faults: faults::Faults::new(config.rates(), seed),
        gate: gate::Gate::new(
            config.rate_limit,
            config.outage,
            Box::new(gate::RealClock::new()),
        ),
        ids: std::sync::Mutex::new(fastrand::Rng::with_seed(seed.rotate_left(17) ^ 0x1d5)),
        credentials: sigv4::Credentials {
            access_key: "SANDBOXACCESSKEY".into(),
            secret_key,
        },
        bucket,
        data_dir,
        store: store::Store::default(),
        external,
        sequence: AtomicU64::new(0),
        authority: address.to_string(),
        api_requests: AtomicU64::new(0),
        s3_requests: AtomicU64::new(0),
        delays: (!config.latency.is_zero()).then(delay::Delays::new),
        started: Instant::now(),
        config,
    });
    let (shutdown, stopping) = watch::channel(false);
    let server = tokio::spawn(serve(listener, router(shared.clone()), stopping));
    Ok(Sandbox {
        base_url: format!("http://{address}"),
        shared,
        shutdown,
        server: Some(server),
        _temp_dir: temp_dir,
    })
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, with no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// In external-storage mode, the S3 server and bucket uploads go to.
    pub fn s3_bucket(&self) -> Option<(&str, &str)> {
        let external = self.shared.external.as_ref()?;
        Some((external.endpoint(), external.bucket()))
    }

    /// Where uploads are stored, under `{bucket}/{key}`; empty in external-storage mode, where
    /// nothing is stored locally.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The bearer token call 1 accepts.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Every conversation, in creation order, with the uploads the sandbox itself received (in
    /// external-storage mode it receives none: `GET /_sandbox/conversations` asks the server).
    pub fn conversations(&self) -> Vec<Conversation> {
        self.shared.store.snapshot()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops accepting, lets requests in flight finish (for at most two seconds), and removes
    /// the temporary data folder if there is one.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new().route(
        "/api/v2/workspace/{organisation_id}/conversation/upload_data/",
        post(api::upload_data),
    );
    // In external-storage mode the stand-in has nothing to store into.
    if shared.external.is_none() {
        router = router
            .route("/s3/{bucket}", post(s3::post_object))
            .route("/s3/{bucket}/{*key}", put(s3::put_object));
    }
    router
        .route("/_sandbox/conversations", get(inspect::conversations))
        .route("/_sandbox/stats", get(inspect::stats))
        .fallback(api::not_found)
        .with_state(shared)
}

/// The accept loop: one task per connection, until told to stop.
async fn serve(listener: TcpListener, router: Router, stopping: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut stop = stopping.clone();
    loop {
        tokio::select! {
            _ = until_stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, router.clone(), stopping.clone()));
                }
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a moment rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), drained).await;
    connections.shutdown().await;
}

/// Returns once the sandbox is told to stop (or its handle is gone).
async fn until_stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Serves one connection until it ends, a handler drops it, or the sandbox stops.
async fn serve_connection(stream: TcpStream, router: Router, mut stopping: watch::Receiver<bool>) {
    let handle = ConnectionHandle::default();
    let cut = handle.0.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(handle.clone());
        router.clone().call(request)
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // Dropping `connection` closes the socket, whatever was in flight.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = cut.notified() => return,
        _ = until_stopped(&mut stopping) => {}
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        _ = cut.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// The in-process use `upload --sandbox` makes of it, on a single-threaded runtime.
    #[tokio::test]
    async fn a_started_sandbox_serves_shows_its_conversations_and_stops_cleanly() {
        let sandbox = start(SandboxConfig {
            upload_style: UploadStyle::Put,
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        assert!(sandbox.base_url().starts_with("http://127.0.0.1:"));
        let http = client();
        let answer: serde_json::Value = serde_json::from_str(
            &http
                .post(format!(
                    "{}/api/v2/workspace/o/conversation/upload_data/",
                    sandbox.base_url()
                ))
                .bearer_auth(sandbox.token())
                .header("content-type", "application/json")
                .body(r#"{"channel_id":1,"call_date":"2024-01-02","call_time":"10:00:00","agent":"A"}"#)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        let url = answer["upload_url"].as_str().unwrap();
        let status = http.put(url).body("abc").send().await.unwrap().status();
        assert_eq!(status, reqwest::StatusCode::OK);
        let all = sandbox.conversations();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].bytes, all[0].uploads), (Some(3), 1));
        assert_eq!(sandbox.stats().uploads, Some(1));

        let (address, folder) = (
            sandbox.base_url().trim_start_matches("http://").to_string(),
            sandbox.data_dir().to_path_buf(),
        );
        assert!(folder.is_dir());
        sandbox.stop().await;
        assert!(!folder.exists(), "the temporary folder is removed");
        assert!(tokio::net::TcpStream::connect(&address).await.is_err());
    }

    #[tokio::test]
    async fn a_token_past_its_lifetime_is_answered_exactly_like_a_wrong_one_and_counted() {
        for style in [ErrorStyle::Drf, ErrorStyle::Standardized] {
            let sandbox = start(SandboxConfig {
                token_ttl: Some(Duration::ZERO),
                error_style: style,
                ..SandboxConfig::default()
            })
            .await
            .unwrap();
            let http = client();
            let call1 = |token: &'static str| {
                http.post(format!(
                    "{}/api/v2/workspace/o/conversation/upload_data/",
                    sandbox.base_url()
                ))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(r#"{"channel_id":1,"call_date":"2024-01-02","call_time":"10:00:00","agent":"A"}"#)
                .send()
            };
            let answer = |response: reqwest::Response| async move {
                let status = response.status();
                let challenge = response.headers().get("www-authenticate").cloned();
                (status, challenge, response.text().await.unwrap())
            };
            let expired = answer(call1("sandbox-token").await.unwrap()).await;
            let wrong = answer(call1("another-token").await.unwrap()).await;
            assert_eq!(expired, wrong, "{style:?}");
            assert!(expired.0.is_client_error(), "{style:?}: {expired:?}");
            assert!(sandbox.conversations().is_empty());
            assert_eq!(sandbox.stats().faults.token_expired, 1, "{style:?}");
            sandbox.stop().await;
        }
    }

    #[tokio::test]
    async fn without_a_lifetime_the_token_never_expires() {
        let sandbox = start(SandboxConfig::default()).await.unwrap();
        assert_eq!(sandbox.shared.config.token_ttl, None);
        assert!(!sandbox.shared.token_expired());
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn a_rate_that_is_not_a_probability_is_refused_with_a_sentence() {
        let err = start(SandboxConfig {
            s3_drop_rate: 1.5,
            ..SandboxConfig::default()
        })
        .await
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "the S3 drop rate must be a probability between 0 and 1, not 1.5"
        );
    }
}

//! The state every handler shares: the configuration, the signing keys, the store of
//! conversations, the fault generator and the counters; and the handle that lets a handler
//! drop its own connection. Below the handlers (`api`, `s3`, `inspect`), above everything
//! they share.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::http::{HeaderMap, header};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::SandboxConfig;
use crate::delay::Delays;
use crate::external::External;
use crate::faults::{FaultCounts, Faults};
use crate::gate::{Gate, GateCounts};
use crate::sigv4::Credentials;
use crate::store::Store;

/// Counts of what the sandbox did, as `GET /_sandbox/stats` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub conversations: usize,
    /// Successful uploads (a file uploaded twice counts twice); `None` (`null`) with
    /// `--s3-endpoint`, where uploads go straight to the S3 server and cannot be counted.
    pub uploads: Option<u64>,
    pub api_requests: u64,
    pub s3_requests: u64,
    pub faults: FaultCounts,
    /// What `--rate-limit` and the outage switches did (their keys sit beside these).
    #[serde(flatten)]
    pub gate: GateCounts,
}

/// The state every handler shares.
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) bucket: String,
    pub(crate) credentials: Credentials,
    pub(crate) data_dir: PathBuf,
    pub(crate) store: Store,
    /// The S3 server uploads go to in external-storage mode.
    pub(crate) external: Option<External>,
    pub(crate) faults: Faults,
    pub(crate) gate: Gate,
    pub(crate) ids: std::sync::Mutex<fastrand::Rng>,
    /// The last numeric conversation id handed out.
    pub(crate) sequence: AtomicU64,
    /// `127.0.0.1:PORT`: where upload targets point when a request names no `Host`.
    pub(crate) authority: String,
    pub(crate) api_requests: AtomicU64,
    pub(crate) s3_requests: AtomicU64,
    /// Only with `--latency-ms`.
    pub(crate) delays: Option<Delays>,
    /// When the sandbox started: `token_ttl` counts from here.
    pub(crate) started: Instant,
}

impl Shared {
    /// The configured latency, added to every API and S3 request.
    pub(crate) async fn delay(&self) {
        if let Some(delays) = &self.delays {
            delays.sleep(self.config.latency).await;
        }
    }

    /// True once `token_ttl` has run out since the sandbox started.
    pub(crate) fn token_expired(&self) -> bool {
        self.config
            .token_ttl
            .is_some_and(|ttl| self.started.elapsed() >= ttl)
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            conversations: self.store.len(),
            uploads: self.external.is_none().then(|| self.store.uploads()),
            api_requests: self.api_requests.load(Ordering::Relaxed),
            s3_requests: self.s3_requests.load(Ordering::Relaxed),
            faults: self.faults.counts(),
            gate: self.gate.counts(),
        }
    }

    /// The host the client reached us by (targets must point back there), else our own address.
    pub(crate) fn request_host<'h>(&'h self, headers: &'h HeaderMap) -> &'h str {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|host| !host.is_empty())
            .unwrap_or(&self.authority)
    }
}

/// Lets a handler close its own connection at once, without an answer.
#[derive(Clone, Default)]
pub(crate) struct ConnectionHandle(pub(crate) Arc<Notify>);

impl ConnectionHandle {
    pub(crate) fn drop_connection(&self) {
        self.0.notify_one();
    }
}

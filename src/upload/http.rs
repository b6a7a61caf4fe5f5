//! The one HTTP client every call shares: rustls with the `ring` provider, the platform's
//! roots plus `--ca-cert`, the environment's proxies (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`)
//! unless the base URL is plain http to loopback, and redirects never followed (the token must
//! go nowhere but `--base-url`). Also: reading at most so much of an answer.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;

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
        // HTTP/1.1 as before object_store (which reads s3://, gs:// and az:// recordings) brought reqwest's
        // HTTP/2 into the build: one connection per row in flight, not one multiplexed.
        .http1_only()
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

/// Reads at most `limit` bytes of a body (the rest is dropped with the connection).
pub(super) async fn read_limited(
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

#[cfg(test)]
mod tests {
    use super::*;

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

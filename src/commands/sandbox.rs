//! `voyc-import sandbox`: run the stand-in server of the voyc-sandbox crate from the command
//! line: print its base URL, serve until Ctrl-C or SIGTERM, stop cleanly and say what it did.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use voyc_sandbox::{S3Storage, SandboxConfig};

use crate::Status;
use crate::cli::SandboxArgs;
use crate::upload::client::is_loopback;

/// The sandbox's settings from its flags; fails only when `--s3-endpoint` is given without
/// credentials in the environment.
fn sandbox_config(args: &SandboxArgs) -> anyhow::Result<SandboxConfig> {
    let s3 = match (&args.s3_endpoint, &args.s3_bucket) {
        (Some(endpoint), Some(bucket)) => {
            let mut storage = S3Storage::from_env(endpoint, bucket, &args.s3_region)?;
            storage.direct = reached_directly(endpoint);
            Some(storage)
        }
        _ => None,
    };
    Ok(SandboxConfig {
        listen: args.listen,
        token: args.token.clone(),
        token_ttl: args.token_ttl.map(Duration::from_secs),
        org: args.org.clone(),
        upload_style: args.upload_style.into(),
        error_style: args.error_style.into(),
        response_shape: args.response_shape.into(),
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        ambiguous_rate: args.ambiguous_rate,
        throttle_rate: args.throttle_rate,
        s3_fail_rate: args.s3_fail_rate,
        s3_drop_rate: args.s3_drop_rate,
        expired_rate: args.expired_rate,
        upload_ttl: Duration::from_secs(args.upload_ttl),
        max_upload_bytes: args.max_upload_bytes,
        success_action_status: args.success_action_status,
        seed: args.seed,
        data_dir: args.data_dir.clone(),
        s3,
    })
}

/// True for a loopback S3 endpoint: reached directly, never through a proxy, as the client
/// reaches a loopback API. (An endpoint that is not a URL is refused when the sandbox starts.)
fn reached_directly(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint).is_ok_and(|url| is_loopback(&url))
}

/// `voyc-import sandbox`: print the base URL, serve until Ctrl-C or SIGTERM, stop cleanly.
pub fn command(args: &SandboxArgs) -> anyhow::Result<Status> {
    let config = sandbox_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let sandbox = voyc_sandbox::start(config).await?;
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", sandbox.base_url())?;
            stdout.flush()?;
        }
        let uploads = match sandbox.s3_bucket() {
            Some((endpoint, bucket)) => format!("uploads go to the bucket {bucket} on {endpoint}"),
            None if args.data_dir.is_some() => {
                format!("uploads kept in {}", sandbox.data_dir().display())
            }
            None => format!(
                "uploads kept in {} (removed on exit)",
                sandbox.data_dir().display()
            ),
        };
        let lifetime = match args.token_ttl {
            Some(secs) => format!(" (expires {secs} s after start)"),
            None => String::new(),
        };
        // The default token is shown so that a newcomer knows what to set; one given with
        // --token may be somebody's real one, and tokens are never printed.
        let token = match sandbox.token() {
            "sandbox-token" => "token \"sandbox-token\"",
            _ => "the token given by --token",
        };
        eprintln!(
            "sandbox: organisation {}, {token}{lifetime}, {uploads}; Ctrl-C to stop",
            args.org.as_deref().unwrap_or("any"),
        );
        stop_signal().await?;
        let stats = sandbox.stats();
        let uploads = match sandbox.s3_bucket() {
            Some(_) => "uploads went to the S3 server".to_string(),
            None => format!("uploads {}", stats.uploads.unwrap_or_default()),
        };
        sandbox.stop().await;
        let f = stats.faults;
        eprintln!(
            "sandbox: stopped; conversations {}, {uploads}; faults injected: \
             fail {}, ambiguous {}, throttle {}, s3-fail {}, s3-drop {}, expired {}, \
             token-expired {}",
            stats.conversations,
            f.fail,
            f.ambiguous,
            f.throttle,
            f.s3_fail,
            f.s3_drop,
            f.expired,
            f.token_expired
        );
        Ok(Status::Success)
    })
}

/// Waits for Ctrl-C (or, on Unix, SIGTERM).
async fn stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot watch for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_s3_endpoint_is_reached_without_the_proxies() {
        for endpoint in [
            "http://127.0.0.1:8333",
            "http://localhost:9/s3",
            "http://[::1]:1",
        ] {
            assert!(reached_directly(endpoint), "{endpoint}");
        }
        for endpoint in [
            "https://s3.eu-west-1.amazonaws.com",
            "http://10.0.0.1",
            "127.0.0.1:8333",
        ] {
            assert!(!reached_directly(endpoint), "{endpoint}");
        }
    }
}

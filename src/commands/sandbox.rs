//! `voyc-import sandbox`: run the stand-in server of the voyc-sandbox crate from the command
//! line: print its base URL, serve until Ctrl-C or SIGTERM, stop cleanly and say what it did.

use std::io::Write as _;

use anyhow::Context as _;
use voyc_sandbox::SandboxConfig;

use crate::Status;
use crate::human;

/// `voyc-import sandbox`: print the base URL, serve until Ctrl-C or SIGTERM, stop cleanly.
pub fn command(config: SandboxConfig) -> anyhow::Result<Status> {
    let (data_dir_given, token_ttl, org) = (
        config.data_dir.is_some(),
        config.token_ttl,
        config.org.clone(),
    );
    let rehearsal = rehearsal(&config);
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
            None if data_dir_given => {
                format!("uploads kept in {}", sandbox.data_dir().display())
            }
            None => format!(
                "uploads kept in {} (removed on exit)",
                sandbox.data_dir().display()
            ),
        };
        let lifetime = match token_ttl {
            Some(ttl) => format!(" (expires {} s after start)", ttl.as_secs()),
            None => String::new(),
        };
        // The default token is shown so that a newcomer knows what to set; one given with
        // --token may be somebody's real one, and tokens are never printed.
        let token = match sandbox.token() {
            "sandbox-token" => "token \"sandbox-token\"",
            _ => "the token given by --token",
        };
        eprintln!(
            "sandbox: organisation {}, {token}{lifetime}, {uploads}{rehearsal}; Ctrl-C to stop",
            org.as_deref().unwrap_or("any"),
        );
        stop_signal().await?;
        let stats = sandbox.stats();
        let uploads = match sandbox.s3_bucket() {
            Some(_) => "uploads went to the S3 server".to_string(),
            None => format!("uploads {}", stats.uploads.unwrap_or_default()),
        };
        sandbox.stop().await;
        let (f, g) = (stats.faults, stats.gate);
        eprintln!(
            "sandbox: stopped; conversations {}, {uploads}; faults injected: \
             fail {}, ambiguous {}, throttle {}, s3-fail {}, s3-drop {}, expired {}, \
             token-expired {}; rate-limited {}; outages {} (503 to {} API and {} S3 requests)",
            stats.conversations,
            f.fail,
            f.ambiguous,
            f.throttle,
            f.s3_fail,
            f.s3_drop,
            f.expired,
            f.token_expired,
            g.rate_limited,
            g.outages,
            g.outage_api_requests,
            g.outage_s3_requests,
        );
        Ok(Status::Success)
    })
}

/// `, at most 20 call 1s a second, an outage of 40 s after 100 call 1s` for the start line.
fn rehearsal(config: &SandboxConfig) -> String {
    let mut text = String::new();
    if let Some(n) = config.rate_limit {
        text.push_str(&format!(
            ", at most {} a second",
            human::count_of(u64::from(n), "call 1", "call 1s")
        ));
    }
    if let Some(outage) = config.outage {
        let when = match outage.after_calls {
            0 => "from the start".to_string(),
            n => format!("after {}", human::count_of(n, "call 1", "call 1s")),
        };
        let again = match outage.repeat {
            true => ", repeated",
            false => "",
        };
        text.push_str(&format!(
            ", an outage of {} s {when}{again}",
            outage.duration.as_secs()
        ));
    }
    text
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

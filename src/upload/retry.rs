//! When to try a failed call again, and how long to wait first (PRODUCT.md guarantees 5, 6, 9).
//!
//! Transient failures (connection errors, timeouts, 408, 425, 429, 5xx, S3 `SlowDown`) are
//! retried with capped exponential backoff and full jitter, honouring `Retry-After`; permanent
//! ones (other 4xx, redirects) are not. For call 1 a failure is also *ambiguous* when the
//! request may have been processed (a timeout or reset after sending, 500, 502, 504): the
//! row's notes say so, because Voyc may then hold a conversation without audio.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Which of the two calls failed; they differ in what a failure may have left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// The metadata POST to Voyc's API, which creates a conversation.
    Api,
    /// The upload to S3 with the target call 1 returned.
    Upload,
}

impl Call {
    pub fn label(self) -> &'static str {
        match self {
            Call::Api => "call 1",
            Call::Upload => "upload",
        }
    }
}

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Transient,
    Permanent,
}

/// One failed attempt at one call, with everything the pool needs to decide what next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub call: Call,
    pub class: Class,
    /// Call 1 only: the request may have been processed (a conversation may exist).
    pub ambiguous: bool,
    /// What the server asked us to wait, if it said.
    pub retry_after: Option<Duration>,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Call 1 only: the answer says the credentials are missing or refused (401; 403 with
    /// `not_authenticated` / `authentication_failed`).
    pub about_credentials: bool,
    /// Upload only: S3 says the presigned target expired (call 1 may be made again, once).
    pub expired_target: bool,
    /// The server's TLS certificate is not trusted: no retry helps, `--ca-cert` may.
    pub untrusted_certificate: bool,
    /// No connection could be made at all (the name does not resolve, nothing listens): before
    /// any row has succeeded, a wrong `--base-url` or no network (guarantee 9).
    pub unreachable: bool,
    /// Call 1 only: the conversation id an answer held whose rest could not be used (the
    /// conversation exists, without audio).
    pub conversation: Option<crate::upload::response::ConversationId>,
    /// One line for the report, without the call's name: `HTTP 400: call_date: ...`.
    pub message: String,
}

impl Failure {
    pub fn transient(call: Call, message: impl Into<String>) -> Failure {
        Failure {
            call,
            class: Class::Transient,
            ambiguous: false,
            retry_after: None,
            status: None,
            about_credentials: false,
            expired_target: false,
            untrusted_certificate: false,
            unreachable: false,
            conversation: None,
            message: message.into(),
        }
    }

    pub fn permanent(call: Call, message: impl Into<String>) -> Failure {
        Failure {
            class: Class::Permanent,
            ..Failure::transient(call, message)
        }
    }

    /// A failure decided by an HTTP status (see [`status_class`]).
    pub fn from_status(call: Call, status: u16, message: impl Into<String>) -> Failure {
        let (class, ambiguous) = status_class(call, status);
        Failure {
            class,
            ambiguous,
            status: Some(status),
            about_credentials: call == Call::Api && status == 401,
            ..Failure::transient(call, message)
        }
    }

    /// A failure with no answer: `sent` says whether the request may have reached the server
    /// (a connection refused or a TLS handshake failure did not; a reset or a timeout after
    /// sending may have).
    pub fn from_transport(call: Call, sent: bool, message: impl Into<String>) -> Failure {
        Failure {
            ambiguous: call == Call::Api && sent,
            ..Failure::transient(call, message)
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }

    /// `call 1: HTTP 400: call_date: ...`, for the report's `error` column.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.call.label(), self.message)
    }
}

/// Transient or permanent, and (for call 1) whether the request may have been processed.
pub fn status_class(call: Call, status: u16) -> (Class, bool) {
    match status {
        408 | 425 | 429 => (Class::Transient, false),
        // 503 means "not now": the service turned the request away before processing it.
        503 => (Class::Transient, false),
        500..=599 => (Class::Transient, call == Call::Api),
        _ => (Class::Permanent, false),
    }
}

/// S3 error codes that are worth another try whatever the status says.
pub fn s3_code_is_transient(code: &str) -> bool {
    matches!(
        code,
        "SlowDown"
            | "RequestTimeout"
            | "InternalError"
            | "ServiceUnavailable"
            | "ThrottlingException"
    )
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means "now". `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Capped exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter").
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The ceiling before jitter for the first retry; doubles with each further retry.
    pub base: Duration,
    /// No computed wait exceeds this.
    pub cap: Duration,
    /// A server's `Retry-After` is honoured up to this; beyond it we wait this long.
    pub max_retry_after: Duration,
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(fastrand::Rng::new())
    }
}

impl Backoff {
    pub const BASE: Duration = Duration::from_millis(250);
    pub const CAP: Duration = Duration::from_secs(30);
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

    pub fn new(rng: fastrand::Rng) -> Backoff {
        Backoff {
            base: Backoff::BASE,
            cap: Backoff::CAP,
            max_retry_after: Backoff::MAX_RETRY_AFTER,
            rng,
        }
    }

    /// How long to wait before retry number `retry` (1 for the first retry): a uniform pick in
    /// `[0, min(cap, base·2^(retry-1))]`, but never less than the server's `Retry-After`.
    pub fn delay(&mut self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(self.rng.u64(0..=ceiling_ms));
        match retry_after {
            // Jitter on top of the server's wait so that throttled workers do not all come
            // back in the same millisecond.
            Some(wait) => wait.min(self.max_retry_after) + jittered.min(self.base),
            None => jittered,
        }
    }
}

/// Sleeps between attempts; tests swap in one that records the waits and returns at once.
#[derive(Clone, Debug, Default)]
pub enum Sleeper {
    #[default]
    Real,
    Recorded(Arc<Mutex<Vec<Duration>>>),
}

impl Sleeper {
    pub fn recorded() -> (Sleeper, Arc<Mutex<Vec<Duration>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        (Sleeper::Recorded(log.clone()), log)
    }

    pub async fn sleep(&self, duration: Duration) {
        match self {
            Sleeper::Real => tokio::time::sleep(duration).await,
            Sleeper::Recorded(log) => log.lock().expect("sleep log").push(duration),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transient_statuses_of_guarantee_5_are_retried() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(
                status_class(Call::Api, status).0,
                Class::Transient,
                "{status}"
            );
            assert_eq!(
                status_class(Call::Upload, status).0,
                Class::Transient,
                "{status}"
            );
        }
    }

    #[test]
    fn the_permanent_statuses_of_guarantee_5_are_not_retried() {
        for status in [400, 401, 403, 404, 413, 422, 301, 307] {
            assert_eq!(
                status_class(Call::Api, status),
                (Class::Permanent, false),
                "{status}"
            );
        }
    }

    #[test]
    fn only_statuses_that_may_follow_processing_are_ambiguous_for_call_1() {
        for status in [500, 502, 504] {
            assert!(status_class(Call::Api, status).1, "{status}");
            assert!(!status_class(Call::Upload, status).1, "{status}");
        }
        for status in [408, 425, 429, 503, 400] {
            assert!(!status_class(Call::Api, status).1, "{status}");
        }
    }

    #[test]
    fn a_401_from_call_1_is_about_credentials_and_from_s3_is_not() {
        assert!(Failure::from_status(Call::Api, 401, "x").about_credentials);
        assert!(!Failure::from_status(Call::Upload, 401, "x").about_credentials);
        assert!(!Failure::from_status(Call::Api, 400, "x").about_credentials);
    }

    #[test]
    fn a_transport_failure_after_sending_call_1_is_ambiguous() {
        assert!(Failure::from_transport(Call::Api, true, "reset").ambiguous);
        assert!(!Failure::from_transport(Call::Api, false, "refused").ambiguous);
        assert!(!Failure::from_transport(Call::Upload, true, "reset").ambiguous);
        assert!(Failure::from_transport(Call::Api, true, "reset").is_transient());
    }

    #[test]
    fn slow_down_and_friends_are_transient_s3_codes() {
        assert!(s3_code_is_transient("SlowDown"));
        assert!(s3_code_is_transient("RequestTimeout"));
        assert!(!s3_code_is_transient("AccessDenied"));
        assert!(!s3_code_is_transient("EntityTooLarge"));
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 01 May 2024 12:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_grows_exponentially_within_full_jitter_and_stops_at_the_cap() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(7));
        for retry in 1..=12 {
            let ceiling = (Backoff::BASE * (1 << (retry - 1))).min(Backoff::CAP);
            let mut largest = Duration::ZERO;
            for _ in 0..200 {
                let delay = backoff.delay(retry, None);
                assert!(delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
                largest = largest.max(delay);
            }
            // Full jitter spreads over the whole range, not just near zero.
            assert!(largest > ceiling / 2, "retry {retry}: largest {largest:?}");
        }
    }

    #[test]
    fn backoff_never_waits_less_than_retry_after_and_caps_it() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(1));
        for _ in 0..100 {
            let delay = backoff.delay(1, Some(Duration::from_secs(2)));
            assert!(delay >= Duration::from_secs(2));
            assert!(delay <= Duration::from_secs(2) + Backoff::BASE);
        }
        let delay = backoff.delay(1, Some(Duration::from_secs(86_400)));
        assert!(delay <= Backoff::MAX_RETRY_AFTER + Backoff::BASE);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(3));
        assert!(backoff.delay(u32::MAX, None) <= Backoff::CAP);
    }

    #[tokio::test]
    async fn the_recording_sleeper_returns_at_once_and_keeps_the_waits() {
        let (sleeper, log) = Sleeper::recorded();
        sleeper.sleep(Duration::from_secs(3600)).await;
        sleeper.sleep(Duration::from_millis(5)).await;
        assert_eq!(
            *log.lock().unwrap(),
            [Duration::from_secs(3600), Duration::from_millis(5)]
        );
    }
}

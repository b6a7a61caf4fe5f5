//! What a failed call means: transient or permanent, ambiguous or not (call 1 may have been
//! processed), about credentials, an expired target, an untrusted certificate, a host that
//! cannot be reached, and how long the server asked us to wait. The client turns every
//! transport error and non-success answer into one [`Failure`] here; the pool decides from it.
//!
//! Transient: connection errors, timeouts, 408, 425, 429, 5xx, S3 `SlowDown` and its kin.
//! Permanent: other 4xx, redirects (never followed), a 2xx S3 does not give for a stored file.
//! Ambiguous (call 1 only): a timeout or reset after sending, 500, 502, 504 — Voyc may then
//! hold a conversation without audio, which the row's notes say.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{StatusCode, Url};

use super::server_error::{api_message, cut_short, s3_error};
use crate::target::{ConversationId, UploadTarget, without_query};

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
    /// any row has succeeded, a wrong `--base-url` or no network, which stops the run at once.
    pub unreachable: bool,
    /// Call 1 only: the conversation id an answer held whose rest could not be used (the
    /// conversation exists, without audio).
    pub conversation: Option<ConversationId>,
    /// Upload only: the file is not the one validation checked (it changed size or time, or
    /// is no longer audio); the target is kept for a rerun once it stops changing.
    pub file_changed: bool,
    /// No file descriptor was left (`EMFILE`, `ENFILE`) to open the file or a connection:
    /// transient, and the pool waits for one without spending a retry.
    pub out_of_descriptors: bool,
    /// Upload only: the recording could not be read (its own store failed in passing, or a
    /// read of the local file did). It says nothing of Voyc's S3: an object's counts toward
    /// an outage of the recordings' store instead, a local file's toward none.
    pub source_unreadable: bool,
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
            file_changed: false,
            out_of_descriptors: false,
            source_unreadable: false,
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

    /// A transient failure to read the recording itself (see `source_unreadable`).
    pub fn reading_the_source(message: impl Into<String>) -> Failure {
        Failure {
            source_unreadable: true,
            ..Failure::transient(Call::Upload, message)
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

/// A failure without an answer: connect errors happened before anything was sent.
pub(super) fn transport_failure(call: Call, err: reqwest::Error) -> Failure {
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
    let no_descriptor = out_of_descriptors(&err);
    Failure {
        // Out of descriptors for a socket: nothing says the host cannot be reached.
        unreachable: err.is_connect() && !err.is_timeout() && !no_descriptor,
        out_of_descriptors: no_descriptor,
        ..Failure::from_transport(call, sent, message)
    }
}

/// Whether an error was caused by running out of file descriptors (`EMFILE`, `ENFILE`).
fn out_of_descriptors(err: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && crate::descriptors::out_of_descriptors(io)
        {
            return true;
        }
        cause = current.source();
    }
    false
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
pub(super) fn api_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Failure {
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
pub(super) fn s3_stored(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 201 | 204)
}

pub(super) fn s3_failure(
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
            failure.class = Class::Transient;
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
}

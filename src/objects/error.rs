//! Errors of the object store as sentences a person can act on (`no such object s3://b/k`,
//! `access denied to s3://b/k: AccessDenied: ...`), never object_store's `Debug` dumps, and
//! what each means for the run: a problem of one row, of the store as a whole (credentials,
//! configuration: stop at once), or a passing one (retry).

use super::ObjectUrl;
use crate::upload::server_error::s3_error;

/// What an error means for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The object is not there.
    Missing,
    /// The store refused this object (403 for it alone).
    Denied,
    /// The object was replaced since it was checked (its ETag no longer matches).
    Replaced,
    /// The row itself: its size, or its first bytes.
    Row,
    /// The store as a whole: credentials missing or refused, configuration. Every row would
    /// fail the same way, so the run stops with this one sentence.
    Store,
    /// The store could not be reached or failed (after its own retries): worth another try.
    Passing,
}

/// An error of the object store, as a sentence, and what kind it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: Kind,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// S3 error codes that say the credentials themselves are wrong, whatever the object.
const CREDENTIAL_CODES: [&str; 5] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
];

impl Problem {
    pub fn row(message: String) -> Problem {
        Problem {
            kind: Kind::Row,
            message,
        }
    }

    pub fn config(message: String) -> Problem {
        Problem {
            kind: Kind::Store,
            message,
        }
    }

    /// Credentials could not be had for `bucket`'s store.
    pub fn credentials(bucket: &str, err: &object_store::Error) -> Problem {
        Problem::config(format!(
            "cannot get AWS credentials to read s3://{bucket}: {}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) or AWS_PROFILE (a profile with keys in ~/.aws/credentials), or run where a role provides them (AWS_WEB_IDENTITY_TOKEN_FILE, ECS, EC2 instance metadata)",
            plain(err)
        ))
    }

    /// What an error of a request for `url` means, in a sentence.
    pub fn from_store(url: &ObjectUrl, err: &object_store::Error) -> Problem {
        sentence(url, err)
    }
}

/// The sentence for an error of a request about `url`.
pub fn sentence(url: &ObjectUrl, err: &object_store::Error) -> Problem {
    use object_store::Error as E;
    let answer = Answer::of(err);
    let said = answer.said();
    let (kind, message) = match err {
        E::NotFound { .. } => (Kind::Missing, format!("no such object {url}")),
        E::Precondition { .. } => (
            Kind::Replaced,
            format!("{url} was replaced since it was checked (its ETag changed)"),
        ),
        E::PermissionDenied { .. } | E::Unauthenticated { .. }
            if answer
                .code
                .as_deref()
                .is_some_and(|code| CREDENTIAL_CODES.contains(&code)) =>
        {
            (Kind::Store, refused_credentials(&url.bucket, &said))
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            let why = match said.is_empty() {
                true => format!(
                    " (HTTP {}; a HEAD answer carries no reason): check the credentials' permissions (s3:GetObject) and the bucket policy",
                    answer.status.unwrap_or(403)
                ),
                false => said,
            };
            (Kind::Denied, format!("access denied to {url}{why}"))
        }
        _ => match answer.status {
            // A wrong region: AWS answers 301 (PermanentRedirect) or 400 (AuthorizationHeaderMalformed).
            Some(301) | Some(307) => (
                Kind::Store,
                format!(
                    "s3://{} is in another region than the one requests are signed for{said}: pass --source-region (or set AWS_REGION)",
                    url.bucket
                ),
            ),
            Some(400) if answer.code.as_deref() == Some("AuthorizationHeaderMalformed") => (
                Kind::Store,
                format!(
                    "s3://{} wants requests signed for another region{said}: pass --source-region (or set AWS_REGION)",
                    url.bucket
                ),
            ),
            Some(status) if status == 429 || status >= 500 => (
                Kind::Passing,
                format!("the object store failed to answer for {url}: HTTP {status}{said}"),
            ),
            Some(status) => (
                Kind::Row,
                format!("the object store refused {url}: HTTP {status}{said}"),
            ),
            None => (Kind::Passing, format!("cannot read {url}: {}", plain(err))),
        },
    };
    Problem {
        kind,
        message: crate::human::one_line(&message).into_owned(),
    }
}

fn refused_credentials(bucket: &str, said: &str) -> String {
    format!(
        "the object store refused the credentials for s3://{bucket}{said}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (and --source-endpoint, --source-region)"
    )
}

/// The sentence for an error of listing the folder `prefix` (`s3://b/p/`, or `s3://b/` for
/// the whole bucket): as [`sentence`], but a 404 is the bucket missing and a 403 is a refusal
/// to list, which wants another permission than reading an object.
pub fn listing(prefix: &ObjectUrl, err: &object_store::Error) -> Problem {
    let answer = Answer::of(err);
    let said = answer.said();
    let (kind, message) = match (err, answer.status) {
        (object_store::Error::InvalidPath { .. }, _) => (
            Kind::Row,
            format!(
                "cannot list {prefix}: it holds a key that cannot be read here (with an empty, . or .. segment, or a control character): {}",
                plain(err)
            ),
        ),
        (_, Some(401 | 403))
            if answer
                .code
                .as_deref()
                .is_some_and(|code| CREDENTIAL_CODES.contains(&code)) =>
        {
            (Kind::Store, refused_credentials(&prefix.bucket, &said))
        }
        (_, Some(404)) => (
            Kind::Missing,
            match answer.code.as_deref() {
                Some("NoSuchBucket") | None => format!("no such bucket s3://{}", prefix.bucket),
                Some(_) => format!("cannot list {prefix}: HTTP 404{said}"),
            },
        ),
        _ => {
            let problem = sentence(prefix, err);
            match problem.kind {
                Kind::Denied => (
                    Kind::Denied,
                    format!(
                        "access denied to list {prefix}{}: check the credentials' permissions (s3:ListBucket on the bucket) and the bucket policy",
                        match said.is_empty() {
                            true => format!(" (HTTP {})", answer.status.unwrap_or(403)),
                            false => said,
                        }
                    ),
                ),
                Kind::Row if answer.status == Some(403) => (
                    Kind::Denied,
                    format!(
                        "access denied to list {prefix}{said}: check the credentials' permissions (s3:ListBucket on the bucket) and the bucket policy"
                    ),
                ),
                Kind::Store => return problem,
                kind => match answer.status {
                    Some(status) => (kind, format!("cannot list {prefix}: HTTP {status}{said}")),
                    None => (kind, format!("cannot list {prefix}: {}", plain(err))),
                },
            }
        }
    };
    Problem {
        kind,
        message: crate::human::one_line(&message).into_owned(),
    }
}

/// What the store answered, as far as the error says: its HTTP status and S3's `<Code>` and
/// `<Message>`.
#[derive(Debug, Default)]
struct Answer {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
}

impl Answer {
    fn of(err: &object_store::Error) -> Answer {
        // object_store's request error is not public: its sentence says
        // "Server returned non-2xx status code: 403 Forbidden: <body>".
        let mut answer = Answer::default();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(current) = cause {
            let text = current.to_string();
            if answer.status.is_none() {
                answer.status = status_in(&text);
            }
            if answer.code.is_none()
                && answer.message.is_none()
                && let Some(xml) = s3_error(text.as_bytes())
            {
                answer.code = Some(xml.code).filter(|c| !c.is_empty());
                // Without its full stop: a sentence of ours goes on after it.
                answer.message =
                    Some(xml.message.trim_end_matches('.').to_string()).filter(|m| !m.is_empty());
            }
            cause = current.source();
        }
        answer
    }

    /// `: AccessDenied: Access Denied.`, or nothing when the answer said nothing.
    fn said(&self) -> String {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => format!(": {code}: {message}"),
            (Some(code), None) => format!(": {code}"),
            (None, Some(message)) => format!(": {message}"),
            (None, None) => String::new(),
        }
    }
}

fn status_in(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// The innermost cause of an error, as a lower-case phrase without object_store's request
/// dump (method, URI, timings) around it: `connection refused`, `dns error: ...`.
pub fn plain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    let mut connect = false;
    while let Some(source) = cause.source() {
        if let Some(http) = cause.downcast_ref::<object_store::client::HttpError>() {
            connect |= matches!(http.kind(), object_store::client::HttpErrorKind::Connect);
        }
        cause = source;
    }
    let text = match cause.downcast_ref::<std::io::Error>() {
        Some(io) => crate::validate::io_text(io),
        None => cause.to_string(),
    };
    let text = lower_first(text.split(" (os error").next().unwrap_or_default());
    match connect {
        true => format!("cannot connect: {text}"),
        false => text,
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> ObjectUrl {
        ObjectUrl::parse("s3://calls/2024/a.wav").unwrap()
    }

    /// An error as object_store's S3 client makes one: its request error's sentence inside.
    #[derive(Debug)]
    struct Said(String);
    impl std::fmt::Display for Said {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Said {}

    fn status(code: u16, body: &str) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(Said(format!(
            "Error performing GET http://127.0.0.1:8333/calls/2024/a.wav in 2ms - Server returned non-2xx status code: {code} Forbidden: {body}"
        )))
    }

    #[test]
    fn a_missing_object_is_named() {
        let err = object_store::Error::NotFound {
            path: "2024/a.wav".into(),
            source: status(404, ""),
        };
        let problem = sentence(&url(), &err);
        assert_eq!(problem.message, "no such object s3://calls/2024/a.wav");
        assert_eq!(problem.kind, Kind::Missing);
    }

    #[test]
    fn access_denied_carries_what_the_store_said() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        let err = object_store::Error::PermissionDenied {
            path: "2024/a.wav".into(),
            source: status(403, body),
        };
        let problem = sentence(&url(), &err);
        assert_eq!(
            problem.message,
            "access denied to s3://calls/2024/a.wav: AccessDenied: Access Denied"
        );
        assert_eq!(problem.kind, Kind::Denied);
        // A HEAD answer has no body: say so, and what to check.
        let err = object_store::Error::PermissionDenied {
            path: "2024/a.wav".into(),
            source: status(403, ""),
        };
        let message = sentence(&url(), &err).message;
        assert!(
            message.starts_with(
                "access denied to s3://calls/2024/a.wav (HTTP 403; a HEAD answer carries no reason)"
            ),
            "{message}"
        );
    }

    #[test]
    fn refused_credentials_are_a_problem_of_the_store_not_of_a_row() {
        let body = "<Error><Code>InvalidAccessKeyId</Code><Message>The access key ID you provided does not exist.</Message></Error>";
        let err = object_store::Error::PermissionDenied {
            path: "2024/a.wav".into(),
            source: status(403, body),
        };
        let problem = sentence(&url(), &err);
        assert_eq!(problem.kind, Kind::Store);
        assert!(
            problem.message.starts_with(
                "the object store refused the credentials for s3://calls: InvalidAccessKeyId: The access key ID you provided does not exist: check AWS_ACCESS_KEY_ID"
            ),
            "{}",
            problem.message
        );
    }

    #[test]
    fn a_replaced_object_and_a_failing_store_are_told_apart() {
        let err = object_store::Error::Precondition {
            path: "2024/a.wav".into(),
            source: status(412, ""),
        };
        assert_eq!(sentence(&url(), &err).kind, Kind::Replaced);
        let err = object_store::Error::Generic {
            store: "S3",
            source: status(503, "<Error><Code>SlowDown</Code></Error>"),
        };
        let problem = sentence(&url(), &err);
        assert_eq!(problem.kind, Kind::Passing);
        assert_eq!(
            problem.message,
            "the object store failed to answer for s3://calls/2024/a.wav: HTTP 503: SlowDown"
        );
    }

    #[test]
    fn a_connection_error_is_its_cause_without_the_request_dump() {
        let io = std::io::Error::from_raw_os_error(111);
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(io),
        };
        let problem = sentence(&url(), &err);
        assert_eq!(problem.kind, Kind::Passing);
        assert_eq!(
            problem.message,
            "cannot read s3://calls/2024/a.wav: connection refused"
        );
    }

    #[test]
    fn a_listing_says_which_bucket_is_missing_and_which_permission_is_lacking() {
        let prefix = ObjectUrl::parse_prefix("s3://calls/connect/").unwrap();
        let generic = |code: u16, body: &str| object_store::Error::Generic {
            store: "S3",
            source: status(code, body),
        };
        let missing = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        let problem = listing(&prefix, &generic(404, missing));
        assert_eq!(problem.message, "no such bucket s3://calls");
        assert_eq!(problem.kind, Kind::Missing);
        let denied = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        let problem = listing(&prefix, &generic(403, denied));
        assert_eq!(
            problem.message,
            "access denied to list s3://calls/connect/: AccessDenied: Access Denied: check the credentials' permissions (s3:ListBucket on the bucket) and the bucket policy"
        );
        assert_eq!(problem.kind, Kind::Denied);
        let refused = "<Error><Code>SignatureDoesNotMatch</Code></Error>";
        assert_eq!(listing(&prefix, &generic(403, refused)).kind, Kind::Store);
        let io = std::io::Error::from_raw_os_error(111);
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(io),
        };
        assert_eq!(
            listing(&prefix, &err).message,
            "cannot list s3://calls/connect/: connection refused"
        );
    }
}

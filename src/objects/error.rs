//! Errors of the object store as sentences a person can act on (`no such object s3://b/k`,
//! `access denied to s3://b/k: AccessDenied: ...`), never object_store's `Debug` dumps, and
//! what each means for the run: a problem of one row, of the store as a whole (credentials,
//! configuration: stop at once), or a passing one (retry).

use super::{ObjectUrl, Scheme};
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

/// Error codes (S3's, Azure's) that say the credentials themselves are wrong, whatever the
/// object. Azure has no permissions of a single blob: its `AuthorizationFailure` (Azurite's
/// answer to a wrong key, Azure's to a firewall or a missing role) holds for every blob.
const CREDENTIAL_CODES: [&str; 8] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "AuthorizationFailure",
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

    /// Credentials could not be had for the store of `top` (`s3://bucket`).
    pub fn credentials(scheme: Scheme, top: &str, err: &object_store::Error) -> Problem {
        let (cloud, what) = match scheme {
            Scheme::S3 => (
                "AWS",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) or AWS_PROFILE (a profile with keys in ~/.aws/credentials), or run where a role provides them (AWS_WEB_IDENTITY_TOKEN_FILE, ECS, EC2 instance metadata)",
            ),
            Scheme::Gs => (
                "Google Cloud",
                "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file (or run gcloud auth application-default login), or run where the metadata server provides them (GCE, GKE, Cloud Run)",
            ),
            Scheme::Az => (
                "Azure",
                "set AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID, or run where a managed identity provides them",
            ),
        };
        Problem::config(format!(
            "cannot get {cloud} credentials to read {top}: {}; {what}",
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
        // 401: the store did not take the credentials as anyone's.
        E::Unauthenticated { .. } => (Kind::Store, refused_credentials(url, &said)),
        E::PermissionDenied { .. }
            if answer
                .code
                .as_deref()
                .is_some_and(|code| CREDENTIAL_CODES.contains(&code)) =>
        {
            (Kind::Store, refused_credentials(url, &said))
        }
        E::PermissionDenied { .. } => {
            let why = match said.is_empty() {
                true => format!(
                    " (HTTP {}; a HEAD answer carries no reason): check {}",
                    answer.status.unwrap_or(403),
                    read_permission(url.scheme)
                ),
                false => said,
            };
            (Kind::Denied, format!("access denied to {url}{why}"))
        }
        _ => match answer.status {
            // A wrong region: AWS answers 301 (PermanentRedirect) or 400 (AuthorizationHeaderMalformed).
            Some(301) | Some(307) if url.scheme == Scheme::S3 => (
                Kind::Store,
                format!(
                    "s3://{} is in another region than the one requests are signed for{said}: pass --source-region (or set AWS_REGION)",
                    url.bucket
                ),
            ),
            Some(400)
                if url.scheme == Scheme::S3
                    && answer.code.as_deref() == Some("AuthorizationHeaderMalformed") =>
            {
                (
                    Kind::Store,
                    format!(
                        "s3://{} wants requests signed for another region{said}: pass --source-region (or set AWS_REGION)",
                        url.bucket
                    ),
                )
            }
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

/// The store refused the credentials it was given for `url`'s bucket.
fn refused_credentials(url: &ObjectUrl, said: &str) -> String {
    let check = match url.scheme {
        Scheme::S3 => {
            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (and --source-endpoint, --source-region)"
        }
        Scheme::Gs => "GOOGLE_APPLICATION_CREDENTIALS (and --source-endpoint)",
        Scheme::Az => {
            "AZURE_STORAGE_ACCOUNT_NAME with its key, SAS or service principal and its role (Storage Blob Data Reader), and --source-endpoint"
        }
    };
    format!(
        "the object store refused the credentials for {}://{}{said}: check {check}",
        url.scheme, url.bucket
    )
}

/// What lets a reader read an object, in each cloud's terms.
fn read_permission(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::S3 => "the credentials' permissions (s3:GetObject) and the bucket policy",
        Scheme::Gs => "the credentials' permissions (storage.objects.get) on the bucket",
        Scheme::Az => {
            "the credentials' role (Storage Blob Data Reader) or the SAS's read permission"
        }
    }
}

/// What lets a reader list a bucket, in each cloud's terms.
fn list_permission(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::S3 => {
            "the credentials' permissions (s3:ListBucket on the bucket) and the bucket policy"
        }
        Scheme::Gs => "the credentials' permissions (storage.objects.list) on the bucket",
        Scheme::Az => {
            "the credentials' role (Storage Blob Data Reader) or the SAS's list permission"
        }
    }
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
        (_, Some(401)) => (Kind::Store, refused_credentials(prefix, &said)),
        (_, Some(403))
            if answer
                .code
                .as_deref()
                .is_some_and(|code| CREDENTIAL_CODES.contains(&code)) =>
        {
            (Kind::Store, refused_credentials(prefix, &said))
        }
        (_, Some(404)) => (
            Kind::Missing,
            match answer.code.as_deref() {
                Some("NoSuchBucket" | "ContainerNotFound") | None => format!(
                    "no such {} {}://{}",
                    prefix.scheme.bucket_word(),
                    prefix.scheme,
                    prefix.bucket
                ),
                Some(_) => format!("cannot list {prefix}: HTTP 404{said}"),
            },
        ),
        _ => {
            let problem = sentence(prefix, err);
            match problem.kind {
                Kind::Denied => (
                    Kind::Denied,
                    format!(
                        "access denied to list {prefix}{}: check {}",
                        match said.is_empty() {
                            true => format!(" (HTTP {})", answer.status.unwrap_or(403)),
                            false => said,
                        },
                        list_permission(prefix.scheme)
                    ),
                ),
                Kind::Row if answer.status == Some(403) => (
                    Kind::Denied,
                    format!(
                        "access denied to list {prefix}{said}: check {}",
                        list_permission(prefix.scheme)
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

/// What the store answered, as far as the error says: its HTTP status and the `<Code>` and
/// `<Message>` of its XML error (S3's, GCS's XML API's and Azure's have the same shape).
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
                // Without Azure's request id and time, and without its full stop: a sentence of
                // ours goes on after it.
                let message = xml.message.split("RequestId:").next().unwrap_or_default();
                answer.message = Some(message.trim_end().trim_end_matches('.').to_string())
                    .filter(|m| !m.is_empty());
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

    #[test]
    fn azure_and_google_errors_speak_of_their_own_cloud() {
        let blob = ObjectUrl::parse("az://recordings/2024/a.wav").unwrap();
        // Azure's message carries its request id and time on lines of their own.
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:5e1f\nTime:2026-12-03T18:00:00.000Z</Message></Error>";
        let err = object_store::Error::PermissionDenied {
            path: "2024/a.wav".into(),
            source: status(403, body),
        };
        let problem = sentence(&blob, &err);
        assert_eq!(problem.kind, Kind::Store);
        assert_eq!(
            problem.message,
            "the object store refused the credentials for az://recordings: AuthenticationFailed: Server failed to authenticate the request: check AZURE_STORAGE_ACCOUNT_NAME with its key, SAS or service principal and its role (Storage Blob Data Reader), and --source-endpoint"
        );
        let err = object_store::Error::PermissionDenied {
            path: "2024/a.wav".into(),
            source: status(403, ""),
        };
        assert!(sentence(&blob, &err).message.ends_with(
            "check the credentials' role (Storage Blob Data Reader) or the SAS's read permission"
        ),);
        let prefix = ObjectUrl::parse_prefix("az://recordings/2024/").unwrap();
        let missing = "<Error><Code>ContainerNotFound</Code><Message>The specified container does not exist.\nRequestId:1</Message></Error>";
        let err = object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: status(404, missing),
        };
        assert_eq!(
            listing(&prefix, &err).message,
            "no such container az://recordings"
        );

        let object = ObjectUrl::parse("gs://archive/a.wav").unwrap();
        let err = object_store::Error::Unauthenticated {
            path: "a.wav".into(),
            source: status(401, ""),
        };
        let problem = sentence(&object, &err);
        assert_eq!(problem.kind, Kind::Store);
        assert!(
            problem
                .message
                .starts_with("the object store refused the credentials for gs://archive: check GOOGLE_APPLICATION_CREDENTIALS"),
            "{}",
            problem.message
        );
        // A redirect is no region of S3's elsewhere.
        let err = object_store::Error::Generic {
            store: "GCS",
            source: status(301, ""),
        };
        assert_eq!(
            sentence(&object, &err).message,
            "the object store refused gs://archive/a.wav: HTTP 301"
        );
        let credentials = Problem::credentials(Scheme::Gs, "gs://archive", &err);
        assert!(
            credentials
                .message
                .starts_with("cannot get Google Cloud credentials to read gs://archive: "),
            "{}",
            credentials.message
        );
    }
}

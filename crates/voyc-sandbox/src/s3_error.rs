//! S3's error answers, as the stand-in gives them: a status, an XML body with `<Code>`,
//! `<Message>` and any further elements S3 adds, and a request id. Both the signature checks
//! (`sigv4.rs`) and the upload handlers (`s3.rs`) refuse with these.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An S3 error answer: status, `<Code>`, `<Message>` and any further elements.
#[derive(Debug)]
pub struct S3Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    details: Vec<(&'static str, String)>,
}

impl S3Error {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> S3Error {
        S3Error {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The `<Detail>` element, if any.
    pub fn detail(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|(name, _)| *name == "Detail")
            .map(|(_, value)| value.as_str())
    }

    /// Adds an element after `<Message>`, e.g. `<MaxSizeAllowed>`.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.details.push((name, value.into()));
        self
    }

    pub fn invalid_argument(message: impl Into<String>) -> S3Error {
        S3Error::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn access_denied(message: impl Into<String>) -> S3Error {
        S3Error::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn signature_mismatch() -> S3Error {
        S3Error::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
    }

    pub(crate) fn slow_down() -> S3Error {
        S3Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        )
    }

    /// What S3 answers while it is down (the sandbox's outage switches).
    pub(crate) fn service_unavailable() -> S3Error {
        S3Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Service is unable to handle request.",
        )
    }

    pub(crate) fn internal() -> S3Error {
        S3Error::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        )
    }

    pub(crate) fn malformed_post() -> S3Error {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "MalformedPOSTRequest",
            "The body of your POST request is not well-formed multipart/form-data.",
        )
    }

    pub(crate) fn missing_content_length() -> S3Error {
        S3Error::new(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        )
    }

    pub(crate) fn incomplete_body() -> S3Error {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        )
    }

    pub(crate) fn entity_too_large(proposed: u64, max: u64) -> S3Error {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
        .with("ProposedSize", proposed.to_string())
        .with("MaxSizeAllowed", max.to_string())
    }

    pub(crate) fn entity_too_small(proposed: u64, min: u64) -> S3Error {
        S3Error::new(
            StatusCode::BAD_REQUEST,
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size",
        )
        .with("ProposedSize", proposed.to_string())
        .with("MinSizeAllowed", min.to_string())
    }

    pub(crate) fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        )
        .with("BucketName", bucket)
    }
}

/// Escapes text for an XML element.
pub(crate) fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn request_id() -> String {
    format!("{:016X}", fastrand::u64(..))
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>",
            self.code,
            xml_text(&self.message)
        );
        for (name, value) in &self.details {
            xml.push_str(&format!("<{name}>{}</{name}>", xml_text(value)));
        }
        let id = request_id();
        xml.push_str(&format!(
            "<RequestId>{id}</RequestId><HostId>voyc-sandbox</HostId></Error>"
        ));
        (
            self.status,
            [
                (header::CONTENT_TYPE, "application/xml".to_string()),
                (header::HeaderName::from_static("x-amz-request-id"), id),
            ],
            xml,
        )
            .into_response()
    }
}

//! Call 1, `POST /api/v2/workspace/{organisation_id}/conversation/upload_data/`: the bearer
//! check, the metadata checked as Voyc's serializer would (`serializer/`), the new
//! conversation and its upload target — answered in plain DRF style or in the
//! drf-standardized-errors envelope.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::config::{ErrorStyle, ResponseShape, UploadStyle};
use crate::external::Target;
use crate::faults::Fault;
use crate::gate::Passage;
use crate::serializer;
use crate::shared::Shared;
use crate::sigv4::uri_encode;
use crate::store::object_key;

/// One error of a DRF error response.
struct ErrorItem {
    code: &'static str,
    detail: String,
    /// The field at fault; `None` for errors about the request as a whole.
    attr: Option<String>,
}

/// An error answer before it is worded in one style or the other.
struct ApiError {
    status: StatusCode,
    /// drf-standardized-errors' `type`: `client_error`, `validation_error` or `server_error`.
    kind: &'static str,
    errors: Vec<ErrorItem>,
}

impl ApiError {
    fn client(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: "client_error",
            errors: vec![ErrorItem {
                code,
                detail: detail.into(),
                attr: None,
            }],
        }
    }

    fn render(self, style: ErrorStyle) -> Response {
        (self.status, axum::Json(self.body(style))).into_response()
    }

    fn body(&self, style: ErrorStyle) -> Value {
        match style {
            ErrorStyle::Standardized => json!({
                "type": self.kind,
                "errors": self.errors.iter().map(|e| json!({
                    "code": e.code, "detail": e.detail, "attr": e.attr,
                })).collect::<Vec<_>>(),
            }),
            ErrorStyle::Drf if self.errors.iter().all(|e| e.attr.is_none()) => {
                json!({"detail": self.errors.first().map(|e| e.detail.as_str()).unwrap_or_default()})
            }
            ErrorStyle::Drf => {
                let mut fields = Map::new();
                for error in &self.errors {
                    let attr = error.attr.as_deref().unwrap_or("non_field_errors");
                    let list = fields
                        .entry(attr)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = list {
                        list.push(Value::String(error.detail.clone()));
                    }
                }
                Value::Object(fields)
            }
        }
    }
}

/// Answers for a missing or wrong token: DRF's 401, or the 403 Voyc's live API gives.
fn unauthenticated(style: ErrorStyle, code: &'static str, detail: &str) -> Response {
    match style {
        ErrorStyle::Drf => {
            let mut response =
                ApiError::client(StatusCode::UNAUTHORIZED, code, detail).render(style);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
            response
        }
        ErrorStyle::Standardized => {
            ApiError::client(StatusCode::FORBIDDEN, code, detail).render(style)
        }
    }
}

/// Checks `Authorization: Bearer <token>`; the answer to give when it is missing or wrong,
/// or right but past its lifetime (`--token-ttl`): an expired token is answered exactly as a
/// wrong one, as an API that no longer knows it would, and counted as a fault.
fn refuse_credentials(headers: &HeaderMap, shared: &Shared) -> Option<Response> {
    let (token, style) = (&shared.config.token, shared.config.error_style);
    let invalid = || unauthenticated(style, "authentication_failed", "Invalid token.");
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    match given {
        None => Some(unauthenticated(
            style,
            "not_authenticated",
            "Authentication credentials were not provided.",
        )),
        Some(given) if given != token => Some(invalid()),
        Some(_) if shared.token_expired() => {
            shared.faults.count(Fault::TokenExpired);
            Some(invalid())
        }
        Some(_) => None,
    }
}

/// The 503 a load balancer in front of the API gives: HTML, not JSON.
fn gateway_unavailable() -> Response {
    let page = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n\
                <body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n\
                </body>\r\n</html>\r\n";
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html")],
        page,
    )
        .into_response()
}

/// The 500 of an unhandled exception: Django's HTML page, or drf-standardized-errors' JSON.
fn server_error(style: ErrorStyle) -> Response {
    match style {
        ErrorStyle::Drf => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>\n\
             </head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n",
        )
            .into_response(),
        ErrorStyle::Standardized => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            errors: vec![ErrorItem {
                code: "error",
                detail: "A server error occurred.".into(),
                attr: None,
            }],
        }
        .render(style),
    }
}

fn throttled(style: ErrorStyle) -> Response {
    let mut response = ApiError::client(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        "Request was throttled. Expected available in 1 second.",
    )
    .render(style);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Python's name for a JSON value's type, as DRF's messages give it.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// The body as a JSON object, or the 415/400 DRF gives for anything else.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Unsupported media type \"{content_type}\" in request."),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "validation_error",
            errors: vec![ErrorItem {
                code: "invalid",
                detail: format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    python_type(&other)
                ),
                attr: Some("non_field_errors".into()),
            }],
        }),
        Err(err) => Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "parse_error",
            format!("JSON parse error - {err}"),
        )),
    }
}

/// The metadata as Voyc's serializer checks it: every error, in one 400.
fn validate(body: &Map<String, Value>) -> Result<(), ApiError> {
    serializer::validate(body).map_err(|errors| ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "validation_error",
        errors: errors
            .into_iter()
            .map(|error| ErrorItem {
                code: error.code,
                detail: error.message,
                attr: Some(error.field.to_string()),
            })
            .collect(),
    })
}

/// A version-4 UUID from the sandbox's id generator.
fn uuid(rng: &mut fastrand::Rng) -> String {
    let mut bytes = rng.u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The conversation id as call 1 answers it: a string, or a number in the numeric shape.
fn new_conversation_id(shared: &Shared) -> Value {
    match shared.config.response_shape {
        ResponseShape::Numeric => json!(shared.sequence.fetch_add(1, Ordering::Relaxed) + 1),
        _ => {
            let mut rng = shared
                .ids
                .lock()
                .expect("the id generator is never poisoned");
            json!(uuid(&mut rng))
        }
    }
}

/// Where this conversation's audio goes: presigned for the sandbox's own S3 stand-in, or for
/// the S3 server of external-storage mode.
fn upload_target(shared: &Shared, host: &str, key: &str, now: DateTime<Utc>) -> Target {
    let config = &shared.config;
    let ttl = config.upload_ttl.as_secs();
    let post = config.upload_style == UploadStyle::Post;
    if let Some(external) = &shared.external {
        return external.target(
            post,
            key,
            now,
            ttl,
            config.max_upload_bytes,
            config.success_action_status,
        );
    }
    let bucket = &shared.bucket;
    if post {
        Target::Post {
            url: format!("http://{host}/s3/{}", uri_encode(bucket, false)),
            fields: shared.credentials.presign_post(
                bucket,
                key,
                now,
                ttl,
                config.max_upload_bytes,
                config.success_action_status,
            ),
        }
    } else {
        let path = format!(
            "/s3/{}/{}",
            uri_encode(bucket, false),
            uri_encode(key, true)
        );
        let query = shared.credentials.presign_put(host, &path, now, ttl);
        Target::Put(format!("http://{host}{path}?{query}"))
    }
}

/// Call 1's success body, in the configured shape, with a target signed at `signed_at`.
fn success_body(
    shared: &Shared,
    host: &str,
    id: Value,
    key: &str,
    signed_at: DateTime<Utc>,
) -> Value {
    let shape = shared.config.response_shape;
    match upload_target(shared, host, key, signed_at) {
        Target::Post { url, fields } => {
            let fields: Map<String, Value> = fields
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect();
            match shape {
                ResponseShape::Flat => json!({
                    "conversation_id": id,
                    "upload": {"url": url, "fields": fields},
                }),
                ResponseShape::Nested => json!({
                    "conversation": {"id": id},
                    "presigned_post": {"url": url, "fields": fields},
                }),
                ResponseShape::Numeric => json!({"id": id, "url": url, "fields": fields}),
            }
        }
        Target::Put(url) => match shape {
            ResponseShape::Flat => json!({"conversation_id": id, "upload_url": url}),
            ResponseShape::Nested => json!({"conversation": {"id": id}, "presigned_url": url}),
            ResponseShape::Numeric => json!({"id": id, "url": url}),
        },
    }
}

/// `POST /api/v2/workspace/{organisation_id}/conversation/upload_data/`.
pub(crate) async fn upload_data(
    State(shared): State<Arc<Shared>>,
    Path(organisation_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.delay().await;
    shared.api_requests.fetch_add(1, Ordering::Relaxed);
    // An outage is the gateway's: nothing behind it sees the request, no fault is drawn.
    if shared.gate.call1() == Passage::Down {
        return gateway_unavailable();
    }
    let draw = shared.faults.draw_api();
    let style = shared.config.error_style;
    if draw.fail {
        shared.faults.count(Fault::Fail);
        return gateway_unavailable();
    }
    if let Some(response) = refuse_credentials(&headers, &shared) {
        return response;
    }
    if shared
        .config
        .org
        .as_ref()
        .is_some_and(|org| *org != organisation_id)
    {
        return ApiError::client(StatusCode::NOT_FOUND, "not_found", "Not found.").render(style);
    }
    if draw.throttle {
        shared.faults.count(Fault::Throttle);
        return throttled(style);
    }
    // After the bearer check, as DRF checks throttles after authentication.
    if shared.gate.throttle().is_some() {
        return throttled(style);
    }
    let metadata = match parse_body(&headers, &body).and_then(|m| validate(&m).map(|()| m)) {
        Ok(metadata) => metadata,
        Err(error) => return error.render(style),
    };
    let id = new_conversation_id(&shared);
    let id_text = match &id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let key = object_key(&id_text);
    let mut signed_at = Utc::now();
    if shared.faults.draw_expired() {
        shared.faults.count(Fault::Expired);
        // `check` keeps the TTL within a century, so this cannot overflow.
        signed_at -= chrono::Duration::seconds(shared.config.upload_ttl.as_secs() as i64 + 60);
    }
    let answer = success_body(&shared, shared.request_host(&headers), id, &key, signed_at);
    shared.store.create(id_text, organisation_id, metadata, key);
    if draw.ambiguous {
        shared.faults.count(Fault::Ambiguous);
        return server_error(style);
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// Anything else: a 404 that says what is served.
pub(crate) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "Not found. The sandbox serves POST /api/v2/workspace/{organisation_id}/conversation/upload_data/, \
         uploads under /s3/, and GET /_sandbox/conversations and /_sandbox/stats.\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(body: Value) -> Vec<(String, &'static str, String)> {
        match validate(body.as_object().unwrap()) {
            Ok(()) => Vec::new(),
            Err(e) => e
                .errors
                .into_iter()
                .map(|i| (i.attr.unwrap(), i.code, i.detail))
                .collect(),
        }
    }

    #[test]
    fn validation_codes_tell_missing_from_blank_from_invalid() {
        let got =
            errors(json!({"channel_id": " ", "call_date": "2024-13-01", "call_time": "09:00:00"}));
        assert_eq!(
            got,
            vec![
                (
                    "channel_id".into(),
                    "blank",
                    "This field may not be blank.".into()
                ),
                (
                    "call_date".into(),
                    "invalid",
                    "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.".into()
                ),
                ("agent".into(), "required", "This field is required.".into()),
            ]
        );
    }

    #[test]
    fn a_future_date_passes() {
        assert!(
            errors(json!({"channel_id": 1, "call_date": "2999-01-01", "call_time": "09:00:00", "agent": "A"}))
                .is_empty()
        );
    }

    #[test]
    fn drf_style_groups_messages_by_field_and_the_envelope_lists_them() {
        let item = |detail: &str, attr: Option<&str>| ErrorItem {
            code: "invalid",
            detail: detail.into(),
            attr: attr.map(String::from),
        };
        let error = ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "validation_error",
            errors: vec![item("a", Some("x")), item("b", Some("x")), item("c", None)],
        };
        assert_eq!(
            error.body(ErrorStyle::Drf),
            json!({"x": ["a", "b"], "non_field_errors": ["c"]})
        );
        assert_eq!(
            error.body(ErrorStyle::Standardized)["errors"][2],
            json!({"code": "invalid", "detail": "c", "attr": null})
        );
        let auth = ApiError::client(StatusCode::UNAUTHORIZED, "not_authenticated", "no");
        assert_eq!(auth.body(ErrorStyle::Drf), json!({"detail": "no"}));
    }

    #[test]
    fn uuids_are_version_4() {
        let mut rng = fastrand::Rng::with_seed(1);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]), "{id}");
        assert_ne!(id, uuid(&mut rng));
    }
}

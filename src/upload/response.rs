//! Call 1's answer, which Voyc does not document: the shapes we accept (see docs/upload.md, "What goes over the wire").
//!
//! The conversation id comes from `conversation_id`, else `conversation.id`, else `id`. The
//! upload target is a presigned POST (`url` + `fields`, at the top level or one level down
//! under any key) or a presigned PUT (a URL string under `upload_url`, `presigned_url` or
//! `url`, with no `fields` beside it). Anything else is an error that names the keys that
//! came back and never their values, which hold signatures.

use reqwest::Url;
use serde_json::{Map, Value};

use crate::target::{ConversationId, UploadTarget};

/// What call 1 gave us for one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call1Response {
    pub conversation_id: ConversationId,
    pub target: UploadTarget,
}

/// Why a successful call 1's body could not be used. Never holds a value from the body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("the answer is not JSON ({0} bytes)")]
    NotJson(usize),
    #[error("the answer is JSON but not an object")]
    NotAnObject,
    #[error(
        "the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: {0}"
    )]
    NoConversationId(String),
    #[error(
        "the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url); keys: {0}"
    )]
    NoTarget(String),
    #[error("the answer's {key} is not a usable URL ({reason}); keys: {keys}")]
    BadUrl {
        key: String,
        reason: String,
        keys: String,
    },
    #[error("the answer's {key} holds a value that is not text; keys: {keys}")]
    BadField { key: String, keys: String },
}

/// Parses call 1's body. Relative upload URLs resolve against `base` (the API's base URL).
pub fn parse(body: &[u8], base: &Url) -> Result<Call1Response, ShapeError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| ShapeError::NotJson(body.len()))?;
    let Value::Object(object) = value else {
        return Err(ShapeError::NotAnObject);
    };
    let keys = || describe_keys(&object);
    let conversation_id =
        conversation_id(&object).ok_or_else(|| ShapeError::NoConversationId(keys()))?;
    let target = upload_target(&object, base)?.ok_or_else(|| ShapeError::NoTarget(keys()))?;
    Ok(Call1Response {
        conversation_id,
        target,
    })
}

/// The conversation id a call-1 answer holds, if any: when the rest of the answer cannot be
/// used, the conversation it created can still be named.
pub fn conversation_id_in(body: &[u8]) -> Option<ConversationId> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(object) => conversation_id(&object),
        _ => None,
    }
}

fn conversation_id(object: &Map<String, Value>) -> Option<ConversationId> {
    let nested = object
        .get("conversation")
        .and_then(Value::as_object)
        .and_then(|conversation| conversation.get("id"));
    [object.get("conversation_id"), nested, object.get("id")]
        .into_iter()
        .flatten()
        .find_map(id_text)
        .map(ConversationId)
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// A presigned POST at the top level, else one level down; else a presigned PUT URL.
fn upload_target(
    object: &Map<String, Value>,
    base: &Url,
) -> Result<Option<UploadTarget>, ShapeError> {
    if let Some(target) = presigned_post(object, "", object, base)? {
        return Ok(Some(target));
    }
    for (key, value) in object {
        if let Value::Object(inner) = value
            && let Some(target) =
                presigned_post(inner, &format!("{}.", shown_key(key)), object, base)?
        {
            return Ok(Some(target));
        }
    }
    if object.contains_key("fields") {
        return Ok(None);
    }
    for key in ["upload_url", "presigned_url", "url"] {
        if let Some(Value::String(url)) = object.get(key) {
            let url = resolve(url, base, key, object)?;
            return Ok(Some(UploadTarget::Put { url }));
        }
    }
    Ok(None)
}

fn presigned_post(
    candidate: &Map<String, Value>,
    prefix: &str,
    top: &Map<String, Value>,
    base: &Url,
) -> Result<Option<UploadTarget>, ShapeError> {
    let (Some(Value::String(url)), Some(Value::Object(fields))) =
        (candidate.get("url"), candidate.get("fields"))
    else {
        return Ok(None);
    };
    let url = resolve(url, base, &format!("{prefix}url"), top)?;
    let fields = fields
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name.clone(), text.clone())),
            Value::Number(number) => Ok((name.clone(), number.to_string())),
            Value::Bool(flag) => Ok((name.clone(), flag.to_string())),
            _ => Err(ShapeError::BadField {
                key: format!("{prefix}fields.{}", shown_key(name)),
                keys: describe_keys(top),
            }),
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(UploadTarget::Post { url, fields }))
}

fn resolve(url: &str, base: &Url, key: &str, top: &Map<String, Value>) -> Result<Url, ShapeError> {
    let bad = |reason: &str| ShapeError::BadUrl {
        key: key.to_string(),
        reason: reason.to_string(),
        keys: describe_keys(top),
    };
    let url = base
        .join(url.trim())
        .map_err(|_| bad("it does not parse"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(bad("not http or https")),
    }
}

/// A key of the answer for a message: control characters escaped, cut to 40 characters.
fn shown_key(key: &str) -> String {
    let mut out = String::new();
    for (n, c) in key.chars().enumerate() {
        if n == 40 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `conversation_id, upload.{url, fields.{key, policy}}`: the keys two levels deep, no values.
/// A hostile answer's keys are shown with control characters escaped, each cut to 40
/// characters, and the whole cut to about 300 (the error goes to a terminal and a report cell).
pub fn describe_keys(object: &Map<String, Value>) -> String {
    const MAX_CHARS: usize = 300;
    fn describe(object: &Map<String, Value>, depth: usize) -> String {
        let mut out = String::new();
        for (n, (key, value)) in object.iter().enumerate() {
            if out.chars().count() > MAX_CHARS {
                out.push_str(&format!(", … ({} keys)", object.len()));
                break;
            }
            if n > 0 {
                out.push_str(", ");
            }
            out.push_str(&shown_key(key));
            if let Value::Object(inner) = value
                && depth < 2
                && !inner.is_empty()
            {
                out.push_str(&format!(".{{{}}}", describe(inner, depth + 1)));
            }
        }
        out
    }
    if object.is_empty() {
        "none".to_string()
    } else {
        describe(object, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://api.example.test/").unwrap()
    }

    fn parse_json(json: &str) -> Result<Call1Response, ShapeError> {
        parse(json.as_bytes(), &base())
    }

    fn policy(expiration: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!(
            r#"{{"expiration": "{expiration}", "conditions": [{{"bucket": "b"}}]}}"#
        ))
    }

    #[test]
    fn a_boto3_presigned_post_under_a_key_is_accepted_with_fields_in_order() {
        let json = format!(
            r#"{{"conversation_id": "c-1", "upload": {{"url": "https://s3.example.test/bucket",
               "fields": {{"key": "k/1.wav", "x-amz-algorithm": "AWS4-HMAC-SHA256",
               "x-amz-credential": "cred", "x-amz-date": "20240501T120000Z",
               "policy": "{}", "x-amz-signature": "sig"}}}}}}"#,
            policy("2024-05-01T13:00:00.000Z")
        );
        let response = parse_json(&json).unwrap();
        assert_eq!(response.conversation_id, ConversationId("c-1".into()));
        let UploadTarget::Post { url, fields } = &response.target else {
            panic!("expected a POST, got {:?}", response.target);
        };
        assert_eq!(url.as_str(), "https://s3.example.test/bucket");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "key",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "policy",
                "x-amz-signature"
            ]
        );
        assert_eq!(
            response.target.expires_at().unwrap().to_rfc3339(),
            "2024-05-01T13:00:00+00:00"
        );
    }

    #[test]
    fn a_presigned_post_at_the_top_level_is_accepted() {
        let response =
            parse_json(r#"{"id": 42, "url": "https://s3.example.test/b", "fields": {"key": "k"}}"#)
                .unwrap();
        assert_eq!(response.conversation_id.0, "42");
        assert!(matches!(response.target, UploadTarget::Post { .. }));
        assert_eq!(response.target.expires_at(), None);
    }

    #[test]
    fn each_put_url_key_is_accepted() {
        for key in ["upload_url", "presigned_url", "url"] {
            let json = format!(
                r#"{{"conversation_id": 7, "{key}": "https://s3.example.test/b/k?X-Amz-Date=20240501T120000Z&X-Amz-Expires=600&X-Amz-Signature=abc"}}"#
            );
            let response = parse_json(&json).unwrap();
            assert_eq!(response.conversation_id.0, "7");
            let UploadTarget::Put { url } = &response.target else {
                panic!("{key}: expected a PUT");
            };
            assert_eq!(url.path(), "/b/k");
            assert_eq!(
                response.target.expires_at().unwrap().to_rfc3339(),
                "2024-05-01T12:10:00+00:00"
            );
        }
    }

    #[test]
    fn a_sigv2_put_url_expiry_is_read() {
        let response = parse_json(
            r#"{"conversation_id": "a", "upload_url": "https://s3.example.test/b/k?Expires=1714564800&Signature=x"}"#,
        )
        .unwrap();
        assert_eq!(
            response.target.expires_at().unwrap().to_rfc3339(),
            "2024-05-01T12:00:00+00:00"
        );
    }

    #[test]
    fn the_conversation_id_is_looked_for_in_order() {
        let id = |json: &str| parse_json(json).unwrap().conversation_id.0;
        assert_eq!(
            id(
                r#"{"conversation_id": "a", "conversation": {"id": "b"}, "id": "c", "upload_url": "https://x.test/u"}"#
            ),
            "a"
        );
        assert_eq!(
            id(r#"{"conversation": {"id": 9}, "id": "c", "upload_url": "https://x.test/u"}"#),
            "9"
        );
        assert_eq!(
            id(r#"{"conversation": {"name": "x"}, "id": "c", "upload_url": "https://x.test/u"}"#),
            "c"
        );
    }

    #[test]
    fn a_relative_upload_url_resolves_against_the_base_url() {
        let response = parse_json(r#"{"id": 1, "upload_url": "/s3/b/k?sig=1"}"#).unwrap();
        assert_eq!(
            response.target.url().as_str(),
            "https://api.example.test/s3/b/k?sig=1"
        );
    }

    #[test]
    fn a_url_beside_fields_that_are_not_an_object_is_not_a_put() {
        let err =
            parse_json(r#"{"id": 1, "url": "https://x.test/u", "fields": "nope"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url); keys: id, url, fields"
        );
    }

    #[test]
    fn an_unknown_shape_names_the_keys_and_never_the_values() {
        let err = parse_json(
            r#"{"conversation_id": "c", "upload": {"link": "https://s3.test/SECRET", "token": {"a": "SECRET"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the answer holds no upload target (looked for url with fields, upload_url, presigned_url, url); keys: conversation_id, upload.{link, token.{a}}"
        );
        assert!(!err.contains("SECRET"));
    }

    #[test]
    fn hostile_keys_are_escaped_and_cut_short_in_the_error() {
        let many: Vec<String> = (0..1000).map(|i| format!(r#""key{i}": 1"#)).collect();
        let json = format!(
            r#"{{"upl\u007fad\n": 1, "{}": 2, {}}}"#,
            "k".repeat(100),
            many.join(", ")
        );
        let err = parse_json(&json).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: upl\\u{{7f}}ad\\n, {}…, key0, key1",
                "k".repeat(40)
            )),
            "{err}"
        );
        assert!(err.ends_with(", … (1002 keys)"), "{err}");
        assert!(err.chars().count() < 500, "{err}");
    }

    #[test]
    fn a_missing_conversation_id_names_the_keys() {
        let err = parse_json(r#"{"upload_url": "https://x.test/u?X-Amz-Signature=SECRET"}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: upload_url"
        );
    }

    #[test]
    fn empty_and_non_object_and_non_json_answers_are_errors() {
        assert_eq!(
            parse_json("{}").unwrap_err().to_string(),
            "the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: none"
        );
        assert_eq!(parse_json("[1]").unwrap_err(), ShapeError::NotAnObject);
        assert_eq!(
            parse_json("<html>SECRET</html>").unwrap_err(),
            ShapeError::NotJson(19)
        );
        assert_eq!(
            parse_json(r#"{"id": "", "upload_url": "https://x.test/u"}"#)
                .unwrap_err()
                .to_string(),
            "the answer holds no conversation id (looked for conversation_id, conversation.id, id); keys: id, upload_url"
        );
    }

    #[test]
    fn an_upload_url_that_is_not_http_is_an_error() {
        let err = parse_json(r#"{"id": 1, "upload_url": "ftp://x.test/u"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the answer's upload_url is not a usable URL (not http or https); keys: id, upload_url"
        );
    }

    #[test]
    fn a_field_that_is_not_text_is_an_error() {
        let err = parse_json(
            r#"{"id": 1, "upload": {"url": "https://x.test/b", "fields": {"key": {"x": 1}}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the answer's upload.fields.key holds a value that is not text; keys: id, upload.{url, fields.{key}}"
        );
    }
}

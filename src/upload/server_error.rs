//! A server's own words for what went wrong, rendered as one short line for the report.
//!
//! Voyc is a Django REST Framework service with the drf-standardized-errors envelope, but a
//! proxy in front of it may answer in HTML, and S3 answers in XML; the report must carry the
//! server's message whichever it is (docs/upload.md, "Retries and failures").

use serde_json::Value;

/// The longest message we keep, in characters; a whole HTML error page must not land in a
/// report cell.
pub const MAX_CHARS: usize = 300;

/// What an API error body said: the message, and the machine codes it carried (e.g.
/// `not_authenticated`), which decide whether a 403 is a credentials problem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiMessage {
    pub text: String,
    pub codes: Vec<String>,
}

impl ApiMessage {
    /// True when the body says the credentials were missing or refused (DRF's codes, or its
    /// stock sentences when a plain DRF body carries no code).
    pub fn is_about_credentials(&self) -> bool {
        const CODES: [&str; 3] = [
            "not_authenticated",
            "authentication_failed",
            "token_not_valid",
        ];
        const SENTENCES: [&str; 3] = [
            "authentication credentials were not provided",
            "invalid token",
            "token is invalid or expired",
        ];
        let text = self.text.to_ascii_lowercase();
        self.codes.iter().any(|code| CODES.contains(&code.as_str()))
            || SENTENCES.iter().any(|sentence| text.contains(sentence))
    }
}

/// Renders an API error body: drf-standardized-errors, plain DRF, any other JSON, or text
/// and HTML (folded to one line, cut short). `None` when the body says nothing.
pub fn api_message(body: &[u8]) -> Option<ApiMessage> {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json_message(&json),
        Err(_) => ApiMessage {
            text: text_message(body),
            codes: Vec::new(),
        },
    };
    (!message.text.is_empty()).then(|| ApiMessage {
        text: cut_short(&message.text),
        ..message
    })
}

/// S3's XML error: `<Error><Code>AccessDenied</Code><Message>Policy expired.</Message>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Error {
    pub code: String,
    pub message: String,
}

impl S3Error {
    /// `AccessDenied: Invalid according to Policy: Policy expired.`
    pub fn render(&self) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => cut_short(&format!("{}: {}", self.code, self.message)),
            (false, true) => cut_short(&self.code),
            _ => cut_short(&self.message),
        }
    }

    /// S3's ways of saying a presigned POST policy or PUT URL is past its time.
    pub fn is_expired_target(&self) -> bool {
        self.code == "ExpiredToken"
            || (self.code == "AccessDenied"
                && self.message.to_ascii_lowercase().contains("expired"))
    }
}

/// Reads S3's XML error body; `None` if it is not one.
pub fn s3_error(body: &[u8]) -> Option<S3Error> {
    let text = std::str::from_utf8(body).ok()?;
    let code = xml_element(text, "Code");
    let message = xml_element(text, "Message");
    if code.is_none() && message.is_none() {
        return None;
    }
    Some(S3Error {
        code: code.unwrap_or_default(),
        message: message.unwrap_or_default(),
    })
}

/// The text of the first `<name>…</name>`, entities decoded, folded to one line.
fn xml_element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(fold(&decode_entities(&text[start..end])))
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn json_message(json: &Value) -> ApiMessage {
    let mut codes = Vec::new();
    let text = match json {
        Value::Object(object) => match object.get("errors") {
            // drf-standardized-errors: {"type": ..., "errors": [{code, detail, attr}]}
            Some(Value::Array(errors)) if object.contains_key("type") => errors
                .iter()
                .map(|error| {
                    if let Some(code) = error.get("code").and_then(Value::as_str) {
                        codes.push(code.to_string());
                    }
                    let detail = error.get("detail").map(value_text).unwrap_or_default();
                    match error.get("attr").and_then(Value::as_str) {
                        Some(attr) if !attr.is_empty() => format!("{attr}: {detail}"),
                        _ => detail,
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => {
                if let Some(code) = object.get("code").and_then(Value::as_str) {
                    codes.push(code.to_string());
                }
                drf_fields(json, "")
            }
        },
        other => drf_fields(other, ""),
    };
    ApiMessage {
        text: fold(&text),
        codes,
    }
}

/// Plain DRF: `{"detail": "..."}`, `{"call_date": ["..."]}`, nested serializers as `a.b`,
/// `non_field_errors` without a prefix.
fn drf_fields(value: &Value, prefix: &str) -> String {
    match value {
        Value::Object(object) => {
            if let Some(detail) = object.get("detail")
                && prefix.is_empty()
            {
                return value_text(detail);
            }
            object
                .iter()
                .filter(|(key, _)| !(prefix.is_empty() && key.as_str() == "code"))
                .map(|(key, value)| {
                    let path = if key == "non_field_errors" {
                        prefix.trim_end_matches('.').to_string()
                    } else {
                        format!("{prefix}{key}")
                    };
                    match value {
                        Value::Object(_) => drf_fields(value, &format!("{path}.")),
                        _ if path.is_empty() => value_text(value),
                        _ => format!("{path}: {}", value_text(value)),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        other => value_text(other),
    }
}

/// A JSON value as text: strings bare, lists joined with spaces, objects as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A non-JSON body: an HTML page's `<title>` (or its text without tags), else the text.
fn text_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if lower.contains("<html") || lower.contains("<!doctype html") || lower.contains("<body") {
        if let Some(title) = xml_element(&text, "title").or_else(|| xml_element(&text, "TITLE"))
            && !title.is_empty()
        {
            return title;
        }
        return fold(&strip_tags(&text));
    }
    fold(&text)
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len().min(4096));
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode_entities(&out)
}

/// All runs of whitespace (newlines included) become one space, and other control characters
/// `�`: a server's words go to a terminal, where an escape sequence would be obeyed.
pub fn fold(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            word.chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most [`MAX_CHARS`] characters, with `…` where it was cut.
pub fn cut_short(text: &str) -> String {
    match text.char_indices().nth(MAX_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> String {
        api_message(body.as_bytes()).unwrap().text
    }

    #[test]
    fn a_servers_words_cannot_put_a_terminal_escape_or_a_long_code_on_stderr() {
        assert_eq!(
            text("bad \x1b[31mred\x1b[0m\r\nrequest\u{7}"),
            "bad \u{fffd}[31mred\u{fffd}[0m request\u{fffd}"
        );
        let code = "C".repeat(5000);
        let error = s3_error(format!("<Error><Code>{code}</Code></Error>").as_bytes()).unwrap();
        assert_eq!(error.render().chars().count(), MAX_CHARS + 1);
    }

    #[test]
    fn the_standardized_envelope_renders_each_error_with_its_attribute() {
        let body = r#"{"type":"validation_error","errors":[
            {"code":"invalid","detail":"Date has wrong format. Use YYYY-MM-DD.","attr":"call_date"},
            {"code":"required","detail":"This field is required.","attr":"agent"}]}"#;
        let message = api_message(body.as_bytes()).unwrap();
        assert_eq!(
            message.text,
            "call_date: Date has wrong format. Use YYYY-MM-DD.; agent: This field is required."
        );
        assert_eq!(message.codes, ["invalid", "required"]);
        assert!(!message.is_about_credentials());
    }

    #[test]
    fn a_standardized_not_authenticated_is_about_credentials() {
        let body = r#"{"type":"client_error","errors":[{"code":"not_authenticated","detail":"Authentication credentials were not provided.","attr":null}]}"#;
        let message = api_message(body.as_bytes()).unwrap();
        assert_eq!(
            message.text,
            "Authentication credentials were not provided."
        );
        assert!(message.is_about_credentials());
        let failed = r#"{"type":"client_error","errors":[{"code":"authentication_failed","detail":"Invalid token.","attr":null}]}"#;
        assert!(
            api_message(failed.as_bytes())
                .unwrap()
                .is_about_credentials()
        );
    }

    #[test]
    fn a_standardized_permission_denied_is_not_about_credentials() {
        let body = r#"{"type":"client_error","errors":[{"code":"permission_denied","detail":"You do not have permission to perform this action.","attr":null}]}"#;
        assert!(!api_message(body.as_bytes()).unwrap().is_about_credentials());
    }

    #[test]
    fn plain_drf_field_errors_are_rendered_field_by_field() {
        assert_eq!(
            text(
                r#"{"call_date": ["Date has wrong format.", "Second."], "speakers": ["A valid integer is required."]}"#
            ),
            "call_date: Date has wrong format. Second.; speakers: A valid integer is required."
        );
        assert_eq!(
            text(r#"{"non_field_errors": ["Duplicate call."]}"#),
            "Duplicate call."
        );
        assert_eq!(
            text(r#"{"meta": {"agent": ["Too long."]}}"#),
            "meta.agent: Too long."
        );
    }

    #[test]
    fn plain_drf_detail_is_rendered_alone() {
        let message = api_message(br#"{"detail": "Invalid token."}"#).unwrap();
        assert_eq!(message.text, "Invalid token.");
        assert!(message.is_about_credentials());
        let message = api_message(br#"{"detail": "Not found.", "code": "not_found"}"#).unwrap();
        assert_eq!(message.text, "Not found.");
        assert_eq!(message.codes, ["not_found"]);
    }

    #[test]
    fn other_json_is_rendered_as_text() {
        assert_eq!(text(r#"["Bad row."]"#), "Bad row.");
        assert_eq!(text(r#""plain""#), "plain");
        assert_eq!(text(r#"{"error": {"x": 1}}"#), "error.x: 1");
    }

    #[test]
    fn an_html_page_is_reduced_to_its_title() {
        let page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
        assert_eq!(text(page), "502 Bad Gateway");
        let untitled = "<!DOCTYPE html><body><p>Server   Error\n(500)</p></body>";
        assert_eq!(text(untitled), "Server Error (500)");
    }

    #[test]
    fn plain_text_is_folded_to_one_line_and_cut_short() {
        assert_eq!(text("upstream\n  timed out\r\n"), "upstream timed out");
        let long = "word ".repeat(200);
        let rendered = text(&long);
        assert_eq!(rendered.chars().count(), MAX_CHARS + 1);
        assert!(rendered.ends_with('…'));
    }

    #[test]
    fn an_empty_body_says_nothing() {
        assert_eq!(api_message(b""), None);
        assert_eq!(api_message(b"  \n"), None);
        assert_eq!(api_message(b"{}"), None);
    }

    #[test]
    fn s3_xml_errors_render_as_code_and_message() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message><RequestId>1</RequestId></Error>"#;
        let error = s3_error(body).unwrap();
        assert_eq!(
            error.render(),
            "AccessDenied: Invalid according to Policy: Policy expired."
        );
        assert!(error.is_expired_target());

        let put = s3_error(
            b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )
        .unwrap();
        assert!(put.is_expired_target());

        let slow = s3_error(b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>").unwrap();
        assert_eq!(slow.render(), "SlowDown: Please reduce your request rate.");
        assert!(!slow.is_expired_target());

        let denied =
            s3_error(b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
                .unwrap();
        assert!(!denied.is_expired_target());

        let escaped = s3_error(
            b"<Error><Code>InvalidArgument</Code><Message>a &lt; b &amp; c</Message></Error>",
        )
        .unwrap();
        assert_eq!(escaped.render(), "InvalidArgument: a < b & c");
        assert_eq!(s3_error(b"not xml"), None);
    }
}

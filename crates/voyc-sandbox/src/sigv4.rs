//! AWS Signature Version 4 the way S3 uses it for presigned uploads: the sandbox issues
//! presigned POST policies and presigned PUT URLs, and checks them again when the upload
//! arrives, with the same rules (and the same error codes and wording) as S3.

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::s3_error::S3Error;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const REGION: &str = "us-east-1";
const SERVICE: &str = "s3";
/// The longest lifetime S3 accepts for a presigned URL: one week.
const MAX_EXPIRES_SECS: u64 = 604_800;

type HmacSha256 = Hmac<Sha256>;

/// The key pair the sandbox signs with; the secret never leaves the process.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

/// What a valid presigned POST allows: the key it names and the size range of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostGrant {
    pub key: String,
    pub min_bytes: u64,
    pub max_bytes: u64,
    /// `success_action_status` as sent in the form (200, 201 or 204), if any.
    pub success_action_status: Option<u16>,
}

/// `20240131T235959Z`, the form of `x-amz-date`.
pub fn amz_date(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

fn parse_amz_date(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|naive| Utc.from_utc_datetime(&naive))
}

/// Percent-encodes as SigV4 requires: everything but `A-Za-z0-9-_.~` (and `/` in paths).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The key derived from the secret for one day, region and service.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// True when `signature` (hex) is the HMAC of `message` under `key`, compared in constant time.
fn signature_matches(key: &[u8; 32], message: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.verify_slice(&given).is_ok()
}

/// A parsed `AKID/20240131/us-east-1/s3/aws4_request`.
struct Scope<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Scope<'a> {
    fn parse(credential: &'a str) -> Option<Scope<'a>> {
        let mut parts = credential.split('/');
        let scope = Scope {
            access_key: parts.next()?,
            date: parts.next()?,
            region: parts.next()?,
            service: parts.next()?,
        };
        (parts.next()? == "aws4_request" && parts.next().is_none()).then_some(scope)
    }

    fn text(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

impl Credentials {
    fn credential(&self, time: DateTime<Utc>) -> String {
        format!(
            "{}/{}/{REGION}/{SERVICE}/aws4_request",
            self.access_key,
            time.format("%Y%m%d")
        )
    }

    /// The signing key for a scope, provided the scope names our access key.
    fn key_for(&self, scope: &Scope) -> Result<[u8; 32], S3Error> {
        if scope.access_key != self.access_key {
            return Err(S3Error::new(
                StatusCode::FORBIDDEN,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
            .with("AWSAccessKeyId", scope.access_key));
        }
        Ok(signing_key(
            &self.secret_key,
            scope.date,
            scope.region,
            scope.service,
        ))
    }

    /// The form fields of a presigned POST for `key`, in the order boto3's
    /// `generate_presigned_post` returns them, valid for `ttl_secs` from `now`.
    pub fn presign_post(
        &self,
        bucket: &str,
        key: &str,
        now: DateTime<Utc>,
        ttl_secs: u64,
        max_bytes: u64,
        success_action_status: Option<u16>,
    ) -> Vec<(String, String)> {
        let expiration = now + chrono::Duration::seconds(ttl_secs.min(i64::MAX as u64) as i64);
        let credential = self.credential(now);
        let date = amz_date(now);
        let mut fields = Vec::with_capacity(7);
        let mut conditions = Vec::with_capacity(7);
        if let Some(status) = success_action_status {
            fields.push(("success_action_status".into(), status.to_string()));
            conditions.push(json!({"success_action_status": status.to_string()}));
        }
        conditions.extend([
            json!({"bucket": bucket}),
            json!({"key": key}),
            json!(["content-length-range", 1, max_bytes]),
            json!({"x-amz-algorithm": ALGORITHM}),
            json!({"x-amz-credential": credential}),
            json!({"x-amz-date": date}),
        ]);
        let policy = json!({
            "expiration": expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "conditions": conditions,
        });
        let policy = BASE64.encode(policy.to_string());
        let key_bytes = signing_key(&self.secret_key, &date[..8], REGION, SERVICE);
        let signature = hex::encode(hmac(&key_bytes, policy.as_bytes()));
        fields.extend([
            ("key".into(), key.to_string()),
            ("x-amz-algorithm".into(), ALGORITHM.to_string()),
            ("x-amz-credential".into(), credential),
            ("x-amz-date".into(), date),
            ("policy".into(), policy),
            ("x-amz-signature".into(), signature),
        ]);
        fields
    }

    /// Checks the form fields that came before the file part of a POST upload, as S3 does:
    /// required fields, signature, expiry, every condition, and no field the policy does not
    /// cover. `form` holds the field names in lower case, in the order they came.
    pub fn check_post_form(
        &self,
        bucket: &str,
        form: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<PostGrant, S3Error> {
        let field = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        for name in [
            "key",
            "policy",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "x-amz-signature",
        ] {
            if field(name).is_none() {
                return Err(S3Error::invalid_argument(format!(
                    "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
                ))
                .with("ArgumentName", name));
            }
        }
        let value = |name| field(name).unwrap_or_default();
        if value("x-amz-algorithm") != ALGORITHM {
            return Err(S3Error::invalid_argument(format!(
                "Unsupported x-amz-algorithm; the only one supported is {ALGORITHM}."
            ))
            .with("ArgumentName", "x-amz-algorithm")
            .with("ArgumentValue", value("x-amz-algorithm")));
        }
        let credential = value("x-amz-credential");
        let Some(scope) = Scope::parse(credential) else {
            return Err(S3Error::invalid_argument(
                "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            )
            .with("ArgumentName", "x-amz-credential")
            .with("ArgumentValue", credential));
        };
        let signing = self.key_for(&scope)?;
        let policy_b64 = value("policy");
        if !signature_matches(&signing, policy_b64.as_bytes(), value("x-amz-signature")) {
            return Err(S3Error::signature_mismatch().with("StringToSign", policy_b64));
        }
        let policy = decode_policy(policy_b64)?;
        let expiration = policy_expiration(&policy)?;
        if now > expiration {
            return Err(S3Error::access_denied(
                "Invalid according to Policy: Policy expired.",
            ));
        }
        let conditions = policy
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid_policy("Invalid Policy: Policy missing conditions."))?;
        let mut covered: Vec<String> = Vec::new();
        let mut range = (0, u64::MAX);
        for condition in conditions {
            match check_condition(condition, bucket, &field)? {
                Checked::Field(name) => covered.push(name),
                Checked::Range(min, max) => range = (min, max),
            }
        }
        let extra: Vec<&str> = form
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                !matches!(*name, "policy" | "x-amz-signature" | "file")
                    && !name.starts_with("x-ignore-")
                    && !covered.iter().any(|c| c == name)
            })
            .collect();
        if !extra.is_empty() {
            return Err(S3Error::access_denied(format!(
                "Invalid according to Policy: Extra input fields: {}",
                extra.join(", ")
            )));
        }
        let success_action_status = match field("success_action_status") {
            None => None,
            Some(text) => match text.trim().parse::<u16>() {
                Ok(status @ (200 | 201 | 204)) => Some(status),
                // S3 ignores values it does not know and answers 204.
                _ => None,
            },
        };
        Ok(PostGrant {
            key: value("key").to_string(),
            min_bytes: range.0,
            max_bytes: range.1,
            success_action_status,
        })
    }

    /// The query string (signature included) of a presigned PUT for `path` on `host`.
    pub fn presign_put(&self, host: &str, path: &str, now: DateTime<Utc>, ttl_secs: u64) -> String {
        let date = amz_date(now);
        let params = [
            ("X-Amz-Algorithm", ALGORITHM.to_string()),
            ("X-Amz-Credential", self.credential(now)),
            ("X-Amz-Date", date.clone()),
            ("X-Amz-Expires", ttl_secs.min(MAX_EXPIRES_SECS).to_string()),
            ("X-Amz-SignedHeaders", "host".to_string()),
        ];
        let query = params
            .iter()
            .map(|(name, value)| format!("{name}={}", uri_encode(value, false)))
            .collect::<Vec<_>>()
            .join("&");
        let canonical = format!("PUT\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let scope = format!("{}/{REGION}/{SERVICE}/aws4_request", &date[..8]);
        let to_sign = string_to_sign(&date, &scope, &canonical);
        let key = signing_key(&self.secret_key, &date[..8], REGION, SERVICE);
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        format!("{query}&X-Amz-Signature={signature}")
    }

    /// Checks a presigned request as S3 does: the authentication parameters, the signature over
    /// method, path, query and signed headers, and the expiry.
    pub fn check_presigned(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> Result<(), S3Error> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        const REQUIRED: [&str; 6] = [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-Date",
            "X-Amz-SignedHeaders",
            "X-Amz-Expires",
        ];
        if REQUIRED.iter().all(|name| param(name).is_none()) {
            return Err(S3Error::access_denied("Access Denied"));
        }
        if REQUIRED.iter().any(|name| param(name).is_none()) {
            return Err(query_error(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
            ));
        }
        let value = |name| param(name).unwrap_or_default();
        if value("X-Amz-Algorithm") != ALGORITHM {
            return Err(query_error(
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
            ));
        }
        let Some(scope) = Scope::parse(value("X-Amz-Credential")) else {
            return Err(query_error(
                "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            ));
        };
        let Some(signed_at) = parse_amz_date(value("X-Amz-Date")) else {
            return Err(query_error(
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            ));
        };
        let Ok(expires) = value("X-Amz-Expires").parse::<u64>() else {
            return Err(query_error("X-Amz-Expires should be a number"));
        };
        if expires > MAX_EXPIRES_SECS {
            return Err(query_error(
                "X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds",
            ));
        }
        let signing = self.key_for(&scope)?;
        let canonical =
            canonical_request(method, path, query, headers, value("X-Amz-SignedHeaders"));
        let to_sign = string_to_sign(value("X-Amz-Date"), &scope.text(), &canonical);
        if !signature_matches(&signing, to_sign.as_bytes(), value("X-Amz-Signature")) {
            return Err(S3Error::signature_mismatch()
                .with("StringToSign", &to_sign)
                .with("CanonicalRequest", &canonical));
        }
        let expiry = signed_at + chrono::Duration::seconds(expires as i64);
        if now > expiry {
            return Err(S3Error::access_denied("Request has expired")
                .with("X-Amz-Expires", expires.to_string())
                .with("Expires", expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .with("ServerTime", now.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
        }
        Ok(())
    }
}

fn query_error(message: &str) -> S3Error {
    S3Error::new(
        StatusCode::BAD_REQUEST,
        "AuthorizationQueryParametersError",
        message,
    )
}

fn invalid_policy(message: impl Into<String>) -> S3Error {
    S3Error::new(StatusCode::BAD_REQUEST, "InvalidPolicyDocument", message)
}

fn string_to_sign(date: &str, scope: &str, canonical: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
    format!("{ALGORITHM}\n{date}\n{scope}\n{hash}")
}

/// SigV4's canonical request of a presigned request (the payload is never signed).
fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    signed_headers: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| name != "X-Amz-Signature")
        .map(|(name, value)| (uri_encode(name, false), uri_encode(value, false)))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let header_lines: String = signed_headers
        .split(';')
        .map(|name| {
            let value = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("{name}:{}\n", value.trim())
        })
        .collect();
    format!("{method}\n{path}\n{query}\n{header_lines}\n{signed_headers}\nUNSIGNED-PAYLOAD")
}

fn decode_policy(policy_b64: &str) -> Result<Map<String, Value>, S3Error> {
    let bytes = BASE64
        .decode(policy_b64.trim())
        .map_err(|_| invalid_policy("Invalid Policy: Invalid Base64 encoding."))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(policy)) => Ok(policy),
        _ => Err(invalid_policy("Invalid Policy: Invalid JSON.")),
    }
}

fn policy_expiration(policy: &Map<String, Value>) -> Result<DateTime<Utc>, S3Error> {
    let text = policy
        .get("expiration")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_policy("Invalid Policy: Policy missing expiration."))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid_policy(format!(
                "Invalid Policy: Invalid 'expiration' value: '{text}'"
            ))
        })
}

/// What one satisfied condition contributes: a field it covers, or the size range.
enum Checked {
    Field(String),
    Range(u64, u64),
}

fn condition_failed(op: &str, name: &str, expected: &str) -> S3Error {
    let shown = serde_json::to_string(expected).unwrap_or_default();
    S3Error::access_denied(format!(
        "Invalid according to Policy: Policy Condition failed: [\"{op}\", \"${name}\", {shown}]"
    ))
}

fn check_condition<'f>(
    condition: &Value,
    bucket: &str,
    field: &impl Fn(&str) -> Option<&'f str>,
) -> Result<Checked, S3Error> {
    let actual = |name: &str| -> String {
        if name == "bucket" {
            bucket.to_string()
        } else {
            field(name).unwrap_or_default().to_string()
        }
    };
    let bad = || invalid_policy(format!("Invalid Policy: Invalid Condition: {condition}"));
    match condition {
        Value::Object(map) if map.len() == 1 => {
            let (name, expected) = map.iter().next().expect("one entry");
            let name = name.to_ascii_lowercase();
            let expected = expected.as_str().ok_or_else(bad)?;
            if actual(&name) != expected {
                return Err(condition_failed("eq", &name, expected));
            }
            Ok(Checked::Field(name))
        }
        Value::Array(items) => match items.as_slice() {
            [
                Value::String(op),
                Value::String(name),
                Value::String(expected),
            ] if op.eq_ignore_ascii_case("eq") || op.eq_ignore_ascii_case("starts-with") => {
                let name = name.strip_prefix('$').ok_or_else(bad)?.to_ascii_lowercase();
                let value = actual(&name);
                let holds = if op.eq_ignore_ascii_case("eq") {
                    value == *expected
                } else {
                    value.starts_with(expected.as_str())
                };
                if !holds {
                    return Err(condition_failed(&op.to_ascii_lowercase(), &name, expected));
                }
                Ok(Checked::Field(name))
            }
            [Value::String(op), min, max] if op.eq_ignore_ascii_case("content-length-range") => {
                let number = |v: &Value| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                };
                match (number(min), number(max)) {
                    (Some(min), Some(max)) => Ok(Checked::Range(min, max)),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The stand-in's test keys (the external-storage tests sign with them too).
    pub(crate) fn creds() -> Credentials {
        Credentials {
            access_key: "SANDBOXKEY".into(),
            secret_key: "secret".into(),
        }
    }

    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn form(fields: &[(String, String)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    fn issued() -> Vec<(String, String)> {
        creds().presign_post(
            "b",
            "uploads/1",
            at("2026-01-02T03:04:05Z"),
            3600,
            100,
            None,
        )
    }

    #[test]
    fn the_signing_key_matches_aws_documented_example() {
        // From AWS's "Examples of how to derive a signing key for Signature Version 4".
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex::encode(key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn a_presigned_post_has_boto3s_fields_in_boto3s_order() {
        let names: Vec<String> = issued().into_iter().map(|(n, _)| n).collect();
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
    }

    #[test]
    fn the_policy_is_base64_json_with_expiry_and_conditions() {
        let fields = issued();
        let policy = decode_policy(&fields[4].1).unwrap();
        assert_eq!(policy["expiration"], "2026-01-02T04:04:05Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert_eq!(conditions[0], json!({"bucket": "b"}));
        assert_eq!(conditions[1], json!({"key": "uploads/1"}));
        assert_eq!(conditions[2], json!(["content-length-range", 1, 100]));
        assert_eq!(
            conditions[4],
            json!({"x-amz-credential": "SANDBOXKEY/20260102/us-east-1/s3/aws4_request"})
        );
    }

    #[test]
    fn an_issued_form_passes_and_grants_its_key_and_range() {
        let grant = creds()
            .check_post_form("b", &form(&issued()), at("2026-01-02T03:30:00Z"))
            .unwrap();
        assert_eq!(
            grant,
            PostGrant {
                key: "uploads/1".into(),
                min_bytes: 1,
                max_bytes: 100,
                success_action_status: None
            }
        );
    }

    #[test]
    fn a_tampered_signature_or_policy_does_not_match() {
        let mut fields = issued();
        let flipped = if fields[5].1.starts_with('0') {
            "1"
        } else {
            "0"
        };
        fields[5].1.replace_range(0..1, flipped);
        let err = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(err.code, "SignatureDoesNotMatch");

        let mut fields = issued();
        fields[4].1 = BASE64.encode(r#"{"expiration":"2099-01-01T00:00:00Z","conditions":[]}"#);
        let err = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(err.code, "SignatureDoesNotMatch");
    }

    #[test]
    fn a_different_secret_does_not_match() {
        let other = Credentials {
            secret_key: "other".into(),
            ..creds()
        };
        let err = other
            .check_post_form("b", &form(&issued()), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(err.code, "SignatureDoesNotMatch");
    }

    #[test]
    fn a_policy_past_its_expiration_is_refused() {
        let err = creds()
            .check_post_form("b", &form(&issued()), at("2026-01-02T04:04:06Z"))
            .unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert_eq!(err.code, "AccessDenied");
        assert_eq!(err.message, "Invalid according to Policy: Policy expired.");
    }

    #[test]
    fn another_key_or_bucket_fails_its_condition() {
        let mut fields = issued();
        fields[0].1 = "uploads/2".into();
        let err = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(
            err.message,
            r#"Invalid according to Policy: Policy Condition failed: ["eq", "$key", "uploads/1"]"#
        );
        let err = creds()
            .check_post_form("c", &form(&issued()), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert!(err.message.contains(r#"["eq", "$bucket", "b"]"#), "{err:?}");
    }

    #[test]
    fn fields_the_policy_does_not_name_are_refused_unless_x_ignore() {
        let mut fields = issued();
        fields.insert(0, ("Content-Type".into(), "audio/wav".into()));
        fields.insert(0, ("x-ignore-me".into(), "1".into()));
        let err = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(
            err.message,
            "Invalid according to Policy: Extra input fields: content-type"
        );
    }

    #[test]
    fn a_missing_field_names_itself_and_hints_at_field_order() {
        let fields: Vec<_> = issued().into_iter().skip(1).collect();
        let err = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:30:00Z"))
            .unwrap_err();
        assert_eq!(err.code, "InvalidArgument");
        assert!(
            err.message
                .starts_with("Bucket POST must contain a field named 'key'."),
            "{err:?}"
        );
    }

    #[test]
    fn success_action_status_is_issued_as_a_covered_field() {
        let fields = creds().presign_post("b", "k", at("2026-01-02T03:04:05Z"), 60, 9, Some(201));
        assert_eq!(fields[0], ("success_action_status".into(), "201".into()));
        let grant = creds()
            .check_post_form("b", &form(&fields), at("2026-01-02T03:04:05Z"))
            .unwrap();
        assert_eq!(grant.success_action_status, Some(201));
    }

    fn put_request(query: &str) -> (Vec<(String, String)>, HeaderMap) {
        let pairs = query
            .split('&')
            .map(|pair| {
                let (n, v) = pair.split_once('=').unwrap();
                (n.to_string(), v.replace("%2F", "/"))
            })
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:9"));
        (pairs, headers)
    }

    #[test]
    fn a_presigned_put_url_verifies_until_it_expires() {
        let now = at("2026-01-02T03:04:05Z");
        let query = creds().presign_put("127.0.0.1:9", "/s3/b/uploads/1", now, 60);
        assert!(
            query
                .contains("X-Amz-Credential=SANDBOXKEY%2F20260102%2Fus-east-1%2Fs3%2Faws4_request")
        );
        let (pairs, headers) = put_request(&query);
        let check =
            |path: &str, host: &HeaderMap, t| creds().check_presigned("PUT", path, &pairs, host, t);
        assert!(check("/s3/b/uploads/1", &headers, now).is_ok());
        assert!(check("/s3/b/uploads/1", &headers, at("2026-01-02T03:05:05Z")).is_ok());
        let late = check("/s3/b/uploads/1", &headers, at("2026-01-02T03:05:06Z")).unwrap_err();
        assert_eq!(
            (late.code, late.message.as_str()),
            ("AccessDenied", "Request has expired")
        );
        let moved = check("/s3/b/uploads/2", &headers, now).unwrap_err();
        assert_eq!(moved.code, "SignatureDoesNotMatch");
        let mut elsewhere = headers.clone();
        elsewhere.insert("host", HeaderValue::from_static("example.com"));
        assert_eq!(
            check("/s3/b/uploads/1", &elsewhere, now).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
        assert!(
            creds()
                .check_presigned("GET", "/s3/b/uploads/1", &pairs, &headers, now)
                .is_err()
        );
    }

    #[test]
    fn a_put_url_without_its_parameters_is_refused_like_s3_does() {
        let headers = HeaderMap::new();
        let now = at("2026-01-02T03:04:05Z");
        let err = creds()
            .check_presigned("PUT", "/s3/b/k", &[], &headers, now)
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            ("AccessDenied", "Access Denied")
        );
        let some = vec![("X-Amz-Date".to_string(), "20260102T030405Z".to_string())];
        let err = creds()
            .check_presigned("PUT", "/s3/b/k", &some, &headers, now)
            .unwrap_err();
        assert_eq!(err.code, "AuthorizationQueryParametersError");
    }

    // Generated with botocore 1.43 (`generate_presigned_url("put_object", ...)` and
    // `generate_presigned_post(...)`, endpoint http://127.0.0.1:9/s3, path style, key
    // SANDBOXKEY / secret), so that what real S3 tooling signs is what the sandbox accepts.
    const BOTOCORE_PUT_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=SANDBOXKEY%2F20261128%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261128T142435Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=2630ea6447072ab8d385aff1cfddbd382cd9e12bffc4a8b4f6a1460f8ef9f68b";
    const BOTOCORE_POLICY: &str = "eyJleHBpcmF0aW9uIjogIjIwMjYtMTEtMjhUMTU6MjQ6MzVaIiwgImNvbmRpdGlvbnMiOiBbWyJjb250ZW50LWxlbmd0aC1yYW5nZSIsIDEsIDEwMF0sIHsiYnVja2V0IjogImIifSwgeyJrZXkiOiAidXBsb2Fkcy8xIn0sIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwgeyJ4LWFtei1jcmVkZW50aWFsIjogIlNBTkRCT1hLRVkvMjAyNjExMjgvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LCB7IngtYW16LWRhdGUiOiAiMjAyNjExMjhUMTQyNDM1WiJ9XX0=";

    #[test]
    fn a_put_url_presigned_by_botocore_verifies_and_ours_is_the_same_url() {
        let now = at("2026-11-28T14:24:35Z");
        let (pairs, headers) = put_request(BOTOCORE_PUT_QUERY);
        creds()
            .check_presigned("PUT", "/s3/b/uploads/1", &pairs, &headers, now)
            .unwrap();
        assert_eq!(
            creds().presign_put("127.0.0.1:9", "/s3/b/uploads/1", now, 60),
            BOTOCORE_PUT_QUERY
        );
    }

    #[test]
    fn a_post_policy_signed_by_botocore_verifies() {
        let fields: Vec<(String, String)> = [
            ("key", "uploads/1"),
            ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
            (
                "x-amz-credential",
                "SANDBOXKEY/20261128/us-east-1/s3/aws4_request",
            ),
            ("x-amz-date", "20261128T142435Z"),
            ("policy", BOTOCORE_POLICY),
            (
                "x-amz-signature",
                "d5f976e3c8b7d6019c19143fefaf03ac53feb5b4aae29ad3236e088560722ec8",
            ),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let grant = creds()
            .check_post_form("b", &fields, at("2026-11-28T15:00:00Z"))
            .unwrap();
        assert_eq!(
            (grant.key.as_str(), grant.min_bytes, grant.max_bytes),
            ("uploads/1", 1, 100)
        );
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_characters() {
        assert_eq!(uri_encode("a/b c+~", true), "a/b%20c%2B~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}

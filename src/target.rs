//! What call 1 hands out for a row: the conversation id Voyc gave it, and the presigned S3
//! target its audio goes to. The journal keeps both, the client reads them from call 1's answer
//! (`upload::response`) and the upload sends to the target.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The id Voyc gives a conversation (a string, or a number written as text).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(pub String);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the audio goes: S3's two ways of accepting a presigned upload.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "lowercase")]
pub enum UploadTarget {
    /// `multipart/form-data` to `url`: every field in the order given, then the file.
    Post {
        #[serde(with = "url_text")]
        url: Url,
        fields: Vec<(String, String)>,
    },
    /// The bytes as the body of a PUT to `url` (the signature is in its query).
    Put {
        #[serde(with = "url_text")]
        url: Url,
    },
}

impl UploadTarget {
    pub fn url(&self) -> &Url {
        match self {
            UploadTarget::Post { url, .. } | UploadTarget::Put { url } => url,
        }
    }

    /// `presigned POST` / `presigned PUT`, for messages.
    pub fn style(&self) -> &'static str {
        match self {
            UploadTarget::Post { .. } => "presigned POST",
            UploadTarget::Put { .. } => "presigned PUT",
        }
    }

    /// When the signature stops being valid, if the target says: the POST policy's
    /// `expiration`, or a PUT URL's `X-Amz-Date` + `X-Amz-Expires` (or SigV2 `Expires`).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            UploadTarget::Post { fields, .. } => fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("policy"))
                .and_then(|(_, policy)| policy_expiration(policy)),
            UploadTarget::Put { url } => presigned_url_expiration(url),
        }
    }
}

/// Never prints field values or the URL's query: they hold signatures.
impl fmt::Debug for UploadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = match self {
            UploadTarget::Post { fields, .. } => fields.iter().map(|(n, _)| n.as_str()).collect(),
            UploadTarget::Put { .. } => Vec::new(),
        };
        write!(
            f,
            "{} to {} (fields: {})",
            self.style(),
            without_query(self.url()),
            names.join(", ")
        )
    }
}

/// URLs as plain text in the journal's JSON.
mod url_text {
    use reqwest::Url;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
        let text = String::deserialize(deserializer)?;
        Url::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A URL for messages: scheme, host, port and path, without the query that holds signatures.
pub fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// A POST policy is base64 JSON with `"expiration": "2024-05-01T12:00:00.000Z"`.
fn policy_expiration(policy: &str) -> Option<DateTime<Utc>> {
    let json = base64::engine::general_purpose::STANDARD
        .decode(policy.trim())
        .ok()?;
    let policy: Value = serde_json::from_slice(&json).ok()?;
    let expiration = policy.get("expiration")?.as_str()?;
    DateTime::parse_from_rfc3339(expiration)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// SigV4: `X-Amz-Date=20240501T120000Z&X-Amz-Expires=3600`; SigV2: `Expires=<unix seconds>`.
fn presigned_url_expiration(url: &Url) -> Option<DateTime<Utc>> {
    let mut date = None;
    let mut expires = None;
    let mut v2_expires = None;
    for (name, value) in url.query_pairs() {
        if name.eq_ignore_ascii_case("X-Amz-Date") {
            date = NaiveDateTime::parse_from_str(&value, "%Y%m%dT%H%M%SZ").ok();
        } else if name.eq_ignore_ascii_case("X-Amz-Expires") {
            expires = value.parse::<i64>().ok();
        } else if name == "Expires" {
            v2_expires = value.parse::<i64>().ok();
        }
    }
    match (date, expires, v2_expires) {
        (Some(date), Some(seconds), _) => {
            Some(Utc.from_utc_datetime(&date) + chrono::Duration::seconds(seconds))
        }
        (_, _, Some(epoch)) => DateTime::from_timestamp(epoch, 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_round_trips_through_json_for_the_journal() {
        let target = UploadTarget::Post {
            url: Url::parse("https://s3.test/b").unwrap(),
            fields: vec![("key".into(), "k".into()), ("policy".into(), "p".into())],
        };
        let json = serde_json::to_string(&target).unwrap();
        assert_eq!(serde_json::from_str::<UploadTarget>(&json).unwrap(), target);
        let put = UploadTarget::Put {
            url: Url::parse("https://s3.test/b/k?sig=1").unwrap(),
        };
        let json = serde_json::to_string(&put).unwrap();
        assert_eq!(serde_json::from_str::<UploadTarget>(&json).unwrap(), put);
    }

    #[test]
    fn debug_output_hides_signatures() {
        let target = UploadTarget::Put {
            url: Url::parse("https://s3.test/b/k?X-Amz-Signature=SECRET").unwrap(),
        };
        let debug = format!("{target:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert_eq!(debug, "presigned PUT to https://s3.test/b/k (fields: )");
    }
}

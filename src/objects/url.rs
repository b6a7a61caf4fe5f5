//! `s3://BUCKET/KEY` as a manifest or `--base-dir` writes it: parsed, checked, and joined
//! with a relative path. The key is taken literally (as the AWS CLI does: `%20` is three
//! characters, not a space).

use std::fmt;

/// An object's address: its bucket and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectUrl {
    pub bucket: String,
    pub key: String,
}

/// Schemes of object stores that voyc-import knows of, and whether it reads them.
const OTHER_SCHEMES: [&str; 7] = ["gs", "az", "azure", "abfs", "abfss", "http", "https"];

/// Whether `text` is written as a URL of an object store (`s3://`, `gs://`, `az://`, ...)
/// rather than a local path: such a value is never looked for on disk.
pub fn is_object_url(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, _)) => {
            let scheme = scheme.to_ascii_lowercase();
            scheme == "s3" || OTHER_SCHEMES.contains(&scheme.as_str())
        }
        None => false,
    }
}

impl ObjectUrl {
    /// `s3://BUCKET/KEY`; `Err` says what is wrong, for the row's `file` column.
    pub fn parse(text: &str) -> Result<ObjectUrl, String> {
        let (bucket, key) = split(text)?;
        check_key(&key)?;
        if key.ends_with('/') {
            return Err(
                "names a folder (a prefix ending in /), not an object: name the recording itself"
                    .into(),
            );
        }
        Ok(ObjectUrl { bucket, key })
    }

    /// `s3://BUCKET/PREFIX/` for `--base-dir`: relative paths become keys under the prefix
    /// (which may be empty: the bucket's top).
    pub fn parse_prefix(text: &str) -> Result<ObjectUrl, String> {
        let (bucket, mut key) = split(text)?;
        if !key.is_empty() {
            if !key.ends_with('/') {
                key.push('/');
            }
            check_key(&key[..key.len() - 1])?;
        }
        Ok(ObjectUrl { bucket, key })
    }

    /// The object a relative path names under this prefix: `./` and `a/..` folded away as a
    /// person reads them; `Err` if it climbs out of the bucket or names no object.
    pub fn join(&self, relative: &str) -> Result<ObjectUrl, String> {
        let mut parts: Vec<&str> = self.key.split('/').filter(|p| !p.is_empty()).collect();
        let segments: Vec<&str> = relative.split('/').collect();
        for (i, part) in segments.iter().enumerate() {
            match *part {
                "" | "." if i + 1 < segments.len() => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(format!(
                            "climbs above the top of the bucket s3://{} (--base-dir)",
                            self.bucket
                        ));
                    }
                }
                part => parts.push(part),
            }
        }
        ObjectUrl::parse(&format!("s3://{}/{}", self.bucket, parts.join("/")))
    }
}

fn split(text: &str) -> Result<(String, String), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("expected s3://BUCKET/KEY".into());
    };
    if !scheme.eq_ignore_ascii_case("s3") {
        return Err(format!(
            "{scheme}:// is not supported: only s3:// (Amazon S3 and S3-compatible stores) is, yet; copy the recordings to S3 or to a local folder"
        ));
    }
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("expected s3://BUCKET/KEY: the bucket is missing".into());
    }
    let valid_bucket = bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_bucket || bucket.len() > 255 {
        return Err(format!(
            "{:?} is not a bucket name: expected letters, digits, dots and hyphens",
            crate::human::one_line(bucket)
        ));
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// What object_store can address: no empty, `.` or `..` segment, no control character.
fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("expected s3://BUCKET/KEY: the key is missing".into());
    }
    if key.chars().any(char::is_control) {
        return Err(
            "an object key with a control character (a line break, a tab) cannot be read here"
                .into(),
        );
    }
    let body = key.strip_suffix('/').unwrap_or(key);
    if body
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(
            "an object key with an empty, . or .. segment (//, /./, /../) cannot be read here"
                .into(),
        );
    }
    Ok(())
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> ObjectUrl {
        ObjectUrl::parse(text).unwrap()
    }

    #[test]
    fn a_url_is_its_bucket_and_its_key_taken_literally() {
        let parsed = url("s3://connect-recordings/connect/i-1/CallRecordings/2024/05/01/a%20b.wav");
        assert_eq!(parsed.bucket, "connect-recordings");
        assert_eq!(
            parsed.key,
            "connect/i-1/CallRecordings/2024/05/01/a%20b.wav"
        );
        assert_eq!(
            parsed.to_string(),
            "s3://connect-recordings/connect/i-1/CallRecordings/2024/05/01/a%20b.wav"
        );
        assert_eq!(url("S3://b/k with space.wav").key, "k with space.wav");
    }

    #[test]
    fn what_cannot_be_an_object_is_said() {
        let err = |text: &str| ObjectUrl::parse(text).unwrap_err();
        assert_eq!(
            err("s3://"),
            "expected s3://BUCKET/KEY: the bucket is missing"
        );
        assert_eq!(
            err("s3://bucket"),
            "expected s3://BUCKET/KEY: the key is missing"
        );
        assert_eq!(
            err("s3://bucket/"),
            "expected s3://BUCKET/KEY: the key is missing"
        );
        assert!(err("s3://bucket/calls/").starts_with("names a folder"));
        assert!(err("s3://bucket//a.wav").contains("empty, . or .. segment"));
        assert!(err("s3://bucket/a/../b.wav").contains("empty, . or .. segment"));
        assert!(err("s3://bu cket/a.wav").contains("is not a bucket name"));
        assert!(err("s3://b/a\n.wav").contains("control character"));
    }

    #[test]
    fn other_stores_are_refused_with_what_is_supported() {
        for text in ["gs://b/a.wav", "az://c/a.wav", "https://example.com/a.wav"] {
            assert!(is_object_url(text), "{text}");
            let err = ObjectUrl::parse(text).unwrap_err();
            assert!(err.contains("only s3://"), "{err}");
        }
        assert!(!is_object_url("calls/a.wav"));
        assert!(!is_object_url("C:\\calls\\a.wav"));
        assert!(is_object_url("s3://b/k"));
    }

    #[test]
    fn a_relative_path_joins_a_prefix_as_a_person_reads_it() {
        let prefix = ObjectUrl::parse_prefix("s3://b/connect/2024").unwrap();
        assert_eq!(prefix.key, "connect/2024/");
        assert_eq!(
            prefix.join("05/a.wav").unwrap().to_string(),
            "s3://b/connect/2024/05/a.wav"
        );
        assert_eq!(
            prefix.join("./05/./a.wav").unwrap().key,
            "connect/2024/05/a.wav"
        );
        assert_eq!(
            prefix.join("../2023/a.wav").unwrap().key,
            "connect/2023/a.wav"
        );
        let top = ObjectUrl::parse_prefix("s3://b").unwrap();
        assert_eq!(top.key, "");
        assert_eq!(top.join("a.wav").unwrap().to_string(), "s3://b/a.wav");
        assert!(
            top.join("../a.wav")
                .unwrap_err()
                .contains("climbs above the top")
        );
        assert!(
            top.join("calls/")
                .unwrap_err()
                .starts_with("names a folder")
        );
    }
}

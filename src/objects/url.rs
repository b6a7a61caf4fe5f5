//! `s3://BUCKET/KEY`, `gs://BUCKET/OBJECT` and `az://CONTAINER/BLOB` as a manifest or
//! `--base-dir` writes them: parsed, checked, and joined with a relative path. The key is
//! taken literally (as the AWS CLI and gsutil do: `%20` is three characters, not a space).

use std::fmt;

/// Which object store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// `s3://`: Amazon S3 and S3-compatible stores (MinIO, SeaweedFS, ...).
    S3,
    /// `gs://`: Google Cloud Storage.
    Gs,
    /// `az://`: Azure Blob Storage, the account from `AZURE_STORAGE_ACCOUNT_NAME`.
    Az,
}

impl Scheme {
    fn of(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "s3" => Some(Scheme::S3),
            "gs" => Some(Scheme::Gs),
            "az" => Some(Scheme::Az),
            _ => None,
        }
    }

    /// `s3`, `gs` or `az`: what goes before `://`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gs => "gs",
            Scheme::Az => "az",
        }
    }

    /// What the store calls the thing an object is in: a bucket, or (Azure) a container.
    pub fn bucket_word(self) -> &'static str {
        match self {
            Scheme::S3 | Scheme::Gs => "bucket",
            Scheme::Az => "container",
        }
    }

    /// `s3://BUCKET/KEY`, as the messages show the form of a URL.
    fn form(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://BUCKET/KEY",
            Scheme::Gs => "gs://BUCKET/OBJECT",
            Scheme::Az => "az://CONTAINER/BLOB",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An object's address: its store, bucket (container) and key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectUrl {
    pub scheme: Scheme,
    pub bucket: String,
    pub key: String,
}

/// Schemes of object stores that voyc-import knows of but does not read: such a value is an
/// error on its row, never a local path.
const OTHER_SCHEMES: [&str; 5] = ["azure", "abfs", "abfss", "http", "https"];

/// Whether `text` is written as a URL of an object store (`s3://`, `gs://`, `az://`, ...)
/// rather than a local path: such a value is never looked for on disk.
pub fn is_object_url(text: &str) -> bool {
    match text.split_once("://") {
        Some((scheme, _)) => {
            Scheme::of(scheme).is_some()
                || OTHER_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
        }
        None => false,
    }
}

impl ObjectUrl {
    /// `s3://BUCKET/KEY` (or `gs://`, `az://`); `Err` says what is wrong, for the row's `file`
    /// column.
    pub fn parse(text: &str) -> Result<ObjectUrl, String> {
        let (scheme, bucket, key) = split(text)?;
        check_key(scheme, &key)?;
        if key.ends_with('/') {
            return Err(
                "names a folder (a prefix ending in /), not an object: name the recording itself"
                    .into(),
            );
        }
        Ok(ObjectUrl {
            scheme,
            bucket,
            key,
        })
    }

    /// `s3://BUCKET/PREFIX/` (or `gs://`, `az://`) for `--base-dir`: relative paths become keys under the prefix
    /// (which may be empty: the bucket's top).
    pub fn parse_prefix(text: &str) -> Result<ObjectUrl, String> {
        let (scheme, bucket, mut key) = split(text)?;
        if !key.is_empty() {
            if !key.ends_with('/') {
                key.push('/');
            }
            check_key(scheme, &key[..key.len() - 1])?;
        }
        Ok(ObjectUrl {
            scheme,
            bucket,
            key,
        })
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
                            "climbs above the top of the {} {} (--base-dir)",
                            self.scheme.bucket_word(),
                            self.top()
                        ));
                    }
                }
                part => parts.push(part),
            }
        }
        ObjectUrl::parse(&format!("{}{}", self.top(), parts.join("/")))
    }

    /// The bucket's (container's) own URL: `s3://BUCKET/`.
    pub fn top(&self) -> String {
        format!("{}://{}/", self.scheme, self.bucket)
    }
}

fn split(text: &str) -> Result<(Scheme, String, String), String> {
    let Some((given, rest)) = text.split_once("://") else {
        return Err("expected s3://BUCKET/KEY, gs://BUCKET/OBJECT or az://CONTAINER/BLOB".into());
    };
    let Some(scheme) = Scheme::of(given) else {
        let lower = given.to_ascii_lowercase();
        return Err(match lower.as_str() {
            "azure" | "abfs" | "abfss" => format!(
                "{given}:// is not supported: write an Azure blob as az://CONTAINER/BLOB (the account from AZURE_STORAGE_ACCOUNT_NAME)"
            ),
            _ => format!(
                "{given}:// is not supported: only s3:// (Amazon S3 and S3-compatible stores), gs:// (Google Cloud Storage) and az:// (Azure Blob Storage) are; copy the recordings to one of them or to a local folder"
            ),
        });
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "expected {}: the {} is missing",
            scheme.form(),
            scheme.bucket_word()
        ));
    }
    let valid_bucket = bucket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_bucket || bucket.len() > 255 {
        return Err(format!(
            "{:?} is not a {} name: expected letters, digits, dots and hyphens",
            crate::human::one_line(bucket),
            scheme.bucket_word()
        ));
    }
    Ok((scheme, bucket.to_string(), key.to_string()))
}

/// What object_store can address: no empty, `.` or `..` segment, no control character.
fn check_key(scheme: Scheme, key: &str) -> Result<(), String> {
    if key.is_empty() {
        let what = match scheme {
            Scheme::S3 => "key",
            Scheme::Gs => "object name",
            Scheme::Az => "blob name",
        };
        return Err(format!("expected {}: the {what} is missing", scheme.form()));
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
        write!(f, "{}://{}/{}", self.scheme, self.bucket, self.key)
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
    fn google_and_azure_urls_name_their_store() {
        let gs = url("gs://call-archive/2024/05/a.wav");
        assert_eq!(
            (gs.scheme, gs.bucket.as_str(), gs.key.as_str()),
            (Scheme::Gs, "call-archive", "2024/05/a.wav")
        );
        assert_eq!(gs.to_string(), "gs://call-archive/2024/05/a.wav");
        let az = url("AZ://recordings/2024/a.wav");
        assert_eq!(az.scheme, Scheme::Az);
        assert_eq!(az.to_string(), "az://recordings/2024/a.wav");
        // The same bucket and key in two stores are two objects.
        assert_ne!(url("s3://b/k.wav"), url("gs://b/k.wav"));
        assert_eq!(
            ObjectUrl::parse("az://recordings").unwrap_err(),
            "expected az://CONTAINER/BLOB: the blob name is missing"
        );
        assert_eq!(
            ObjectUrl::parse("gs:///a.wav").unwrap_err(),
            "expected gs://BUCKET/OBJECT: the bucket is missing"
        );
        let prefix = ObjectUrl::parse_prefix("az://recordings").unwrap();
        assert_eq!(
            prefix.join("2024/a.wav").unwrap().to_string(),
            "az://recordings/2024/a.wav"
        );
        assert_eq!(
            prefix.join("../a.wav").unwrap_err(),
            "climbs above the top of the container az://recordings/ (--base-dir)"
        );
    }

    #[test]
    fn other_stores_are_refused_with_what_is_supported() {
        for text in ["https://example.com/a.wav", "http://127.0.0.1/a.wav"] {
            assert!(is_object_url(text), "{text}");
            let err = ObjectUrl::parse(text).unwrap_err();
            assert!(
                err.contains("only s3:// (Amazon S3 and S3-compatible stores), gs://"),
                "{err}"
            );
        }
        for text in [
            "azure://c/a.wav",
            "abfss://c@acct.dfs.core.windows.net/a.wav",
        ] {
            assert!(is_object_url(text), "{text}");
            let err = ObjectUrl::parse(text).unwrap_err();
            assert!(
                err.contains("write an Azure blob as az://CONTAINER/BLOB"),
                "{err}"
            );
        }
        assert!(!is_object_url("calls/a.wav"));
        assert!(!is_object_url("C:\\calls\\a.wav"));
        for text in ["s3://b/k", "gs://b/k", "az://c/k"] {
            assert!(is_object_url(text), "{text}");
        }
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

//! The bearer token: read from `VOYC_TOKEN` or `--token-file` only, and never shown.
//!
//! The token lives in one newtype whose `Debug` and `Display` print `<redacted>`, so no
//! error chain, log line, report, journal or panic message can carry it by accident. The
//! only way out is [`Token::authorization`], a header value marked sensitive.

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use reqwest::header::HeaderValue;

/// The environment variable the token is read from when `--token-file` is not given.
pub const TOKEN_ENV: &str = "VOYC_TOKEN";

/// A bearer token. Its text never leaves this type except as an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Reads the token from `--token-file` when given, else from `VOYC_TOKEN`.
    pub fn load(token_file: Option<&Path>) -> anyhow::Result<Token> {
        match token_file {
            Some(path) => Token::from_file(path),
            None => match std::env::var(TOKEN_ENV) {
                Ok(text) => Token::parse(&text)
                    .with_context(|| format!("the token in ${TOKEN_ENV} cannot be used")),
                Err(std::env::VarError::NotPresent) => bail!(
                    "no token: set {TOKEN_ENV} or pass --token-file PATH (the token is never taken as a plain argument)"
                ),
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("the token in ${TOKEN_ENV} is not valid UTF-8")
                }
            },
        }
    }

    /// Reads the token from a file: surrounding whitespace (a trailing newline) is dropped.
    pub fn from_file(path: &Path) -> anyhow::Result<Token> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("the token file {} is not UTF-8 text", path.display()))?;
        Token::parse(&text)
            .with_context(|| format!("the token file {} cannot be used", path.display()))
    }

    /// Checks a token's text: trimmed, not empty, and fit for an HTTP header.
    /// Errors never quote the text.
    pub fn parse(text: &str) -> anyhow::Result<Token> {
        let text = text.trim();
        if text.is_empty() {
            bail!("it is empty");
        }
        if let Some(position) = text.find(|c: char| !(c.is_ascii_graphic() || c == ' ')) {
            bail!(
                "it holds a character that cannot go in an HTTP header (at byte {})",
                position + 1
            );
        }
        Ok(Token(text.to_string()))
    }

    /// `Bearer <token>`, marked sensitive so HTTP libraries never log it.
    pub fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .expect("Token::parse admits only header-safe characters");
        value.set_sensitive(true);
        value
    }

    /// True when `haystack` holds the token; for tests that prove it leaked nowhere.
    pub fn appears_in(&self, haystack: &[u8]) -> bool {
        haystack
            .windows(self.0.len())
            .any(|window| window == self.0.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_trimmed_and_never_printed() {
        let token = Token::parse("  s3cr3t-value\n").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(token.to_string(), "<redacted>");
        assert!(!format!("{:?}", Some(&token)).contains("s3cr3t"));
        assert!(token.appears_in(b"xx s3cr3t-value xx"));
        assert!(!token.appears_in(b"  s3cr3t-value\n"[..9].as_ref()));
    }

    #[test]
    fn the_authorization_header_is_bearer_and_sensitive() {
        let value = Token::parse("abc").unwrap().authorization();
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("abc"));
    }

    #[test]
    fn an_empty_token_is_refused() {
        let err = Token::parse(" \n\t").unwrap_err();
        assert_eq!(err.to_string(), "it is empty");
    }

    #[test]
    fn a_token_with_a_newline_inside_is_refused_without_quoting_it() {
        let err = Token::parse("abc\ndef").unwrap_err().to_string();
        assert!(err.contains("byte 4"), "{err}");
        assert!(!err.contains("abc") && !err.contains("def"), "{err}");
    }

    #[test]
    fn a_token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "file-token\r\n").unwrap();
        let token = Token::from_file(&path).unwrap();
        assert_eq!(token.authorization().to_str().unwrap(), "Bearer file-token");

        std::fs::write(&path, "\n").unwrap();
        let err = format!("{:#}", Token::from_file(&path).unwrap_err());
        assert!(err.contains("is empty") && err.contains("token"), "{err}");

        let err = format!(
            "{:#}",
            Token::from_file(&dir.path().join("nope")).unwrap_err()
        );
        assert!(err.starts_with("cannot read the token file"), "{err}");
    }
}

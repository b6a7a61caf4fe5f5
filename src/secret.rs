//! The bearer token: read from `VOYC_TOKEN`, `--token-file` or `--token-command` only, and
//! never shown.
//!
//! The token lives in one newtype whose `Debug` and `Display` print `<redacted>`, so no
//! error chain, log line, report, journal or panic message can carry it by accident. The
//! only way out is [`Token::authorization`], a header value marked sensitive.
//!
//! `--token-command` (a vault's CLI) is run at start and, through [`Credentials`], once more
//! when call 1 refuses the token: one run of the command for all workers, however many were
//! refused at once.

use std::fmt;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
                    "no token: set {TOKEN_ENV} or pass --token-file PATH or --token-command CMD (the token is never taken as a plain argument)"
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

/// How long `--token-command` may take before it is killed and counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The most `--token-command` may print: a token is a few hundred bytes.
const MAX_COMMAND_OUTPUT: u64 = 64 << 10;

/// `--token-command`: a shell command whose stdout is the token. Its stderr passes through (a
/// vault's own messages); its stdout is never shown, not even in an error.
#[derive(Clone, Debug)]
pub struct TokenCommand(String);

impl TokenCommand {
    pub fn new(command: &str) -> anyhow::Result<TokenCommand> {
        if command.trim().is_empty() {
            bail!("--token-command is empty; give the command that prints the token");
        }
        Ok(TokenCommand(command.to_string()))
    }

    /// Runs the command (`sh -c`, `cmd /C` on Windows) with no stdin and reads the token from
    /// its stdout, surrounding whitespace (the trailing newline) dropped.
    pub fn run(&self) -> anyhow::Result<Token> {
        let mut child = shell(&self.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("--token-command could not be started")?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = (&mut stdout)
                .take(MAX_COMMAND_OUTPUT + 1)
                .read_to_end(&mut bytes);
            // Whatever else it prints is drained, so that it never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
            read.map(|_| bytes)
        });
        let status = wait_at_most(&mut child, COMMAND_TIMEOUT)?;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "--token-command did not finish within {}s, so it was stopped",
                COMMAND_TIMEOUT.as_secs()
            );
        };
        let bytes = reader
            .join()
            .map_err(|_| anyhow::anyhow!("cannot read --token-command's output"))?
            .context("cannot read --token-command's output")?;
        if !status.success() {
            bail!(
                "--token-command failed with {} (its output is not shown; its messages, if any, are above)",
                describe(status)
            );
        }
        if bytes.len() as u64 > MAX_COMMAND_OUTPUT {
            bail!("--token-command printed more than 64 KiB, which is not a token");
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            anyhow::anyhow!("--token-command printed something that is not UTF-8 text")
        })?;
        if text.trim().is_empty() {
            bail!("--token-command exited 0 but printed nothing on stdout, so there is no token");
        }
        Token::parse(&text).context("the token --token-command printed cannot be used")
    }
}

fn shell(command: &str) -> Command {
    #[cfg(windows)]
    {
        let mut shell = Command::new("cmd");
        shell.args(["/C", command]);
        shell
    }
    #[cfg(not(windows))]
    {
        let mut shell = Command::new("sh");
        shell.args(["-c", command]);
        shell
    }
}

/// Waits for the child; `None` if it is still running after `limit`.
fn wait_at_most(
    child: &mut std::process::Child,
    limit: Duration,
) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    let mut poll = Duration::from_millis(1);
    loop {
        if let Some(status) = child
            .try_wait()
            .context("cannot wait for --token-command")?
        {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(50));
    }
}

/// `exit status 3`, or `signal 9` on Unix.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return format!("signal {signal}");
    }
    status.to_string()
}

/// The token a run sends, and whether a fresh one may be fetched once a call refuses it:
/// with `--token-command`, once in the run. Each token has a generation (0 at start), so that a
/// worker refused with an old token takes the fresh one another worker already fetched.
#[derive(Debug)]
pub struct Credentials {
    current: std::sync::Mutex<(u64, Token)>,
    command: Option<TokenCommand>,
    /// Whether the one refresh has been spent; held while it runs, so others wait for it.
    refreshed: tokio::sync::Mutex<bool>,
}

impl Credentials {
    /// A token that is all there is (`VOYC_TOKEN`, `--token-file`).
    pub fn fixed(token: Token) -> Credentials {
        Credentials {
            current: std::sync::Mutex::new((0, token)),
            command: None,
            refreshed: tokio::sync::Mutex::new(true),
        }
    }

    /// The token `command` printed at start, and the command to fetch a fresh one once.
    pub fn from_command(token: Token, command: TokenCommand) -> Credentials {
        Credentials {
            current: std::sync::Mutex::new((0, token)),
            command: Some(command),
            refreshed: tokio::sync::Mutex::new(false),
        }
    }

    /// Where the token comes from, for messages: `VOYC_TOKEN or --token-file`.
    pub fn source(&self) -> &'static str {
        match self.command {
            Some(_) => "--token-command",
            None => "VOYC_TOKEN or --token-file",
        }
    }

    /// The token to send now, and its generation.
    pub fn current(&self) -> (u64, Token) {
        self.current.lock().expect("credentials").clone()
    }

    /// After a call refused the token of `generation`: the token to try again with, if there
    /// is one (`Ok(None)`: there is none, the refusal stands). The first caller runs
    /// `--token-command` (once per run); those refused meanwhile wait for it and take its token.
    pub async fn after_refusal(&self, generation: u64) -> Result<Option<(u64, Token)>, String> {
        let mut refreshed = self.refreshed.lock().await;
        let (now, token) = self.current();
        if now > generation {
            return Ok(Some((now, token)));
        }
        let Some(command) = self.command.clone().filter(|_| !*refreshed) else {
            return Ok(None);
        };
        *refreshed = true;
        let fresh = tokio::task::spawn_blocking(move || command.run())
            .await
            .map_err(|_| "--token-command could not be run".to_string())?
            .map_err(|err| format!("{err:#}"))?;
        *self.current.lock().expect("credentials") = (generation + 1, fresh.clone());
        Ok(Some((generation + 1, fresh)))
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

    /// A command that counts its runs in `count` and prints `tokens[run - 1]` (the last one
    /// after that).
    #[cfg(unix)]
    fn counting(dir: &Path, tokens: &[&str]) -> TokenCommand {
        let count = dir.join("count");
        let mut script = format!(
            "n=$(cat '{0}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '{0}'\n",
            count.display()
        );
        for (i, token) in tokens.iter().enumerate() {
            script.push_str(&format!(
                "if [ $n -le {} ]; then echo {token}; exit 0; fi\n",
                i + 1
            ));
        }
        script.push_str(&format!("echo {}\n", tokens.last().unwrap()));
        let path = dir.join("token.sh");
        std::fs::write(&path, script).unwrap();
        TokenCommand::new(&format!("sh '{}'", path.display())).unwrap()
    }

    #[cfg(unix)]
    fn runs(dir: &Path) -> u32 {
        std::fs::read_to_string(dir.join("count"))
            .map(|text| text.trim().parse().unwrap())
            .unwrap_or(0)
    }

    #[cfg(unix)]
    #[test]
    fn a_token_command_prints_the_token_and_its_failures_never_show_its_output() {
        let token = TokenCommand::new("printf 'vault-token\\n'")
            .unwrap()
            .run()
            .unwrap();
        assert_eq!(
            token.authorization().to_str().unwrap(),
            "Bearer vault-token"
        );

        let err = format!(
            "{:#}",
            TokenCommand::new("echo s3cr3t; exit 3")
                .unwrap()
                .run()
                .unwrap_err()
        );
        assert!(err.contains("failed with exit status 3"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");

        let err = format!(
            "{:#}",
            TokenCommand::new("true").unwrap().run().unwrap_err()
        );
        assert!(err.contains("printed nothing on stdout"), "{err}");

        let err = format!(
            "{:#}",
            TokenCommand::new("printf 'ab\\ncd'")
                .unwrap()
                .run()
                .unwrap_err()
        );
        assert!(err.contains("cannot go in an HTTP header"), "{err}");
        assert!(!err.contains("cd"), "{err}");

        let err = format!(
            "{:#}",
            TokenCommand::new("kill -9 $$").unwrap().run().unwrap_err()
        );
        assert!(err.contains("failed with signal 9"), "{err}");

        assert!(TokenCommand::new("  ").is_err());
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_callers_refused_at_once_share_one_fresh_token_and_a_second_refusal_stands() {
        let dir = tempfile::tempdir().unwrap();
        let command = counting(dir.path(), &["old", "new"]);
        let first = command.run().unwrap();
        let credentials = std::sync::Arc::new(Credentials::from_command(first, command));
        assert_eq!(credentials.source(), "--token-command");
        let (generation, _) = credentials.current();
        let callers: Vec<_> = (0..16)
            .map(|_| {
                let credentials = credentials.clone();
                tokio::spawn(async move { credentials.after_refusal(generation).await })
            })
            .collect();
        for caller in callers {
            let (fresh, token) = caller.await.unwrap().unwrap().expect("a fresh token");
            assert_eq!(fresh, 1);
            assert_eq!(token.authorization().to_str().unwrap(), "Bearer new");
        }
        assert_eq!(runs(dir.path()), 2, "once at start, once for all 16");
        // The fresh token refused too: no third run.
        assert_eq!(credentials.after_refusal(1).await.unwrap(), None);
        assert_eq!(runs(dir.path()), 2);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_failed_refresh_is_an_error_once_and_a_fixed_token_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Credentials::from_command(
            Token::parse("t").unwrap(),
            TokenCommand::new("exit 7").unwrap(),
        );
        let err = credentials.after_refusal(0).await.unwrap_err();
        assert!(err.contains("exit status 7"), "{err}");
        assert_eq!(credentials.after_refusal(0).await.unwrap(), None);
        let fixed = Credentials::fixed(Token::parse("t").unwrap());
        assert_eq!(fixed.after_refusal(0).await.unwrap(), None);
        assert_eq!(fixed.source(), "VOYC_TOKEN or --token-file");
        drop(dir);
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

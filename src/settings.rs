//! The command line resolved once into checked settings: every flag that cannot work is a usage
//! error here, before anything is read or sent, and what the commands get is typed (a URL, a
//! duration, a token), never a raw flag. With `cli.rs` it is the only place that sees clap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;

use voyc_sandbox::{Outage, S3Storage, SandboxConfig};

use crate::cli::{
    self, Cli, Command, ManifestArgs, MergeReportsArgs, SandboxArgs, ScanArgs, UploadArgs,
};
use crate::journal::Destination;
use crate::manifest::Format;
use crate::objects::{ObjectUrl, SourceOptions};
use crate::progress::LogFormat;
use crate::report::{ReportFormat, default_journal_path, default_report_path};
use crate::scan::Pattern;
use crate::secret::{TOKEN_ENV, Token, TokenCommand};
use crate::shard::Shard;
use crate::upload::client::DEFAULT_BASE_URL;
use crate::upload::http::is_loopback;
use crate::validate::{ManifestSettings, TimeSettings};

/// The organisation id used with `--sandbox` when `--org` is not given.
pub const SANDBOX_ORG: &str = "1";

/// What to run, checked.
#[derive(Debug)]
pub enum Settings {
    Validate(Box<ManifestSettings>),
    Upload(Box<UploadSettings>),
    Sandbox(Box<SandboxConfig>),
    MergeReports(MergeSettings),
    Scan(Box<ScanSettings>),
    /// Text generated from the command line's definitions (completions, the man page), to
    /// print as it is.
    Print(Vec<u8>),
}

impl Settings {
    pub fn resolve(cli: Cli) -> anyhow::Result<Settings> {
        Ok(match cli.command {
            Command::Validate(args) => Settings::Validate(Box::new(manifest(&args.manifest)?)),
            Command::Upload(args) => Settings::Upload(Box::new(UploadSettings::resolve(&args)?)),
            Command::Sandbox(args) => Settings::Sandbox(Box::new(sandbox(&args)?)),
            Command::MergeReports(args) => Settings::MergeReports(MergeSettings::resolve(&args)?),
            Command::Scan(args) => Settings::Scan(Box::new(ScanSettings::resolve(&args)?)),
            Command::Completions(args) => Settings::Print(cli::completions(args.shell)),
            Command::Man(args) => Settings::Print(
                cli::man_page(args.command.as_deref()).context("cannot render the man page")?,
            ),
        })
    }
}

/// The manifest flags: the format, where relative audio paths resolve, `--map` and `--set`.
fn manifest(args: &ManifestArgs) -> anyhow::Result<ManifestSettings> {
    let times = TimeSettings::new(
        args.timestamp_column.as_deref(),
        args.timestamp_format.as_deref(),
        args.date_format.as_deref(),
        args.time_format.as_deref(),
        args.timezone.as_deref(),
    )?;
    Ok(ManifestSettings::new(
        &args.manifest,
        args.format.map(format),
        args.base_dir.as_deref(),
        &args.map,
        &args.set,
    )?
    .with_times(times)
    .with_sources(SourceOptions::new(
        args.source_endpoint.as_deref(),
        args.source_region.as_deref(),
    )?))
}

fn format(format: cli::Format) -> Format {
    match format {
        cli::Format::Csv => Format::Csv,
        cli::Format::Jsonl => Format::Jsonl,
    }
}

/// `voyc-import merge-reports`, checked.
#[derive(Debug)]
pub struct MergeSettings {
    pub reports: Vec<PathBuf>,
    pub out: PathBuf,
    /// The manifest the reports are of, and its format.
    pub manifest: Option<(PathBuf, Format)>,
}

impl MergeSettings {
    fn resolve(args: &MergeReportsArgs) -> anyhow::Result<MergeSettings> {
        for report in &args.reports {
            ReportFormat::from_path(report)?;
        }
        ReportFormat::from_path(&args.out)?;
        if args.reports.contains(&args.out) {
            bail!(
                "--out {} is one of the reports to merge; write the merge to a file of its own",
                args.out.display()
            );
        }
        let manifest = match &args.manifest {
            Some(path) => Some((
                path.clone(),
                crate::manifest::format_of(path, args.format.map(format))?,
            )),
            None => None,
        };
        Ok(MergeSettings {
            reports: args.reports.clone(),
            out: args.out.clone(),
            manifest,
        })
    }
}

/// `voyc-import scan`, checked.
#[derive(Debug)]
pub struct ScanSettings {
    /// The folder or the object prefix scanned.
    pub source: ScanSource,
    pub pattern: Pattern,
    /// `--set KEY=VALUE`: constant columns, in the order given.
    pub fills: Vec<(String, String)>,
    /// The manifest file [default: standard output].
    pub out: Option<PathBuf>,
    pub quiet: bool,
}

/// What `scan` lists.
#[derive(Debug)]
pub enum ScanSource {
    /// A local folder, as given (messages show the user's path).
    Folder(PathBuf),
    /// `s3://BUCKET/PREFIX` (or `gs://`, `az://`): the objects under the prefix, its key empty
    /// (the whole bucket) or ending in `/` (`s3://b/2024` is the folder `2024/`).
    Objects {
        prefix: ObjectUrl,
        options: SourceOptions,
    },
}

impl ScanSettings {
    fn resolve(args: &ScanArgs) -> anyhow::Result<ScanSettings> {
        let given = args.dir.to_string_lossy();
        // Checked whatever the source, as upload checks them whatever the manifest holds.
        let options = SourceOptions::new(
            args.source_endpoint.as_deref(),
            args.source_region.as_deref(),
        )?;
        let source = if given.contains("://") {
            let prefix = ObjectUrl::parse_prefix(&given)
                .map_err(|e| anyhow::anyhow!("{}: {e}", crate::human::one_line(&given)))?;
            ScanSource::Objects { prefix, options }
        } else {
            let meta = std::fs::metadata(&args.dir)
                .with_context(|| format!("cannot read the folder {}", args.dir.display()))?;
            if !meta.is_dir() {
                bail!(
                    "{} is not a folder; scan takes the folder that holds the recordings",
                    args.dir.display()
                );
            }
            ScanSource::Folder(args.dir.clone())
        };
        let pattern = Pattern::parse(&args.pattern)?;
        let fills = crate::validate::parse_fills(&args.set)?;
        if let Some((key, _)) = fills.iter().find(|(key, _)| pattern.fields().contains(key)) {
            bail!(
                "--set {key}=…: the pattern already reads {key} from every path; keep one of the two"
            );
        }
        if let Some(out) = &args.out {
            let csv = out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            if !csv {
                bail!(
                    "--out {}: scan writes a CSV manifest; give the file a .csv name",
                    out.display()
                );
            }
            if out.is_dir() {
                bail!("--out {} is a folder; give a file name", out.display());
            }
        }
        Ok(ScanSettings {
            source,
            pattern,
            fills,
            out: args.out.clone(),
            quiet: args.quiet,
        })
    }
}

/// Where `upload` sends the rows.
#[derive(Debug)]
pub enum Endpoint {
    Voyc {
        base_url: Url,
        organisation: String,
        /// `None` only for `--dry-run`, which needs no token.
        token: Option<Token>,
        /// `--token-command`, run again once for a fresh token when call 1 refuses this one.
        token_command: Option<TokenCommand>,
    },
    /// `--sandbox`: an in-process sandbox, started by the run.
    Sandbox { organisation: String },
}

impl Endpoint {
    pub fn organisation(&self) -> &str {
        match self {
            Endpoint::Voyc { organisation, .. } | Endpoint::Sandbox { organisation } => {
                organisation
            }
        }
    }

    /// Plain http is allowed only to loopback (the sandbox), and then never through a proxy,
    /// which would see the token in clear.
    pub fn direct(&self) -> bool {
        match self {
            Endpoint::Voyc { base_url, .. } => base_url.scheme() == "http",
            Endpoint::Sandbox { .. } => true,
        }
    }
}

/// `voyc-import upload`, checked.
#[derive(Debug)]
pub struct UploadSettings {
    pub manifest: ManifestSettings,
    pub endpoint: Endpoint,
    pub report: PathBuf,
    pub journal: PathBuf,
    /// `--state-dir`: the folder `journal` is in, created (private) when the run starts.
    pub state_dir: Option<PathBuf>,
    /// Bounds connecting, any idle gap, and the whole of call 1.
    pub timeout: Duration,
    /// Extra trusted roots (PEM), for corporate TLS-inspecting proxies.
    pub ca_cert: Option<PathBuf>,
    /// Rows in flight at once.
    pub concurrency: usize,
    /// Retries per call after a transient failure.
    pub retries: u32,
    /// `--max-rps`: call-1 requests per second at most.
    pub max_rps: Option<f64>,
    /// `--bwlimit`: upload bytes per second, all rows together.
    pub bwlimit: Option<u64>,
    /// `--max-outage`: how long an outage is waited out.
    pub max_outage: Duration,
    pub dry_run: bool,
    /// Only the first N valid rows are taken.
    pub limit: Option<u64>,
    pub skip_invalid: bool,
    /// A manifest with no rows is a day without calls, not an error.
    pub allow_empty: bool,
    /// A file uploaded before under other metadata is sent again, as a new conversation.
    pub reupload_changed: bool,
    pub quiet: bool,
    /// `--log-format`: plain lines or JSON events on stderr.
    pub log_format: LogFormat,
}

impl UploadSettings {
    fn resolve(args: &UploadArgs) -> anyhow::Result<UploadSettings> {
        let endpoint = if args.sandbox {
            Endpoint::Sandbox {
                organisation: match &args.org {
                    Some(org) => check_organisation(org)?,
                    None => SANDBOX_ORG.to_string(),
                },
            }
        } else {
            let Some(org) = &args.org else {
                bail!(
                    "--org is required: give your organisation id with --org ORG_ID or VOYC_ORG_ID (or rehearse with --sandbox)"
                );
            };
            let organisation = check_organisation(org)?;
            let base_url = check_base_url(&args.base_url)?;
            let token_command = match &args.token_command {
                Some(command) => {
                    if std::env::var_os(TOKEN_ENV).is_some() {
                        bail!(
                            "--token-command and {TOKEN_ENV} both give the token: use one (unset {TOKEN_ENV}, or drop --token-command)"
                        );
                    }
                    Some(TokenCommand::new(command)?)
                }
                None => None,
            };
            // The command is run last, once every other setting is known to be usable.
            let token = match args.dry_run || token_command.is_some() {
                true => None,
                false => Some(Token::load(args.token_file.as_deref())?),
            };
            Endpoint::Voyc {
                base_url,
                organisation,
                token,
                token_command,
            }
        };
        check_manifest_is_a_file(&args.manifest.manifest)?;
        let report = args
            .report
            .clone()
            .unwrap_or_else(|| default_report_path(&args.manifest.manifest));
        ReportFormat::from_path(&report)?;
        let state_dir = args
            .state_dir
            .clone()
            .filter(|dir| !dir.as_os_str().is_empty());
        // VOYC_STATE_DIR set for the nightly runs does not stand in the way of a one-off run:
        // `--journal` names the journal instead, and `--sandbox` has nothing to keep. Only
        // `--state-dir` given with either is a contradiction.
        let from_environment = state_dir.is_some()
            && std::env::var_os("VOYC_STATE_DIR").map(PathBuf::from) == state_dir;
        let state_dir = state_dir.filter(|_| {
            !(from_environment
                && (args.journal.is_some() || matches!(endpoint, Endpoint::Sandbox { .. })))
        });
        let journal = match (&state_dir, &args.journal, &endpoint) {
            (Some(_), Some(_), _) => bail!(
                "--journal and --state-dir both say where the journal is: give one (--state-dir DIR keeps one journal for each destination in DIR)"
            ),
            (Some(_), None, Endpoint::Sandbox { .. }) => bail!(
                "--state-dir cannot be used with --sandbox: the in-process sandbox is a new destination every run, so there is nothing to keep between runs; to rehearse nights, start `voyc-import sandbox` and point --base-url at it"
            ),
            (
                Some(dir),
                None,
                Endpoint::Voyc {
                    base_url,
                    organisation,
                    ..
                },
            ) => crate::state_dir::journal_in(
                dir,
                &Destination::voyc(base_url.as_str(), organisation),
            ),
            (None, journal, _) => journal
                .clone()
                .unwrap_or_else(|| default_journal_path(&report)),
        };
        if journal == report {
            bail!(
                "--journal and --report name the same file {}",
                report.display()
            );
        }
        if let Some(path) = &args.ca_cert
            && !path.is_file()
        {
            bail!("--ca-cert {}: no such file", path.display());
        }
        let shard = match &args.shard {
            Some(text) => Some(Shard::resolve(text, |name| std::env::var(name).ok())?),
            None => None,
        };
        let manifest = manifest(&args.manifest)?.with_shard(shard);
        let mut endpoint = endpoint;
        if let Endpoint::Voyc {
            token: token @ None,
            token_command: Some(command),
            ..
        } = &mut endpoint
            && !args.dry_run
        {
            *token = Some(command.run()?);
        }
        Ok(UploadSettings {
            manifest,
            endpoint,
            report,
            journal,
            state_dir,
            timeout: args.timeout,
            ca_cert: args.ca_cert.clone(),
            concurrency: args.concurrency as usize,
            retries: args.retries,
            max_rps: args.max_rps,
            bwlimit: args.bwlimit,
            max_outage: args.max_outage,
            dry_run: args.dry_run,
            limit: args.limit,
            skip_invalid: args.skip_invalid,
            allow_empty: args.allow_empty,
            reupload_changed: args.reupload_changed,
            quiet: args.quiet,
            log_format: match args.log_format {
                cli::LogFormat::Plain => LogFormat::Plain,
                cli::LogFormat::Json => LogFormat::Json,
            },
        })
    }
}

/// The sandbox's settings from its flags; fails only when `--s3-endpoint` is given without
/// credentials in the environment.
fn sandbox(args: &SandboxArgs) -> anyhow::Result<SandboxConfig> {
    let s3 = match (&args.s3_endpoint, &args.s3_bucket) {
        (Some(endpoint), Some(bucket)) => {
            let mut storage = S3Storage::from_env(endpoint, bucket, &args.s3_region)?;
            storage.direct = reached_directly(endpoint);
            Some(storage)
        }
        _ => None,
    };
    Ok(SandboxConfig {
        listen: args.listen,
        token: args.token.clone(),
        token_ttl: args.token_ttl.map(Duration::from_secs),
        org: args.org.clone(),
        upload_style: args.upload_style.into(),
        error_style: args.error_style.into(),
        response_shape: args.response_shape.into(),
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        ambiguous_rate: args.ambiguous_rate,
        throttle_rate: args.throttle_rate,
        rate_limit: args.rate_limit,
        outage: args
            .outage_after
            .zip(args.outage_secs)
            .map(|(after_calls, secs)| Outage {
                after_calls,
                duration: Duration::from_secs(secs),
                repeat: args.outage_repeat,
            }),
        s3_fail_rate: args.s3_fail_rate,
        s3_drop_rate: args.s3_drop_rate,
        expired_rate: args.expired_rate,
        upload_ttl: Duration::from_secs(args.upload_ttl),
        max_upload_bytes: args.max_upload_bytes,
        success_action_status: args.success_action_status,
        seed: args.seed,
        data_dir: args.data_dir.clone(),
        s3,
        log_errors: true,
    })
}

/// True for a loopback S3 endpoint: reached directly, never through a proxy, as the client
/// reaches a loopback API. (An endpoint that is not a URL is refused when the sandbox starts.)
fn reached_directly(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint).is_ok_and(|url| is_loopback(&url))
}

impl From<cli::UploadStyle> for voyc_sandbox::UploadStyle {
    fn from(style: cli::UploadStyle) -> Self {
        match style {
            cli::UploadStyle::Post => voyc_sandbox::UploadStyle::Post,
            cli::UploadStyle::Put => voyc_sandbox::UploadStyle::Put,
        }
    }
}

impl From<cli::ErrorStyle> for voyc_sandbox::ErrorStyle {
    fn from(style: cli::ErrorStyle) -> Self {
        match style {
            cli::ErrorStyle::Drf => voyc_sandbox::ErrorStyle::Drf,
            cli::ErrorStyle::Standardized => voyc_sandbox::ErrorStyle::Standardized,
        }
    }
}

impl From<cli::ResponseShape> for voyc_sandbox::ResponseShape {
    fn from(shape: cli::ResponseShape) -> Self {
        match shape {
            cli::ResponseShape::Flat => voyc_sandbox::ResponseShape::Flat,
            cli::ResponseShape::Nested => voyc_sandbox::ResponseShape::Nested,
            cli::ResponseShape::Numeric => voyc_sandbox::ResponseShape::Numeric,
        }
    }
}

/// Checks `--base-url`: http(s), no credentials, query or fragment, and plain `http://` only
/// to a loopback address (the token must not cross a network in clear).
pub fn check_base_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text.trim()).with_context(|| {
        format!("--base-url {text:?} is not a URL (expected e.g. {DEFAULT_BASE_URL})")
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => bail!(
            "--base-url {text:?} uses plain http:// to a host that is not loopback: the token would cross the network in clear; use https://"
        ),
        other => bail!("--base-url {text:?} has scheme {other:?}; expected https://"),
    }
    if url.host().is_none() {
        bail!("--base-url {text:?} names no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "--base-url must not hold a user name or password; the token goes in VOYC_TOKEN or --token-file"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--base-url {text:?} must not have a query or fragment");
    }
    Ok(url)
}

/// Checks `--org`: the organisation id goes in the URL path, so it must be one plain path
/// segment. `.` and `..` are made of allowed characters, but a URL normalises them away, and
/// the token would then go to another path.
pub fn check_organisation(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if text.is_empty() {
        bail!("--org is empty; give the organisation id (or set VOYC_ORG_ID)");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!(
            "--org {text:?} is not an organisation id (expected letters, digits, '-', '_' or '.')"
        );
    }
    if text.chars().all(|c| c == '.') {
        bail!(
            "--org {text:?} is not an organisation id: in a URL it would mean the current or the parent folder, so call 1 would go to another path"
        );
    }
    Ok(text.to_string())
}

/// Upload reads the manifest twice (to check every row, then to send them), which a named
/// pipe cannot give; and opening one that nobody writes to would wait for ever.
fn check_manifest_is_a_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    if meta.is_file() || meta.is_dir() {
        // A folder is refused with its own message when it is opened.
        return Ok(());
    }
    bail!(
        "the manifest {} is not a regular file (a named pipe or a device): upload reads it twice, \
         once to check every row and once to send them; save it to a file first",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_unless_the_host_is_loopback() {
        assert!(check_base_url("https://api.app.voyc.ai").is_ok());
        assert!(check_base_url("http://127.0.0.1:8787").is_ok());
        assert!(check_base_url("http://localhost:8787/").is_ok());
        assert!(check_base_url("http://[::1]:8787/").is_ok());
        let err = check_base_url("http://api.app.voyc.ai")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plain http:// to a host that is not loopback"),
            "{err}"
        );
        let err = check_base_url("http://127.0.0.1.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not loopback"), "{err}");
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("https://user:pw@api.app.voyc.ai").is_err());
        assert!(check_base_url("https://api.app.voyc.ai/?a=b").is_err());
        assert!(check_base_url("api.app.voyc.ai").is_err());
    }

    #[test]
    fn an_organisation_must_be_a_plain_id() {
        assert_eq!(check_organisation(" 118 ").unwrap(), "118");
        assert!(check_organisation("").is_err());
        assert!(check_organisation("1/../2").is_err());
        assert_eq!(check_organisation("org.eu-1").unwrap(), "org.eu-1");
    }

    #[test]
    fn dot_and_dot_dot_are_not_organisations_as_a_url_would_drop_them() {
        for dots in [".", "..", "...", " .. "] {
            let err = check_organisation(dots).unwrap_err().to_string();
            assert!(
                err.ends_with(
                    "is not an organisation id: in a URL it would mean the current or the parent folder, so call 1 would go to another path"
                ),
                "{dots}: {err}"
            );
        }
    }

    #[test]
    fn only_a_loopback_s3_endpoint_is_reached_without_the_proxies() {
        for endpoint in [
            "http://127.0.0.1:8333",
            "http://localhost:9/s3",
            "http://[::1]:1",
        ] {
            assert!(reached_directly(endpoint), "{endpoint}");
        }
        for endpoint in [
            "https://s3.eu-west-1.amazonaws.com",
            "http://10.0.0.1",
            "127.0.0.1:8333",
        ] {
            assert!(!reached_directly(endpoint), "{endpoint}");
        }
    }
}

//! The command line, as clap derive definitions (and what is generated from them: shell
//! completions and the man page): `settings` checks and resolves what is given here, and the
//! commands never see it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "voyc-import",
    version,
    about = "Move call recordings into Voyc in bulk."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line of this process; on a usage error clap prints it and exits 2.
    pub fn from_env() -> Cli {
        Cli::parse()
    }

    /// `upload --log-format json`: an error in the settings is written as JSON events too.
    pub fn wants_json_log(&self) -> bool {
        matches!(&self.command, Command::Upload(args) if args.log_format == LogFormat::Json)
    }
}

/// The completion script for `shell`, generated from these definitions.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "voyc-import", &mut script);
    script
}

/// The man page (roff) of voyc-import, or of one of its commands (`voyc-import-upload(1)`),
/// generated from these definitions.
pub fn man_page(command: Option<&str>) -> std::io::Result<Vec<u8>> {
    let top = Cli::command();
    let page = match command.and_then(|name| top.find_subcommand(name)) {
        Some(sub) => {
            let name = format!("voyc-import-{}", sub.get_name());
            sub.clone()
                .name(name)
                .version(top.get_version().unwrap_or_default().to_string())
        }
        None => top,
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    Ok(roff)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every row of a manifest and print every problem, without sending anything.
    Validate(ValidateArgs),
    /// Upload every row of a manifest to Voyc: call 1 with its metadata, then the audio to S3.
    Upload(Box<UploadArgs>),
    /// Run a local stand-in for Voyc's upload API and S3, with fault injection.
    Sandbox(SandboxArgs),
    /// Write a manifest (CSV) for a folder of recordings (or an s3://, gs:// or az:// prefix),
    /// reading each call's metadata from its file and folder names.
    Scan(ScanArgs),
    /// Join the reports of runs over parts of one manifest into one report, in manifest order,
    /// naming every row that is missing or repeated.
    MergeReports(MergeReportsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, e.g. `voyc-import man upload | man -l -`.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print [default: voyc-import's own, which lists the commands].
    #[arg(value_name = "COMMAND", value_parser = ["validate", "upload", "scan", "sandbox", "merge-reports", "completions", "man"])]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The folder that holds the recordings, or s3://BUCKET/PREFIX/ (gs://BUCKET/PREFIX/, az://CONTAINER/PREFIX/): every file (object) under it, however deep, is matched.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Server to list an s3://, gs:// or az:// DIR on: S3-compatible, a GCS emulator or an Azure blob endpoint, e.g. https://minio.example.com:9000 [default: the cloud's own].
    #[arg(help_heading = "Source", long, value_name = "URL")]
    pub source_endpoint: Option<String>,

    /// Region to sign s3:// requests for [default: AWS_REGION, else us-east-1].
    #[arg(help_heading = "Source", long, value_name = "REGION")]
    pub source_region: Option<String>,

    /// What each file's path below DIR looks like, e.g. "{call_date:%Y%m%d}_{agent}.wav".
    #[arg(help_heading = "Manifest", long, value_name = "PATTERN")]
    pub pattern: String,

    /// Add a column with this value on every row (repeatable), e.g. --set channel_id=42.
    #[arg(help_heading = "Manifest", long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Write the manifest to this .csv file [default: standard output].
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print nothing when every file matches; otherwise only the files that did not, and the summary.
    #[arg(help_heading = "Output", long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct MergeReportsArgs {
    /// The reports to join (.csv or .jsonl, as `upload --report` wrote them).
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,

    /// The merged report, .csv or .jsonl.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// The manifest the reports are of: every one of its rows must be in exactly one report.
    #[arg(long, value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,

    /// The manifest's format [default: from its extension].
    #[arg(long, value_enum, value_name = "FORMAT", requires = "manifest")]
    pub format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// How a manifest is read; shared by every command that takes one.
#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// The manifest: CSV with a header row, or JSONL with one object per line.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,

    /// Manifest format; by default taken from the extension (.csv, .jsonl, .ndjson).
    #[arg(help_heading = "Manifest", long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Folder (or s3://BUCKET/PREFIX/, gs://..., az://...) that relative audio paths resolve against [default: the manifest's folder].
    #[arg(help_heading = "Manifest", long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,

    /// Server that s3://, gs:// and az:// audio paths are read from: S3-compatible, a GCS emulator or an Azure blob endpoint, e.g. https://minio.example.com:9000 [default: the cloud's own].
    #[arg(help_heading = "Manifest", long, value_name = "URL")]
    pub source_endpoint: Option<String>,

    /// Region to sign s3:// requests for [default: AWS_REGION, else us-east-1].
    #[arg(help_heading = "Manifest", long, value_name = "REGION")]
    pub source_region: Option<String>,

    /// Rename a manifest column before anything else (repeatable), e.g. --map recording=file.
    #[arg(help_heading = "Manifest", long = "map", value_name = "SOURCE=TARGET")]
    pub map: Vec<String>,

    /// Give every row a value where its own is empty (repeatable), e.g. --set channel_id=42.
    #[arg(help_heading = "Manifest", long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Fill call_date and call_time from this column's timestamp (RFC 3339, YYYY-MM-DD hh:mm:ss, epoch).
    #[arg(help_heading = "Dates and times", long, value_name = "COLUMN")]
    pub timestamp_column: Option<String>,

    /// Read --timestamp-column with this strftime format, e.g. "%d/%m/%Y %H:%M".
    #[arg(help_heading = "Dates and times", long, value_name = "FORMAT")]
    pub timestamp_format: Option<String>,

    /// Read the call_date column with this strftime format, e.g. "%d/%m/%Y".
    #[arg(help_heading = "Dates and times", long, value_name = "FORMAT")]
    pub date_format: Option<String>,

    /// Read the call_time column with this strftime format, e.g. "%I:%M %p".
    #[arg(help_heading = "Dates and times", long, value_name = "FORMAT")]
    pub time_format: Option<String>,

    /// Give call_date and call_time in this IANA zone, e.g. Europe/London (timestamps are converted).
    #[arg(help_heading = "Dates and times", long, value_name = "ZONE")]
    pub timezone: Option<String>,
}

/// `--format`; settings turn it into the manifest reader's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on; port 0 picks a free port (the printed URL names it).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// The bearer token call 1 accepts.
    #[arg(long, value_name = "TOKEN", default_value = "sandbox-token")]
    pub token: String,

    /// Accept the token only this many seconds after start, then refuse it as a wrong one
    /// (a short-lived token expiring mid-run) [default: it never expires].
    #[arg(long, value_name = "SECS")]
    pub token_ttl: Option<u64>,

    /// The only organisation id that exists; others get 404 [default: any id is accepted].
    #[arg(long, value_name = "ORG_ID")]
    pub org: Option<String>,

    /// Upload targets call 1 hands out: a presigned POST form or a presigned PUT URL.
    #[arg(long, value_enum, value_name = "STYLE", default_value_t = UploadStyle::Post)]
    pub upload_style: UploadStyle,

    /// Error bodies of call 1: plain DRF (401 for a bad token) or the drf-standardized-errors
    /// envelope of Voyc's live API (403 for a bad token).
    #[arg(long, value_enum, value_name = "STYLE", default_value_t = ErrorStyle::Drf)]
    pub error_style: ErrorStyle,

    /// Where call 1's answer puts the conversation id and the upload target.
    #[arg(long, value_enum, value_name = "SHAPE", default_value_t = ResponseShape::Flat)]
    pub response_shape: ResponseShape,

    /// Delay added to every API and S3 request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Probability that call 1 is answered 503 before it is processed.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub fail_rate: f64,

    /// Probability that call 1 is processed (the conversation is created), then answered 500.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub ambiguous_rate: f64,

    /// Probability that call 1 is answered 429 with Retry-After: 1.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub throttle_rate: f64,

    /// Answer 429 (Retry-After, DRF's body) to call-1 requests beyond N in any one second.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,

    /// Start an outage once N call-1 requests have been answered (0: at start); see --outage-secs.
    #[arg(long, value_name = "N", requires = "outage_secs")]
    pub outage_after: Option<u64>,

    /// How long the outage answers every API and S3 request 503, in seconds.
    #[arg(long, value_name = "SECS", requires = "outage_after", value_parser = clap::value_parser!(u64).range(1..=3_153_600_000))]
    pub outage_secs: Option<u64>,

    /// After each outage, count --outage-after call-1 requests again and go down again.
    #[arg(long, requires = "outage_after")]
    pub outage_repeat: bool,

    /// Probability that an upload is answered 503 SlowDown.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub s3_fail_rate: f64,

    /// Probability that an upload's connection is closed part-way through its body.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub s3_drop_rate: f64,

    /// Probability that call 1 hands out an upload target that has already expired.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub expired_rate: f64,

    /// How long upload targets stay valid, in seconds (0: they are expired when used).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub upload_ttl: u64,

    /// The largest upload accepted, in bytes [default: 5 GiB, S3's limit].
    #[arg(long, value_name = "BYTES", default_value_t = 5 << 30, hide_default_value = true)]
    pub max_upload_bytes: u64,

    /// Make presigned POSTs carry success_action_status (200, 201 or 204) [default: none, S3 answers 204].
    #[arg(long, value_name = "STATUS", value_parser = success_status)]
    pub success_action_status: Option<u16>,

    /// Seed for the fault generator: the same seed and the same order of requests inject the same faults.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Keep uploads in this folder, as DIR/BUCKET/KEY [default: a temporary folder, removed on exit].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Hand out uploads presigned for this S3 server (path-style URLs) instead of the sandbox's
    /// own stand-in; its access key and secret come from AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN when set).
    #[arg(long, value_name = "URL", requires = "s3_bucket",
          conflicts_with_all = ["data_dir", "s3_fail_rate", "s3_drop_rate"])]
    pub s3_endpoint: Option<String>,

    /// The bucket on --s3-endpoint that uploads go to; created at start when missing.
    #[arg(long, value_name = "NAME", requires = "s3_endpoint")]
    pub s3_bucket: Option<String>,

    /// The region --s3-endpoint signs for.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    pub s3_region: String,
}

/// `--upload-style`: how call 1 hands out the upload target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum UploadStyle {
    /// A presigned POST: `url` and form `fields`, as boto3's `generate_presigned_post` returns.
    #[default]
    Post,
    /// A presigned PUT URL with its expiry and signature in the query.
    Put,
}

/// `--error-style`: how call 1 words its errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ErrorStyle {
    /// Plain Django REST Framework: `{"detail": "..."}`, `{"call_date": ["..."]}`, 401.
    #[default]
    Drf,
    /// The drf-standardized-errors envelope Voyc's live API uses: `{"type": ..., "errors": [...]}`,
    /// and 403 `not_authenticated` for missing credentials.
    Standardized,
}

/// `--response-shape`: where call 1's response puts the conversation id and the upload target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ResponseShape {
    /// `{"conversation_id": "…", "upload": {"url", "fields"}}` or `{"conversation_id": "…", "upload_url": "…"}`.
    #[default]
    Flat,
    /// `{"conversation": {"id": "…"}, "presigned_post": {"url", "fields"}}` or `{"conversation": {"id": "…"}, "presigned_url": "…"}`.
    Nested,
    /// `{"id": 17, "url": "…", "fields": {…}}` or `{"id": 17, "url": "…"}`: numeric ids, target at the top level.
    Numeric,
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "expected a probability between 0 and 1, e.g. 0.05, not {text:?}"
        )),
    }
}

fn success_status(text: &str) -> Result<u16, String> {
    match text {
        "200" | "201" | "204" => Ok(text.parse().expect("digits")),
        _ => Err(format!("expected 200, 201 or 204, not {text:?}")),
    }
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// Your Voyc organisation id (the number in the upload URL).
    #[arg(
        help_heading = "Destination",
        long,
        env = "VOYC_ORG_ID",
        value_name = "ORG_ID"
    )]
    pub org: Option<String>,

    /// Voyc's API for your organisation (https; plain http only to a loopback address).
    #[arg(help_heading = "Destination", long, env = "VOYC_BASE_URL", value_name = "URL", default_value = crate::upload::client::DEFAULT_BASE_URL)]
    pub base_url: String,

    /// Upload to an in-process sandbox instead of Voyc: no token or organisation needed.
    #[arg(help_heading = "Destination", long)]
    pub sandbox: bool,

    /// Read the bearer token from this file [default: the VOYC_TOKEN environment variable].
    #[arg(help_heading = "Destination", long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Take the bearer token from this shell command's stdout, run at start and once more after a 401.
    #[arg(
        help_heading = "Destination",
        long,
        value_name = "CMD",
        conflicts_with = "token_file"
    )]
    pub token_command: Option<String>,

    /// Also trust the certificates in this PEM file (a corporate TLS-inspecting proxy).
    #[arg(help_heading = "Destination", long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Rows in flight at once.
    #[arg(help_heading = "Pacing", long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Retries per call after a transient failure (connection errors, timeouts, 5xx); 429s and outages spend none.
    #[arg(help_heading = "Pacing", long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,

    /// Bounds connecting, any idle gap, and the whole of call 1 (e.g. 30s, 500ms, 2m); an upload
    /// is bounded by idle time only.
    #[arg(help_heading = "Pacing", long, value_name = "DURATION", default_value = "30s", value_parser = crate::human::parse_duration)]
    pub timeout: std::time::Duration,

    /// At most N call-1 requests a second (e.g. 20 or 0.5); without it, 429s slow the run down.
    #[arg(help_heading = "Pacing", long, value_name = "N", value_parser = crate::upload::rate::parse_rate)]
    pub max_rps: Option<f64>,

    /// At most RATE bytes a second for all uploads together (500K, 10M; K = 1024 bytes).
    #[arg(help_heading = "Pacing", long, value_name = "RATE", value_parser = crate::upload::rate::parse_bandwidth)]
    pub bwlimit: Option<u64>,

    /// Wait out an outage of Voyc or S3 this long before stopping the run, resumable (e.g. 2h).
    #[arg(help_heading = "Pacing", long, value_name = "DURATION", default_value = "30m", value_parser = crate::human::parse_duration)]
    pub max_outage: std::time::Duration,

    /// Print what would be sent (rows, bodies, total bytes), send nothing.
    #[arg(help_heading = "Rows", long)]
    pub dry_run: bool,

    /// Take only the first N valid rows (a pilot); the rest are reported not_attempted.
    #[arg(help_heading = "Rows", long, value_name = "N")]
    pub limit: Option<u64>,

    /// Take only shard K of N (1 to N) by a stable hash of each row's path; auto reads JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX, and VOYC_SHARDS.
    #[arg(help_heading = "Rows", long, value_name = "K/N|auto")]
    pub shard: Option<String>,

    /// A manifest with no rows (a day without calls) is not an error: exit 0, nothing to send.
    #[arg(help_heading = "Rows", long)]
    pub allow_empty: bool,

    /// Upload the valid rows even if some are invalid; those are reported as invalid.
    #[arg(help_heading = "Rows", long)]
    pub skip_invalid: bool,

    /// Send a file uploaded before under other metadata as a new conversation [default: report it already_uploaded].
    #[arg(help_heading = "Rows", long)]
    pub reupload_changed: bool,

    /// The results report, .csv or .jsonl [default: <manifest stem>.report.csv here].
    #[arg(help_heading = "Output", long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    /// The journal that makes reruns resume [default: the report path plus .journal].
    #[arg(help_heading = "Output", long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Keep one journal per destination in this folder, so that no run uploads what an earlier one did.
    #[arg(
        help_heading = "Output",
        long,
        env = "VOYC_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,

    /// Print nothing when every row succeeds; otherwise only failed rows and the summary.
    #[arg(help_heading = "Output", long, short)]
    pub quiet: bool,

    /// What stderr gets: lines for a person, or one JSON object per event for a log shipper.
    #[arg(
        help_heading = "Output",
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "plain"
    )]
    pub log_format: LogFormat,
}

/// `--log-format`; settings turn it into the progress display's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

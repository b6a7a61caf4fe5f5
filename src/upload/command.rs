//! `voyc-import upload`: validate every row, then send them through the pool, and report.
//!
//! Two passes over the manifest keep memory flat at any length: pass 1 validates (nothing is
//! sent if a row is invalid, unless `--skip-invalid`) and counts what is left to send; pass 2
//! validates again as it streams rows to the pool, looking each up in the journal. Outcomes
//! come back in any order and go to the report writer, which puts them in manifest order; the
//! feeder never runs more than [`WINDOW`] rows ahead of the oldest unsettled one.

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::sync::Semaphore;

use super::client::{ClientConfig, VoycClient, check_base_url, check_organisation, http_client};
use super::pool::{Engine, Job, Outcome, Pool, RunControl, StopReason, stopped_note};
use super::retry::{Backoff, Sleeper};
use crate::Status;
use crate::cli::UploadArgs;
use crate::journal::{Destination, Journal, RowIdentity, State};
use crate::progress::{Mode, Progress};
use crate::report::{
    Counts, Ending, ReportRow, ReportWriter, RowStatus, count_of, default_journal_path,
    default_report_path, human_bytes, human_count, summary_line,
};
use crate::secret::Token;
use crate::upload::lock::RunLock;
use crate::validate::{CheckedRow, Problem, Verdict, check_manifest};

/// How far the feeder may run ahead of the oldest row not yet in the report: bounds the
/// report's reorder buffer (a few hundred bytes a row) whatever the manifest's length.
pub const WINDOW: usize = 16_384;

/// The organisation id used with `--sandbox` when `--org` is not given.
pub const SANDBOX_ORG: &str = "1";

/// Where the rows go.
enum Target {
    Voyc {
        base_url: reqwest::Url,
        organisation: String,
        /// `None` only for `--dry-run`, which needs no token.
        token: Option<Token>,
    },
    Sandbox {
        organisation: String,
    },
}

/// The command line, checked.
struct Settings {
    shown: String,
    target: Target,
    report: PathBuf,
    journal: PathBuf,
}

impl Settings {
    fn from_args(args: &UploadArgs) -> anyhow::Result<Settings> {
        let target = if args.sandbox {
            Target::Sandbox {
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
            let token = if args.dry_run {
                None
            } else {
                Some(Token::load(args.token_file.as_deref())?)
            };
            Target::Voyc {
                base_url,
                organisation,
                token,
            }
        };
        check_manifest_is_a_file(&args.manifest.manifest)?;
        let report = args
            .report
            .clone()
            .unwrap_or_else(|| default_report_path(&args.manifest.manifest));
        crate::report::ReportFormat::from_path(&report)?;
        let journal = args
            .journal
            .clone()
            .unwrap_or_else(|| default_journal_path(&report));
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
        Ok(Settings {
            shown: args.manifest.manifest.display().to_string(),
            target,
            report,
            journal,
        })
    }
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

/// What pass 1 found.
#[derive(Debug, Default)]
struct Plan {
    valid: u64,
    invalid: u64,
    manifest_errors: u64,
    beyond_limit: u64,
    already_uploaded: u64,
    to_send: u64,
    bytes_to_send: u64,
}

/// `voyc-import upload`.
pub fn command(args: &UploadArgs) -> anyhow::Result<Status> {
    let settings = Settings::from_args(args)?;
    // Before anything else, so that an overlapping run stops at once: held until the report is
    // written. A dry run writes nothing and needs none.
    let _lock = (!args.dry_run)
        .then(|| RunLock::acquire(&settings.report))
        .transpose()?;
    // Loading the TLS roots takes tens of milliseconds: done while pass 1 validates.
    let http = (!args.dry_run).then(|| {
        let (timeout, ca_cert) = (args.timeout, args.ca_cert.clone());
        // Plain http is allowed only to loopback (the sandbox): never through a proxy.
        let direct = match &settings.target {
            Target::Voyc { base_url, .. } => base_url.scheme() == "http",
            Target::Sandbox { .. } => true,
        };
        std::thread::spawn(move || http_client(timeout, ca_cert.as_deref(), direct))
    });
    let progress = Arc::new(Progress::new(Mode::detect(args.quiet)));
    let today = chrono::Local::now().date_naive();

    // A journal left by an earlier run tells pass 1 what is already uploaded. A sandbox is a
    // new destination every run, so nothing is.
    let earlier = match &settings.target {
        Target::Voyc {
            base_url,
            organisation,
            ..
        } => Journal::open_for_lookups(
            &settings.journal,
            &Destination::voyc(base_url.as_str(), organisation),
        )?,
        Target::Sandbox { .. } => None,
    };

    // Pass 1: validate everything, print every problem, count what there is to send.
    let mut plan = Plan::default();
    let mut dry_run_out = args
        .dry_run
        .then(|| std::io::BufWriter::new(std::io::stdout().lock()));
    let summary = check_manifest(&args.manifest, today, |verdict| {
        for problem in verdict.problems() {
            let line = format!("{}:{}: {problem}", settings.shown, problem.line);
            if problem.is_error() {
                progress.failure(&line);
            } else {
                progress.say(&line);
            }
        }
        match verdict {
            Verdict::Manifest(problem) if problem.is_error() => plan.manifest_errors += 1,
            Verdict::Manifest(_) => {}
            Verdict::Invalid { .. } => plan.invalid += 1,
            Verdict::Valid { row, .. } => {
                plan.valid += 1;
                if args.limit.is_some_and(|limit| plan.valid > limit) {
                    plan.beyond_limit += 1;
                    return ControlFlow::Continue(());
                }
                let body = body_bytes(&row);
                let identity = RowIdentity::new(&row.file, row.size, &body);
                let uploaded = earlier
                    .as_ref()
                    .and_then(|journal| journal.lookup(&identity).ok().flatten())
                    .is_some_and(|stored| stored.state == State::Uploaded);
                if uploaded {
                    plan.already_uploaded += 1;
                } else {
                    plan.to_send += 1;
                    plan.bytes_to_send += row.size;
                }
                if let Some(out) = &mut dry_run_out {
                    let _ = dry_run_line(out, &settings.shown, &row, &body, uploaded);
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    drop(earlier);
    if plan.manifest_errors > 0 || (plan.invalid > 0 && !args.skip_invalid) {
        progress.failure(&summary.to_string());
        let advice = if plan.manifest_errors > 0 {
            "nothing was sent: fix the manifest"
        } else {
            "nothing was sent: fix the rows above, or pass --skip-invalid to upload the valid rows and report the others as invalid"
        };
        progress.failure(&format!("upload: {advice}"));
        return Ok(Status::Usage);
    }
    let mut valid_line = format!(
        "{}: {} valid",
        settings.shown,
        count_of(plan.valid, "row", "rows")
    );
    if plan.invalid > 0 {
        valid_line.push_str(&format!(
            ", {} invalid (skipped)",
            human_count(plan.invalid)
        ));
    }
    if plan.beyond_limit > 0 {
        valid_line.push_str(&format!(
            "; --limit takes the first {}",
            human_count(plan.valid - plan.beyond_limit)
        ));
    }
    progress.say(&valid_line);

    if args.dry_run {
        let destination = match &settings.target {
            Target::Voyc {
                base_url,
                organisation,
                ..
            } => format!("{}", super::client::call1_endpoint(base_url, organisation)),
            Target::Sandbox { .. } => "an in-process sandbox".to_string(),
        };
        let mut line = format!(
            "dry run: {}, {} would be sent to {destination}",
            count_of(plan.to_send, "row", "rows"),
            human_bytes(plan.bytes_to_send)
        );
        if plan.already_uploaded > 0 {
            line.push_str(&format!(
                " ({} already uploaded)",
                human_count(plan.already_uploaded)
            ));
        }
        line.push_str("; nothing was sent");
        if let Some(mut out) = dry_run_out.take() {
            let written = writeln!(out, "{line}").and_then(|()| out.flush());
            match written {
                Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(err).context("cannot write to standard output");
                }
                _ => {}
            }
        }
        // As the real run would end if every call succeeded: rows skipped as invalid or left
        // beyond --limit make it 1.
        return Ok(if plan.invalid > 0 || plan.beyond_limit > 0 {
            Status::Partial
        } else {
            Status::Success
        });
    }

    let http = http
        .expect("an HTTP client unless --dry-run")
        .join()
        .map_err(|_| anyhow::anyhow!("cannot set up the HTTP client"))??;
    run(args, &settings, &plan, progress, today, http)
}

/// The exact bytes call 1 sends for a row.
fn body_bytes(row: &CheckedRow) -> Bytes {
    Bytes::from(serde_json::to_vec(&row.body).expect("a JSON object serialises"))
}

/// `manifest.csv:2: calls/0001.wav (23,456 bytes): {"channel_id":"42",...}`.
fn dry_run_line(
    out: &mut impl std::io::Write,
    shown: &str,
    row: &CheckedRow,
    body: &[u8],
    uploaded: bool,
) -> std::io::Result<()> {
    if uploaded {
        return writeln!(out, "{shown}:{}: {}: already uploaded", row.line, row.file);
    }
    writeln!(
        out,
        "{shown}:{}: {} ({} bytes): {}",
        row.line,
        row.file,
        human_count(row.size),
        String::from_utf8_lossy(body)
    )
}

/// Pass 2 and the pool, on a tokio runtime.
fn run(
    args: &UploadArgs,
    settings: &Settings,
    plan: &Plan,
    progress: Arc<Progress>,
    today: chrono::NaiveDate,
    http: reqwest::Client,
) -> anyhow::Result<Status> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("voyc-upload")
        .build()
        .context("cannot start the async runtime")?;
    // The report's folder must be writable before anything is sent.
    let report = ReportWriter::create(&settings.report)?;

    let mut sandbox = None;
    let (base_url, organisation, token, destination) = match &settings.target {
        Target::Voyc {
            base_url,
            organisation,
            token,
        } => (
            base_url.clone(),
            organisation.clone(),
            token.clone().expect("a token unless --dry-run"),
            Destination::voyc(base_url.as_str(), organisation),
        ),
        Target::Sandbox { organisation } => {
            let started =
                runtime.block_on(voyc_sandbox::start(voyc_sandbox::SandboxConfig::default()))?;
            let base_url = check_base_url(started.base_url())?;
            let token = Token::parse(started.token())?;
            progress.say(&format!(
                "sandbox: uploading to an in-process sandbox at {} (organisation {organisation})",
                started.base_url()
            ));
            let destination = Destination::fresh_sandbox(started.base_url(), organisation);
            sandbox = Some(started);
            (base_url, organisation.clone(), token, destination)
        }
    };
    let journal = Arc::new(Journal::open(&settings.journal, &destination)?);
    // What earlier runs left without audio, so that this run's report says it again.
    let leftovers = journal
        .leftovers()
        .with_context(|| format!("cannot read the journal {}", settings.journal.display()))?;
    let client = VoycClient::with_http(
        http,
        ClientConfig {
            base_url,
            organisation: organisation.clone(),
            token,
            timeout: args.timeout,
            ca_cert: args.ca_cert.clone(),
        },
    );
    let control = Arc::new(RunControl::new());
    let engine = Arc::new(Engine {
        client,
        journal: journal.clone(),
        control: control.clone(),
        retries: args.retries,
        backoff: Mutex::new(Backoff::default()),
        sleeper: Sleeper::Real,
        sent: progress.bytes_counter(),
        organisation,
    });

    if plan.already_uploaded > 0 {
        progress.say(&format!(
            "resuming: {} already uploaded",
            count_of(plan.already_uploaded, "row", "rows")
        ));
    }
    progress.start(plan.to_send, plan.bytes_to_send);
    let started = Instant::now();

    let (outcomes, settled) = mpsc::channel::<Outcome>();
    let window = Arc::new(Semaphore::new(WINDOW));
    let reporter = {
        let window = window.clone();
        let progress = progress.clone();
        let shown = settings.shown.clone();
        let control = control.clone();
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || write_report(report, settled, &window, &progress, &shown, &control))
            .context("cannot start the report writer")?
    };

    let _signals = runtime.spawn(watch_signals(control.clone(), progress.clone()));
    let pool = Pool::new(engine, args.concurrency as usize, outcomes.clone());

    // Pass 2: the same checks again, streaming each row to where it belongs.
    let mut seq = 0u64;
    let mut valid = 0u64;
    let limit = args.limit;
    let feed = check_manifest(&args.manifest, today, |verdict| {
        let (line, file, problems, row) = match verdict {
            Verdict::Manifest(_) => return ControlFlow::Continue(()),
            Verdict::Invalid {
                line,
                file,
                problems,
            } => (line, file.unwrap_or_default(), problems, None),
            Verdict::Valid { row, warnings } => (row.line, row.file.clone(), warnings, Some(row)),
        };
        if runtime
            .block_on(window.acquire())
            .map(|permit| permit.forget())
            .is_err()
        {
            return ControlFlow::Break(());
        }
        let this = seq;
        seq += 1;
        let settle = |row: ReportRow| {
            let _ = outcomes.send(Outcome { seq: this, row });
        };
        let Some(row) = row else {
            let mut settled = ReportRow::new(line, file, RowStatus::Invalid);
            settled.error = Some(join_problems(&problems, true));
            settled.notes = notes_from(&problems);
            settle(settled);
            return ControlFlow::Continue(());
        };
        valid += 1;
        if limit.is_some_and(|limit| valid > limit) {
            let mut settled = ReportRow::new(line, file, RowStatus::NotAttempted);
            settled
                .notes
                .push(format!("beyond --limit {}", limit.unwrap_or_default()));
            settle(settled);
            return ControlFlow::Continue(());
        }
        let body = body_bytes(&row);
        let identity = RowIdentity::new(&row.file, row.size, &body);
        let stored = match journal.lookup(&identity) {
            Ok(stored) => stored,
            Err(err) => {
                control.stop(StopReason::Journal(format!("{err:#}")));
                None
            }
        };
        let mut warnings = notes_from(&problems);
        if let Some(left) = (!leftovers.is_empty())
            .then(|| leftovers.get(&identity.hex()))
            .flatten()
        {
            warnings.push(left.note());
        }
        if let Some(stored) = stored.as_ref().filter(|s| s.state == State::Uploaded) {
            let mut settled = ReportRow::new(line, file, RowStatus::AlreadyUploaded);
            settled.conversation_id = stored.conversation_id.as_ref().map(|c| c.0.clone());
            settled.bytes = stored.bytes;
            settled.sha256 = stored.sha256.clone();
            settled.notes = warnings;
            settle(settled);
            return ControlFlow::Continue(());
        }
        if control.is_stopping() {
            let mut settled = ReportRow::new(line, file, RowStatus::NotAttempted);
            warnings.push(stopped_note(control.reason()));
            settled.notes = warnings;
            settle(settled);
            return ControlFlow::Continue(());
        }
        let job = Job {
            seq: this,
            line,
            file,
            path: row.path,
            size: row.size,
            body,
            identity,
            resume: stored,
            warnings,
        };
        runtime.block_on(pool.submit(job));
        ControlFlow::Continue(())
    });
    runtime.block_on(pool.wait());
    drop(pool);
    drop(outcomes);
    let written = reporter
        .join()
        .map_err(|_| anyhow::anyhow!("the report writer stopped unexpectedly"))?;
    journal.close();
    if let Some(sandbox) = sandbox {
        runtime.block_on(sandbox.stop());
    }
    let elapsed = started.elapsed();
    progress.finish();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let feed = feed?;
    let counts = written?;
    if feed.stopped || counts.total() != feed.rows {
        bail!(
            "the manifest changed while it was uploaded ({} rows on the second pass, {} in the report); run the same command again",
            feed.rows,
            counts.total()
        );
    }
    finish(
        &settings.report,
        &counts,
        elapsed,
        control.reason(),
        &progress,
    )
}

/// Prints the summary and decides the exit status.
fn finish(
    report: &Path,
    counts: &Counts,
    elapsed: Duration,
    reason: Option<StopReason>,
    progress: &Progress,
) -> anyhow::Result<Status> {
    let (ending, status) = match &reason {
        None if counts.all_uploaded() => (Ending::Done, Status::Success),
        None => (Ending::Done, Status::Partial),
        Some(StopReason::Interrupted) => (Ending::Interrupted, Status::Interrupted),
        Some(StopReason::Misconfigured(message)) => {
            progress.failure(&format!("error: {message}"));
            (Ending::Stopped, Status::Usage)
        }
        Some(StopReason::TokenRefused(message)) => {
            progress.failure(&format!("error: {message}"));
            (Ending::Stopped, Status::Partial)
        }
        Some(StopReason::Journal(message)) => {
            progress.failure(&format!(
                "error: {message}; stopped so that no row is uploaded twice later: free the disk or fix the journal's folder, then run the same command to resume"
            ));
            (Ending::Stopped, Status::Partial)
        }
    };
    progress.failure(&summary_line(counts, elapsed, report, ending));
    Ok(status)
}

/// The report writer's thread: outcomes in any order, rows out in manifest order.
fn write_report(
    mut report: ReportWriter,
    settled: mpsc::Receiver<Outcome>,
    window: &Semaphore,
    progress: &Progress,
    shown: &str,
    control: &RunControl,
) -> anyhow::Result<Counts> {
    let mut failure = None;
    for outcome in settled {
        match outcome.row.status {
            RowStatus::Uploaded => progress.row_done(false),
            RowStatus::Failed => {
                progress.row_done(true);
                let error = outcome.row.error.as_deref().unwrap_or("unknown error");
                if !same_as_the_stop(control) {
                    progress.failure(&format!(
                        "{shown}:{}: {}: failed: {error}",
                        outcome.row.line, outcome.row.file,
                    ));
                }
            }
            _ => {}
        }
        continue_report(&mut failure, &mut report, window, outcome);
    }
    match failure {
        Some(err) => Err(err),
        None => report.finish(),
    }
}

/// Guarantee 9: a wrong token, organisation or base URL is one message at the end of the run,
/// not one more line for each row that was in flight. Such a stop comes before any row has
/// succeeded, so every failure then is that one's (the report has each row).
fn same_as_the_stop(control: &RunControl) -> bool {
    matches!(control.reason(), Some(StopReason::Misconfigured(_)))
}

/// Puts a settled row in the report, unless writing it has already failed.
fn continue_report(
    failure: &mut Option<anyhow::Error>,
    report: &mut ReportWriter,
    window: &Semaphore,
    outcome: Outcome,
) {
    if failure.is_none() {
        match report.push(outcome.seq, outcome.row) {
            Ok(written) => window.add_permits(usize::try_from(written).unwrap_or(0)),
            Err(err) => {
                // Keep draining so the pool never blocks on a full window.
                window.add_permits(WINDOW);
                *failure = Some(err);
            }
        }
    } else {
        window.add_permits(1);
    }
}

/// First SIGINT/SIGTERM: stop handing out rows and let those in flight finish. Second: abort.
async fn watch_signals(control: Arc<RunControl>, progress: Arc<Progress>) {
    let Some(mut signals) = Signals::new() else {
        return;
    };
    signals.next().await;
    control.stop(StopReason::Interrupted);
    progress.failure("interrupted: finishing the rows in flight (interrupt again to abort them)");
    signals.next().await;
    control.abort();
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM, registered once for the whole run.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Option<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Some(Signals {
                interrupt: signal(SignalKind::interrupt()).ok()?,
                terminate: signal(SignalKind::terminate()).ok()?,
            })
        }
        #[cfg(not(unix))]
        Some(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `call_date "2024-13-01": not a valid date, ...; agent: required, but missing`.
fn join_problems(problems: &[Problem], errors: bool) -> String {
    problems
        .iter()
        .filter(|p| p.is_error() == errors)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Warnings go to the row's notes.
fn notes_from(problems: &[Problem]) -> Vec<String> {
    problems
        .iter()
        .filter(|p| !p.is_error())
        .map(ToString::to_string)
        .collect()
}

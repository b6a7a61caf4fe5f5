//! `voyc-import upload`: validate every row, then send them through the pool, and report.
//!
//! Two passes over the manifest keep memory flat at any length: pass 1 validates (nothing is
//! sent if a row is invalid, unless `--skip-invalid`) and counts what is left to send; pass 2
//! validates again as it streams rows to the pool. Both plan each row with the same stage
//! (`plan`). Outcomes come back in any order and go to the report writer, which puts them in
//! manifest order; the feeder never runs more than [`WINDOW`] rows ahead of the oldest
//! unsettled one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rayon::prelude::*;
use tokio::sync::Semaphore;

use crate::Status;
use crate::human;
use crate::journal::{Destination, EarlierUpload, Journal, RowIdentity, Stored};
use crate::objects::{ObjectSources, Purpose};
use crate::outcome::{End, Outcome};
use crate::plan::{Lookup, Planner, Prepared, Step, ToSend, prepare};
use crate::progress::{Mode, Progress, RowFailure, Start, Style, Summary};
use crate::report::{Counts, Ending, ReportRow, ReportWriter, Unwritten, summary_line};
use crate::secret::Token;
use crate::settings::{Endpoint, UploadSettings, check_base_url};
use crate::upload::client::{ClientConfig, VoycClient, call1_endpoint};
use crate::upload::clock::Clock;
use crate::upload::http::http_client;
use crate::upload::lock::RunLock;
use crate::upload::outage::Outages;
use crate::upload::pool::{Engine, Job, Pool, RunControl, StopReason, stopped_note};
use crate::upload::rate::CallRate;
use crate::upload::retry::Backoff;
use crate::upload::transfer::Uploader;
use crate::validate::{Known, Unread, Verdict, check_manifest_looking_ahead};

/// How far the feeder may run ahead of the oldest row not yet in the report: bounds the
/// report's reorder buffer (a few hundred bytes a row) whatever the manifest's length.
pub const WINDOW: usize = 16_384;

/// What pass 1 found.
#[derive(Debug, Default)]
struct Found {
    valid: u64,
    invalid: u64,
    manifest_errors: u64,
    beyond_limit: u64,
    already_uploaded: u64,
    to_send: u64,
    bytes_to_send: u64,
    /// `--shard`: rows of other shards, and how many of them have errors.
    other_shards: u64,
    other_shards_invalid: u64,
}

/// `voyc-import upload`; `open_files` is the limit on open files in force (`None`: none).
/// An error that ends the run is printed here, as every other line of the run is (with its
/// timestamp, or as JSON events), and exits 2.
pub fn command(settings: &UploadSettings, open_files: Option<u64>) -> anyhow::Result<Status> {
    let progress = Arc::new(Progress::new(
        Mode::detect(settings.quiet, settings.log_format),
        Style::detect(settings.log_format),
    ));
    match upload(settings, open_files, &progress) {
        Ok(status) => Ok(status),
        Err(err) => {
            progress.finish();
            progress.stopped_by_error(&format!("error: {err:#}"));
            Ok(Status::Usage)
        }
    }
}

fn upload(
    settings: &UploadSettings,
    open_files: Option<u64>,
    progress: &Arc<Progress>,
) -> anyhow::Result<Status> {
    let shown = settings.manifest.shown();
    // Before anything else, so that an overlapping run stops at once: held until the report is
    // written. A dry run writes nothing and needs none.
    let _lock = (!settings.dry_run)
        .then(|| RunLock::acquire(&settings.report))
        .transpose()?;
    // Loading the TLS roots takes tens of milliseconds: done while pass 1 validates.
    let http = (!settings.dry_run).then(|| {
        let (timeout, ca_cert) = (settings.timeout, settings.ca_cert.clone());
        let direct = settings.endpoint.direct();
        std::thread::spawn(move || http_client(timeout, ca_cert.as_deref(), direct))
    });
    let today = chrono::Local::now().date_naive();
    // Signals are watched from the start, so that one during validation also ends the run
    // cleanly (exit 130, the lock removed) instead of killing it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("voyc-upload")
        .build()
        .context("cannot start the async runtime")?;
    let control = Arc::new(RunControl::new());
    let sending = Arc::new(AtomicBool::new(false));
    let _signals = runtime.spawn(watch_signals(
        control.clone(),
        progress.clone(),
        sending.clone(),
    ));

    // A journal of an earlier version gains what this one records before pass 1 reads it
    // (a dry run writes nothing, and finds re-exports only in an up-to-date journal).
    if !settings.dry_run {
        Journal::bring_up_to_date(&settings.journal)?;
    }
    // A journal left by an earlier run tells pass 1 what is already uploaded. A sandbox is a
    // new destination every run, so nothing is.
    let earlier = match &settings.endpoint {
        Endpoint::Voyc {
            base_url,
            organisation,
            ..
        } => Journal::open_for_lookups(
            &settings.journal,
            &Destination::voyc(base_url.as_str(), organisation),
        )?,
        Endpoint::Sandbox { .. } => None,
    };

    // Pass 1: validate everything, print every problem, count what there is to send.
    let mut found = Found::default();
    let mut dry_run_out = settings
        .dry_run
        .then(|| std::io::BufWriter::new(std::io::stdout().lock()));
    // A rerun that finds every row settled (uploaded by an earlier run, say) needs no second
    // pass: pass 1 writes the report as it goes, and gives it up at the first row to send.
    // (A report that cannot be created is left to pass 2, which says so after validation.)
    let mut spool = match (&earlier, settings.dry_run) {
        (Some(earlier), false) => match ReportWriter::create(&settings.report) {
            Ok(writer) => Some((writer, earlier.leftovers()?)),
            Err(_) => None,
        },
        _ => None,
    };
    let leftovers = spool
        .as_mut()
        .map(|(_, leftovers)| std::mem::take(leftovers))
        .unwrap_or_default();
    let mut spool = spool.map(|(writer, _)| writer);
    let mut seq = 0u64;
    let looked_up = LookedUp::default();
    let lookup = FromJournal {
        journal: earlier.as_ref(),
        looked_up: Some(looked_up.clone()),
        // Pass 1 plans; a journal that cannot be read stops pass 2, which sends.
        on_error: |_| {},
    };
    let mut planner = Planner::new(settings.limit, lookup, leftovers)
        .reuploading_changed(settings.reupload_changed);
    let look_ahead = |verdicts: &mut [Verdict]| {
        if let Some(journal) = &earlier {
            look_up_batch(journal, verdicts, &looked_up);
        }
    };
    // Files of rows the journal has uploaded are not read again.
    let known = earlier
        .as_ref()
        .map(|journal| move |rows: &[Unread<'_>]| Prepared::unread(journal, rows));
    let known = known.as_ref().map(|known| known as Known<'_>);
    // A manifest with no rows: with --allow-empty, a day without calls (said once at the end).
    let mut no_rows = None;
    let summary =
        check_manifest_looking_ahead(&settings.manifest, today, known, look_ahead, |verdict| {
            if control.is_stopping() {
                return ControlFlow::Break(());
            }
            if let Verdict::Empty(problem) = &verdict
                && settings.allow_empty
            {
                no_rows = Some(problem.clone());
                return ControlFlow::Continue(());
            }
            // Another shard's row: its errors (below), never its warnings.
            let own = !matches!(verdict, Verdict::OtherShard { .. });
            for problem in verdict.problems().iter().filter(|_| own) {
                let line = format!("{shown}:{}: {problem}", problem.line);
                if problem.is_error() {
                    progress.failure(&line);
                } else {
                    progress.warning(&line);
                }
            }
            let step = planner.plan(verdict);
            if !matches!(step, Step::Manifest(_) | Step::OtherShard { .. }) {
                seq += 1;
            }
            match &step {
                Step::Manifest(problem) => found.manifest_errors += u64::from(problem.is_error()),
                Step::OtherShard { problems } => {
                    found.other_shards += 1;
                    // With --skip-invalid another shard's row is that shard's business alone.
                    if !problems.is_empty() && !settings.skip_invalid {
                        found.other_shards_invalid += 1;
                        for problem in problems.iter() {
                            progress.failure(&format!("{shown}:{}: {problem}", problem.line));
                        }
                    }
                }
                Step::Invalid { .. } => found.invalid += 1,
                Step::BeyondLimit { .. } => {
                    found.valid += 1;
                    found.beyond_limit += 1;
                }
                Step::AlreadyUploaded { row, notes, .. } => {
                    found.valid += 1;
                    found.already_uploaded += 1;
                    if let Some(out) = &mut dry_run_out {
                        let file = human::one_line(&row.file);
                        let notes = match notes.is_empty() {
                            true => String::new(),
                            false => format!(" ({})", human::one_line(&notes.join("; "))),
                        };
                        let _ =
                            writeln!(out, "{shown}:{}: {file}: already uploaded{notes}", row.line);
                    }
                }
                Step::Send(ToSend { row, body, .. }) => {
                    found.valid += 1;
                    found.to_send += 1;
                    found.bytes_to_send += row.size;
                    if let Some(out) = &mut dry_run_out {
                        // `manifest.csv:2: calls/0001.wav (23,456 bytes): {"channel_id":"42",...}`.
                        let _ = writeln!(
                            out,
                            "{shown}:{}: {} ({} bytes): {}",
                            row.line,
                            human::one_line(&row.file),
                            human::count(row.size),
                            String::from_utf8_lossy(body)
                        );
                    }
                }
            }
            if let Some(writer) = &mut spool {
                let pushed = match step {
                    Step::Send(_) => Err(()),
                    settled => match settled.settled(seq - 1) {
                        Some(outcome) => writer
                            .push(outcome.seq, ReportRow::from(outcome))
                            .map_err(drop),
                        None => Ok(0),
                    },
                };
                if pushed.is_err() {
                    // Pass 2 writes the report (and says why, if it cannot).
                    spool = None;
                }
            }
            ControlFlow::Continue(())
        })?;
    drop(planner);
    drop(earlier);
    if summary.stopped {
        progress.summary(&Summary {
            ending: "interrupted",
            line: "interrupted during validation: nothing was sent; run the same command to start again",
            counts: &Counts::default(),
            duration: Duration::ZERO,
            report: None,
            status: Status::Interrupted,
        });
        return Ok(Status::Interrupted);
    }
    if let Some(problem) = no_rows {
        if found.manifest_errors > 0 {
            progress.failure(&format!("{shown}:{}: {problem}", problem.line));
            found.manifest_errors += 1;
        } else {
            return nothing_to_send(settings, &shown, progress);
        }
    }
    let invalid = found.invalid + found.other_shards_invalid;
    if found.manifest_errors > 0 || (invalid > 0 && !settings.skip_invalid) {
        progress.failure(&summary.to_string());
        let advice = if found.manifest_errors > 0 {
            "nothing was sent: fix the manifest"
        } else {
            "nothing was sent: fix the rows above, or pass --skip-invalid to upload the valid rows and report the others as invalid"
        };
        progress.summary(&Summary {
            ending: "not_started",
            line: &format!("upload: {advice}"),
            counts: &Counts {
                invalid: found.invalid,
                ..Counts::default()
            },
            duration: Duration::ZERO,
            report: None,
            status: Status::Usage,
        });
        return Ok(Status::Usage);
    }
    // `manifest.csv: shard 2/4: 26 of 100 rows; 26 valid rows`.
    let shard = match settings.manifest.shard {
        Some(shard) => {
            let own = found.valid + found.invalid;
            format!(
                " shard {shard}: {} of {};",
                human::count(own),
                human::count_of(own + found.other_shards, "row", "rows")
            )
        }
        None => String::new(),
    };
    let mut valid_line = format!(
        "{shown}:{shard} {} valid",
        human::count_of(found.valid, "row", "rows")
    );
    if found.invalid > 0 {
        valid_line.push_str(&format!(
            ", {} invalid (skipped)",
            human::count(found.invalid)
        ));
    }
    if found.beyond_limit > 0 {
        valid_line.push_str(&format!(
            "; --limit takes the first {}",
            human::count(found.valid - found.beyond_limit)
        ));
    }
    progress.say(&valid_line);

    if settings.dry_run {
        return dry_run_end(settings, &found, dry_run_out);
    }
    if let Some(report) = spool.filter(|_| found.to_send == 0) {
        return settled_in_pass_1(settings, &shown, &found, report, progress);
    }

    let http = http
        .expect("an HTTP client unless --dry-run")
        .join()
        .map_err(|_| anyhow::anyhow!("cannot set up the HTTP client"))??;
    let concurrency = crate::descriptors::concurrency_within(open_files, settings.concurrency);
    if concurrency < settings.concurrency {
        progress.say(&format!(
            "--concurrency {} lowered to {concurrency}: this process may open only {} files at once (ulimit -n); raise the limit to upload more rows at a time",
            settings.concurrency,
            open_files.unwrap_or_default()
        ));
    }
    sending.store(true, Ordering::Relaxed);
    run(
        settings,
        &shown,
        &found,
        progress.clone(),
        today,
        http,
        runtime,
        control,
        concurrency,
    )
}

/// Pass 1 settled every row (uploaded by an earlier run, beyond `--limit`, invalid and
/// skipped): there is nothing to send, so no second pass, and the report pass 1 wrote is the
/// run's. The run says what a run that sent nothing says.
fn settled_in_pass_1(
    settings: &UploadSettings,
    shown: &str,
    found: &Found,
    report: ReportWriter,
    progress: &Progress,
) -> anyhow::Result<Status> {
    let destination = match &settings.endpoint {
        Endpoint::Voyc {
            base_url,
            organisation,
            ..
        } => call1_endpoint(base_url, organisation).to_string(),
        Endpoint::Sandbox { .. } => bail!("a sandbox run has no earlier rows to settle"),
    };
    announce(progress, shown, found, settings.concurrency, &destination);
    let started = Instant::now();
    let written = report.finish();
    progress.finish();
    match written {
        Ok(counts) => finish(&settings.report, &counts, started.elapsed(), None, progress),
        Err(unwritten) => Ok(report_not_written(settings, &unwritten, progress)),
    }
}

/// What a run says as it starts sending: how many rows earlier runs uploaded, then the start.
fn announce(
    progress: &Progress,
    shown: &str,
    found: &Found,
    concurrency: usize,
    destination: &str,
) {
    if found.already_uploaded > 0 {
        progress.say(&format!(
            "resuming: {} already uploaded",
            human::count_of(found.already_uploaded, "row", "rows")
        ));
    }
    progress.start(&Start {
        manifest: shown,
        rows: found.to_send,
        bytes: found.bytes_to_send,
        already_uploaded: found.already_uploaded,
        concurrency,
        destination,
    });
}

/// `--allow-empty` and a manifest with no rows: one line (none with `--quiet`), a report with
/// no rows (so that every night has one), exit 0.
fn nothing_to_send(
    settings: &UploadSettings,
    shown: &str,
    progress: &Progress,
) -> anyhow::Result<Status> {
    if !settings.dry_run {
        ReportWriter::create(&settings.report)?
            .finish()
            .map_err(|unwritten| unwritten.error)?;
    }
    let report = match settings.dry_run {
        true => String::new(),
        false => format!("; report {}", settings.report.display()),
    };
    progress.summary(&Summary {
        ending: "nothing_to_send",
        line: &format!("{shown}: no rows, nothing to send (--allow-empty){report}"),
        counts: &Counts::default(),
        duration: Duration::ZERO,
        report: (!settings.dry_run).then_some(settings.report.as_path()),
        status: Status::Success,
    });
    Ok(Status::Success)
}

/// The last line of a dry run, and its status: as the real run would end if every call
/// succeeded (rows skipped as invalid or left beyond --limit make it 1).
fn dry_run_end(
    settings: &UploadSettings,
    found: &Found,
    out: Option<std::io::BufWriter<std::io::StdoutLock<'_>>>,
) -> anyhow::Result<Status> {
    let destination = match &settings.endpoint {
        Endpoint::Voyc {
            base_url,
            organisation,
            ..
        } => call1_endpoint(base_url, organisation).to_string(),
        Endpoint::Sandbox { .. } => "an in-process sandbox".to_string(),
    };
    let mut line = format!(
        "dry run: {}, {} would be sent to {destination}",
        human::count_of(found.to_send, "row", "rows"),
        human::bytes(found.bytes_to_send)
    );
    if found.already_uploaded > 0 {
        line.push_str(&format!(
            " ({} already uploaded)",
            human::count(found.already_uploaded)
        ));
    }
    line.push_str("; nothing was sent");
    if let Some(mut out) = out {
        let written = writeln!(out, "{line}").and_then(|()| out.flush());
        match written {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(err).context("cannot write to standard output");
            }
            _ => {}
        }
    }
    Ok(if found.invalid > 0 || found.beyond_limit > 0 {
        Status::Partial
    } else {
        Status::Success
    })
}

/// Pass 2 and the pool, on the tokio runtime whose task watches for signals.
#[allow(clippy::too_many_arguments)]
fn run(
    settings: &UploadSettings,
    shown: &str,
    found: &Found,
    progress: Arc<Progress>,
    today: chrono::NaiveDate,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    control: Arc<RunControl>,
    concurrency: usize,
) -> anyhow::Result<Status> {
    // The report's folder must be writable before anything is sent.
    let report = ReportWriter::create(&settings.report)?;

    let mut sandbox = None;
    let mut token_command = None;
    let (base_url, organisation, token, destination) = match &settings.endpoint {
        Endpoint::Voyc {
            base_url,
            organisation,
            token,
            token_command: command,
        } => {
            token_command = command.clone();
            (
                base_url.clone(),
                organisation.clone(),
                token.clone().expect("a token unless --dry-run"),
                Destination::voyc(base_url.as_str(), organisation),
            )
        }
        Endpoint::Sandbox { organisation } => {
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
    let destination_shown = call1_endpoint(&base_url, &organisation).to_string();
    if let Some(dir) = &settings.state_dir {
        crate::state_dir::create(dir)?;
    }
    let journal = Arc::new(Journal::open_for_run(
        &settings.journal,
        &destination,
        &settings.report,
    )?);
    // What earlier runs left without audio, so that this run's report says it again.
    let leftovers = journal
        .leftovers()
        .with_context(|| format!("cannot read the journal {}", settings.journal.display()))?;
    let mut client = VoycClient::with_http(
        http.clone(),
        ClientConfig {
            base_url,
            organisation: organisation.clone(),
            token,
            timeout: settings.timeout,
        },
    );
    if let Some(command) = token_command {
        client = client.with_token_command(command);
    }
    let engine = Arc::new(Engine {
        client,
        uploader: Uploader::new(http, settings.timeout)
            .with_bandwidth(settings.bwlimit)
            .with_objects(ObjectSources::new(
                settings.manifest.sources.clone(),
                Purpose::Upload {
                    idle: settings.timeout,
                },
            )),
        journal: journal.clone(),
        control: control.clone(),
        retries: settings.retries,
        backoff: Mutex::new(Backoff::default()),
        clock: Clock::Real,
        sent: progress.bytes_counter(),
        organisation,
        outages: Outages::new(settings.max_outage),
        call_rate: CallRate::new(settings.max_rps),
    });

    announce(&progress, shown, found, concurrency, &destination_shown);
    let started = Instant::now();
    let watcher = runtime.spawn(watch_outages(engine.clone(), progress.clone()));

    let (outcomes, settled) = mpsc::channel::<Outcome>();
    let window = Arc::new(Semaphore::new(WINDOW));
    let reporter = {
        let window = window.clone();
        let progress = progress.clone();
        let shown = shown.to_string();
        let control = control.clone();
        std::thread::Builder::new()
            .name("report".into())
            .spawn(move || write_report(report, settled, &window, &progress, &shown, &control))
            .context("cannot start the report writer")?
    };

    let pool = Pool::new(engine.clone(), concurrency, outcomes.clone());

    // Pass 2: the same checks and the same plan again, streaming each row to where it belongs.
    let mut seq = 0u64;
    let looked_up = LookedUp::default();
    let lookup = FromJournal {
        journal: Some(&*journal),
        looked_up: Some(looked_up.clone()),
        on_error: |err: anyhow::Error| {
            control.stop(StopReason::Journal(format!("{err:#}")));
        },
    };
    let mut planner = Planner::new(settings.limit, lookup, leftovers)
        .reuploading_changed(settings.reupload_changed);
    // A row another run uploads after it was looked up is not sent twice: the claim, which
    // comes first, finds it uploaded.
    let look_ahead = |verdicts: &mut [Verdict]| look_up_batch(&journal, verdicts, &looked_up);
    let known = |rows: &[Unread<'_>]| Prepared::unread(&journal, rows);
    let feed = check_manifest_looking_ahead(
        &settings.manifest,
        today,
        Some(&known),
        look_ahead,
        |verdict| {
            let step = planner.plan(verdict);
            if matches!(step, Step::Manifest(_) | Step::OtherShard { .. }) {
                return ControlFlow::Continue(());
            }
            if runtime
                .block_on(window.acquire())
                .map(|permit| permit.forget())
                .is_err()
            {
                return ControlFlow::Break(());
            }
            let this = seq;
            seq += 1;
            let outcome = match step {
                Step::Send(send) if control.is_stopping() => {
                    send.unsent(this, stopped_note(control.reason()))
                }
                Step::Send(send) => {
                    runtime.block_on(pool.submit(Job::new(this, send)));
                    return ControlFlow::Continue(());
                }
                settled => settled
                    .settled(this)
                    .expect("a row settled without sending"),
            };
            let _ = outcomes.send(outcome);
            ControlFlow::Continue(())
        },
    );
    drop(planner);
    runtime.block_on(pool.wait());
    drop(pool);
    watcher.abort();
    progress.waiting(None);
    say_pacing(&engine, &progress);
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
    let (counts, unwritten) = match written {
        Ok(counts) => (counts, None),
        Err(unwritten) => (unwritten.counts.clone(), Some(unwritten)),
    };
    if feed.stopped || counts.total() != feed.rows {
        bail!(
            "the manifest changed while it was uploaded ({} rows on the second pass, {} in the report); run the same command again",
            feed.rows,
            counts.total()
        );
    }
    if let Some(unwritten) = unwritten {
        return Ok(report_not_written(settings, &unwritten, &progress));
    }
    finish(
        &settings.report,
        &counts,
        elapsed,
        control.reason(),
        &progress,
    )
}

/// Every row is settled and journaled, but the report could not be written (a full disk, a
/// folder turned read-only, a folder put where the report goes): exit 1, with the summary, where
/// the rows are, and how to write the report without uploading anything again. The default
/// journal follows the report's path, so the rerun must name this run's journal.
fn report_not_written(
    settings: &UploadSettings,
    unwritten: &Unwritten,
    progress: &Progress,
) -> Status {
    let journal = settings.journal.display();
    let held = match &unwritten.kept {
        Some(kept) => format!(
            "its rows are in {} and in the journal {journal}",
            kept.display()
        ),
        None => format!("its rows are in the journal {journal}"),
    };
    progress.failure(&format!("error: {:#}; {held}", unwritten.error));
    progress.summary(&Summary {
        ending: "report_not_written",
        line: &summary_line(
            &unwritten.counts,
            Duration::ZERO,
            &settings.report,
            Ending::NotWritten,
        ),
        counts: &unwritten.counts,
        duration: Duration::ZERO,
        report: None,
        status: Status::Partial,
    });
    progress.failure(&match settings.state_dir {
        // The journal does not follow the report: the same command finds it.
        Some(_) => "to write the report, run the same command with a --report that can be written: rows already uploaded are not sent again".to_string(),
        None => format!(
            "to write the report, run the same command with --journal {journal} (and a --report that can be written): rows already uploaded are not sent again"
        ),
    });
    Status::Partial
}

/// The planner's questions, answered by a journal (`None`: there is none yet); a journal
/// that cannot be read is handed to `on_error` and answers nothing.
struct FromJournal<'a, E> {
    journal: Option<&'a Journal>,
    /// Rows of the batch being planned, looked up before it (see `Journal::lookup_many`).
    looked_up: Option<LookedUp>,
    on_error: E,
}

type LookedUp = Rc<RefCell<HashMap<RowIdentity, Option<Stored>>>>;

/// Looks a batch's valid rows up at once, in parallel, before they are planned. A row not
/// found in advance (the journal could not be read) is asked again when planned, where its
/// error is seen.
fn look_up_batch(journal: &Journal, verdicts: &mut [Verdict], looked_up: &LookedUp) {
    let mut looked_up = looked_up.borrow_mut();
    looked_up.clear();
    // Rows looked up before their files were read ([`Prepared::unread`]) are not asked again.
    for verdict in verdicts.iter_mut() {
        if let Verdict::Valid { row, .. } = verdict
            && let Some((identity, found)) =
                row.prepared.as_deref_mut().and_then(Prepared::take_found)
        {
            looked_up.insert(identity, found);
        }
    }
    let identities: Vec<RowIdentity> = verdicts
        .par_iter_mut()
        .filter_map(|verdict| match verdict {
            Verdict::Valid { row, .. } if row.prepared.is_none() => Some(prepare(row)),
            _ => None,
        })
        .collect();
    if let Ok(answers) = journal.lookup_many(&identities) {
        looked_up.extend(identities.into_iter().zip(answers));
    }
}

impl<E: FnMut(anyhow::Error)> Lookup for FromJournal<'_, E> {
    fn row(&mut self, identity: &RowIdentity) -> Option<Stored> {
        if let Some(answer) = self
            .looked_up
            .as_ref()
            .and_then(|looked_up| looked_up.borrow_mut().remove(identity))
        {
            return answer;
        }
        match self.journal?.lookup(identity) {
            Ok(stored) => stored,
            Err(err) => {
                (self.on_error)(err);
                None
            }
        }
    }

    fn uploaded_file(&mut self, path: &str, size: u64) -> Option<EarlierUpload> {
        match self.journal?.uploaded_file(path, size) {
            Ok(earlier) => earlier,
            Err(err) => {
                (self.on_error)(err);
                None
            }
        }
    }
}

/// Shows a service that is down, about once a second, until the run ends.
async fn watch_outages(engine: Arc<Engine>, progress: Arc<Progress>) {
    loop {
        progress.waiting(engine.outages.down(Instant::now()).as_ref());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What outages and throttling cost the run, if they did.
fn say_pacing(engine: &Engine, progress: &Progress) {
    let gates = [
        &engine.outages.api,
        &engine.outages.s3,
        &engine.outages.source,
    ];
    let waited: Vec<String> = gates
        .iter()
        .filter_map(|gate| {
            let (outages, down_time) = gate.waited();
            (outages > 0).then(|| {
                format!(
                    "{} of {} ({})",
                    human::count_of(u64::from(outages), "outage", "outages"),
                    gate.service(),
                    human::elapsed(down_time)
                )
            })
        })
        .collect();
    if !waited.is_empty() {
        let probes: u64 = gates.iter().map(|gate| gate.probes_failed()).sum();
        progress.say(&format!(
            "waited out {}; {} met the outage",
            waited.join(" and "),
            human::count_of(probes, "probe", "probes"),
        ));
    }
    let rate = engine.call_rate.stats();
    if rate.throttled > 0 {
        let share = 100.0 * rate.throttled as f64 / rate.requests.max(1) as f64;
        let settled = rate
            .rate
            .map(|r| format!("; call 1 went at most {r:.1} a second at the end"))
            .unwrap_or_default();
        progress.say(&format!(
            "throttled: {} of {} call-1 requests answered 429 ({share:.1}%){settled}",
            human::count(rate.throttled),
            human::count(rate.requests),
        ));
    }
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
        Some(StopReason::TokenRefused(message) | StopReason::Outage(message)) => {
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
    progress.summary(&Summary {
        ending: match ending {
            Ending::Done => "done",
            Ending::Interrupted => "interrupted",
            Ending::Stopped => "stopped",
            Ending::NotWritten => "report_not_written",
        },
        line: &summary_line(counts, elapsed, report, ending),
        counts,
        duration: elapsed,
        report: Some(report),
        status,
    });
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
) -> Result<Counts, Unwritten> {
    let mut failure = None;
    for outcome in settled {
        match &outcome.end {
            End::Uploaded { .. } => progress.row_uploaded(),
            End::Failed { error, .. } => progress.row_failed(
                &RowFailure {
                    manifest: shown,
                    line: outcome.line,
                    file: &outcome.file,
                    error,
                    attempts: outcome.attempts,
                },
                !same_as_the_stop(control),
            ),
            _ => {}
        }
        continue_report(&mut failure, &mut report, window, outcome);
    }
    match failure {
        Some(err) => Err(report.abandon(err)),
        None => report.finish(),
    }
}

/// A wrong token, organisation or base URL is one message at the end of the run,
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
        match report.push(outcome.seq, ReportRow::from(outcome)) {
            Ok(written) => window.add_permits(usize::try_from(written).unwrap_or(0)),
            Err(err) => {
                // Keep draining so the pool never blocks on a full window.
                window.add_permits(WINDOW);
                *failure = Some(err);
            }
        }
    } else {
        report.count(&ReportRow::from(outcome));
        window.add_permits(1);
    }
}

/// First SIGINT/SIGTERM/SIGHUP: stop handing out rows and let those in flight finish (during
/// validation: stop validating). Second: abort.
async fn watch_signals(
    control: Arc<RunControl>,
    progress: Arc<Progress>,
    sending: Arc<AtomicBool>,
) {
    let Some(mut signals) = Signals::new() else {
        return;
    };
    signals.next().await;
    control.stop(StopReason::Interrupted);
    if sending.load(Ordering::Relaxed) {
        progress
            .failure("interrupted: finishing the rows in flight (interrupt again to abort them)");
    }
    signals.next().await;
    control.abort();
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM and SIGHUP (an SSH session dropped mid-migration),
/// registered once for the whole run.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Option<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Some(Signals {
                interrupt: signal(SignalKind::interrupt()).ok()?,
                terminate: signal(SignalKind::terminate()).ok()?,
                hangup: signal(SignalKind::hangup()).ok()?,
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
            _ = self.hangup.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

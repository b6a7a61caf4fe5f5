//! What the user sees while a run goes: a live bar on a terminal, timestamped plain lines
//! otherwise, or one JSON object per event (`--log-format json`) for a log shipper.
//!
//! Whether stderr is a terminal is decided once, at the start. On a terminal: an indicatif
//! bar with files, bytes, rate, ETA and failures, and no timestamps. Otherwise (cron, a pipe, a
//! CI log): every line starts with an RFC 3339 timestamp in UTC (`2026-12-03T11:52:07Z`), one
//! `progress:` line every 10 seconds and one line per failed row, never a control character.
//! With `--log-format json`: the same events as JSON objects, one per line, each with `ts`
//! and `event` (docs/logging.md lists them with their keys), and never a bar.
//! With `--quiet`: nothing when every row succeeded, otherwise only failed rows, errors and the
//! summary. The summary groups the failures by cause. Nothing in `upload/` knows about this.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::Status;
use crate::human;
use crate::report::Counts;

/// The fewest columns the bar itself keeps on a narrow terminal.
const MIN_BAR: usize = 4;

/// How often a log line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How many causes of failure the summary names; the others are counted.
pub const SHOWN_CAUSES: usize = 5;

/// How many different causes of failure are told apart: past it, a new cause's rows are only
/// counted, so that a million different messages do not hold a million strings.
const KEPT_CAUSES: usize = 10_000;

/// How progress is shown, decided once per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live bar on stderr (a terminal, plain format).
    Bar,
    /// A line (or a JSON event) every [`LOG_EVERY`], and each failure (stderr is a file or a
    /// pipe, or the format is JSON).
    Log,
    /// Only failures and the summary (`--quiet`).
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool, format: LogFormat) -> Mode {
        if quiet {
            Mode::Quiet
        } else if format == LogFormat::Json || !std::io::stderr().is_terminal() {
            Mode::Log
        } else {
            Mode::Bar
        }
    }
}

/// `--log-format`: lines for a person, or JSON objects for a machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// How each line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    pub format: LogFormat,
    /// Plain lines start with a timestamp (not on a terminal); JSON objects always have `ts`.
    pub timestamps: bool,
}

impl Style {
    /// `format` on stderr: plain lines are timestamped unless stderr is a terminal.
    pub fn detect(format: LogFormat) -> Style {
        Style {
            format,
            timestamps: !std::io::stderr().is_terminal(),
        }
    }
}

/// Where the time comes from: the system's, or a test's that it moves by hand.
pub trait Clock: Send + Sync {
    /// The time of day, for timestamps.
    fn now(&self) -> DateTime<Utc>;
    /// A monotonic instant, for rates and how often a line is repeated.
    fn instant(&self) -> Instant;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The run is held up: a service is unreachable and one probe at a time is being made (the
/// outage gate's own account of it).
pub use crate::upload::outage::Down as Waiting;

impl Waiting {
    /// `waiting: Voyc unavailable for 2m10s (HTTP 503), next try in 20s`.
    fn line(&self) -> String {
        format!(
            "waiting: {} unavailable for {} ({}), next try in {}",
            human::one_line(self.service),
            human::elapsed(self.down_for),
            human::one_line(&self.cause),
            human::elapsed(self.next_try_in)
        )
    }

    fn fields(&self) -> Value {
        json!({
            "service": self.service,
            "down_for_ms": millis(self.down_for),
            "cause": self.cause,
            "next_try_in_ms": millis(self.next_try_in),
        })
    }
}

/// What the run is about to send, for the `start` event.
#[derive(Clone, Debug)]
pub struct Start<'a> {
    /// The manifest as the user named it.
    pub manifest: &'a str,
    /// Rows to send, and their bytes.
    pub rows: u64,
    pub bytes: u64,
    /// Rows an earlier run uploaded, not sent again.
    pub already_uploaded: u64,
    pub concurrency: usize,
    /// Where call 1 goes (a URL without secrets).
    pub destination: &'a str,
}

/// A row that failed, as its line on stderr and its `row_failed` event.
#[derive(Clone, Debug)]
pub struct RowFailure<'a> {
    /// The manifest as the user named it.
    pub manifest: &'a str,
    pub line: u64,
    pub file: &'a str,
    pub error: &'a str,
    pub attempts: u32,
}

/// How the run ended, for the summary.
#[derive(Clone, Debug)]
pub struct Summary<'a> {
    /// `done`, `interrupted`, `stopped`, `report_not_written`, `nothing_to_send` or
    /// `not_started` (the `ending` of the summary event).
    pub ending: &'static str,
    /// The plain summary line (`done: 7 uploaded in 1.2s (...); report ...`).
    pub line: &'a str,
    pub counts: &'a Counts,
    pub duration: Duration,
    pub report: Option<&'a Path>,
    pub status: Status,
}

/// Counters the workers update and the display reads.
struct Counters {
    clock: Arc<dyn Clock>,
    started: Instant,
    rows_total: AtomicU64,
    rows_done: AtomicU64,
    failed: AtomicU64,
    bytes_total: AtomicU64,
    /// Bytes sent so far, counted as they stream (wound back when an attempt fails).
    bytes: Arc<AtomicU64>,
}

impl Counters {
    fn new(clock: Arc<dyn Clock>) -> Counters {
        Counters {
            started: clock.instant(),
            clock,
            rows_total: AtomicU64::new(0),
            rows_done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    fn elapsed(&self) -> Duration {
        self.clock.instant().saturating_duration_since(self.started)
    }

    /// The bar's figures in at most `room` columns: `21,944/48,210  9.8 GiB/21.7 GiB  41 files/s
    /// ETA 10m41s  2 failed`, the least needed dropped first (rate, then ETA, then bytes), and
    /// what still does not fit cut short. While the run waits for a service, the count and
    /// what it waits for.
    fn fitted(&self, room: usize, waiting: Option<&str>) -> String {
        let done = self.rows_done.load(Ordering::Relaxed);
        let total = self.rows_total.load(Ordering::Relaxed);
        let count = format!("{}/{}", human::count(done), human::count(total));
        if let Some(waiting) = waiting {
            return format!("{count}  {waiting}").chars().take(room).collect();
        }
        let failed = self.failed.load(Ordering::Relaxed);
        let eta = self.eta().map_or_else(|| "-".into(), human::elapsed);
        let mut parts = vec![
            (0, count),
            (3, self.transfer()),
            (1, self.rate()),
            (2, format!("ETA {eta}")),
        ];
        if failed > 0 {
            parts.push((4, format!("{} failed", human::count(failed))));
        }
        let width = |parts: &[(u8, String)]| {
            parts
                .iter()
                .map(|(_, text)| text.chars().count())
                .sum::<usize>()
                + 2 * parts.len().saturating_sub(1)
        };
        for drop in [1, 2, 3] {
            if width(&parts) <= room {
                break;
            }
            parts.retain(|(rank, _)| *rank != drop);
        }
        let line: Vec<&str> = parts.iter().map(|(_, text)| text.as_str()).collect();
        line.join("  ").chars().take(room).collect()
    }

    /// `21,944/48,210 files, 9.8 GiB/21.7 GiB, 41 files/s, ETA 10m41s, 2 failed`.
    fn line(&self) -> String {
        let done = self.rows_done.load(Ordering::Relaxed);
        let total = self.rows_total.load(Ordering::Relaxed);
        let mut line = format!(
            "{}/{} files, {}, {}",
            human::count(done),
            human::count(total),
            self.transfer(),
            self.rate()
        );
        if let Some(eta) = self.eta() {
            let _ = write!(line, ", ETA {}", human::elapsed(eta));
        }
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let _ = write!(line, ", {} failed", human::count(failed));
        }
        line
    }

    /// The keys of a `progress` event.
    fn fields(&self) -> Value {
        json!({
            "done": self.rows_done.load(Ordering::Relaxed),
            "total": self.rows_total.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "bytes_total": self.bytes_total.load(Ordering::Relaxed),
            "rate": (self.files_per_second() * 100.0).round() / 100.0,
            "eta_ms": self.eta().map(millis),
        })
    }

    fn transfer(&self) -> String {
        format!(
            "{}/{}",
            human::bytes(self.bytes.load(Ordering::Relaxed)),
            human::bytes(self.bytes_total.load(Ordering::Relaxed))
        )
    }

    fn files_per_second(&self) -> f64 {
        let seconds = self.elapsed().as_secs_f64().max(0.001);
        self.rows_done.load(Ordering::Relaxed) as f64 / seconds
    }

    fn rate(&self) -> String {
        let rate = self.files_per_second();
        if rate >= 10.0 {
            format!("{rate:.0} files/s")
        } else {
            format!("{rate:.1} files/s")
        }
    }

    /// By bytes when there are any (files differ in size), else by files.
    fn eta(&self) -> Option<Duration> {
        let seconds = self.elapsed().as_secs_f64();
        let (done, total) = match self.bytes_total.load(Ordering::Relaxed) {
            0 => (
                self.rows_done.load(Ordering::Relaxed),
                self.rows_total.load(Ordering::Relaxed),
            ),
            total => (self.bytes.load(Ordering::Relaxed), total),
        };
        if done == 0 || seconds < 1.0 {
            return None;
        }
        let remaining = total.saturating_sub(done) as f64 * seconds / done as f64;
        Some(Duration::from_secs_f64(remaining.min(1e9)))
    }
}

/// Failed rows counted by their error, to name the causes in the summary.
///
/// Rows are grouped by their error exactly as reported: the messages come from servers and
/// carry what is row-specific (a file name, a size) only where it matters to the reader, and
/// no rewriting of them (digits, quoted values) tells a code from a value reliably.
#[derive(Debug)]
struct Causes {
    /// Each cause: its rows, and when it was first seen.
    seen: HashMap<String, (u64, usize)>,
    /// Rows whose cause came after [`KEPT_CAUSES`] others: counted, not told apart.
    unkept: u64,
    cap: usize,
}

/// The causes of failure, the largest first.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grouped {
    /// The [`SHOWN_CAUSES`] largest, with their rows.
    shown: Vec<(String, u64)>,
    /// How many other causes (at least, when some were not told apart).
    more_causes: u64,
    /// And their rows.
    more_rows: u64,
    /// Some causes were not told apart: `more_causes` is a lower bound.
    uncounted: bool,
}

impl Causes {
    fn new(cap: usize) -> Causes {
        Causes {
            seen: HashMap::new(),
            unkept: 0,
            cap,
        }
    }

    fn add(&mut self, cause: &str) {
        let next = self.seen.len();
        if let Some((rows, _)) = self.seen.get_mut(cause) {
            *rows += 1;
        } else if next < self.cap {
            self.seen.insert(cause.to_string(), (1, next));
        } else {
            self.unkept += 1;
        }
    }

    /// By rows, most first; a tie in the order they were first seen.
    fn grouped(&self, shown: usize) -> Grouped {
        let mut all: Vec<(&String, &(u64, usize))> = self.seen.iter().collect();
        all.sort_by(|(_, (a, at)), (_, (b, bt))| b.cmp(a).then(at.cmp(bt)));
        let rest = all.split_off(shown.min(all.len()));
        let uncounted = self.unkept > 0;
        Grouped {
            shown: all
                .into_iter()
                .map(|(cause, (rows, _))| (cause.clone(), *rows))
                .collect(),
            more_causes: rest.len() as u64 + u64::from(uncounted),
            more_rows: rest.iter().map(|(_, (rows, _))| rows).sum::<u64>() + self.unkept,
            uncounted,
        }
    }
}

impl Grouped {
    fn rows(&self) -> u64 {
        self.shown.iter().map(|(_, rows)| rows).sum::<u64>() + self.more_rows
    }

    /// `4 failed: 3 × call 1: HTTP 400: ...; 1 × upload: timed out`, with `; and 3 more causes
    /// (7 rows)` past the largest; `None` when nothing failed.
    fn line(&self) -> Option<String> {
        if self.rows() == 0 {
            return None;
        }
        let mut line = format!("{} failed: ", human::count(self.rows()));
        let causes: Vec<String> = self
            .shown
            .iter()
            .map(|(cause, rows)| format!("{} × {}", human::count(*rows), human::one_line(cause)))
            .collect();
        line.push_str(&causes.join("; "));
        if self.more_causes > 0 {
            let more = if self.uncounted { "over " } else { "" };
            let _ = write!(
                line,
                "; and {more}{} ({})",
                human::count_of(self.more_causes, "more cause", "more causes"),
                human::count_of(self.more_rows, "row", "rows")
            );
        }
        Some(line)
    }
}

/// Where every line goes, stamped with the time.
struct Sink {
    out: Mutex<Box<dyn Write + Send>>,
    style: Style,
    clock: Arc<dyn Clock>,
}

impl Sink {
    /// `text` as plain lines, each after a timestamp when the style has them.
    fn line(&self, text: &str) {
        let stamp = self
            .style
            .timestamps
            .then(|| self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true));
        let mut all = String::with_capacity(text.len() + 24);
        for line in text.split('\n') {
            if let Some(stamp) = &stamp {
                all.push_str(stamp);
                all.push(' ');
            }
            all.push_str(line);
            all.push('\n');
        }
        self.write(&all);
    }

    /// One JSON object on a line: `ts` (with milliseconds, for ordering), `event`, `fields`.
    fn event(&self, event: &str, fields: Value) {
        let mut object = Map::new();
        object.insert(
            "ts".into(),
            self.clock
                .now()
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .into(),
        );
        object.insert("event".into(), event.into());
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        self.write(&line);
    }

    fn write(&self, text: &str) {
        let mut out = self.out.lock().expect("progress output");
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// A wait for a service being shown.
#[derive(Debug)]
struct Held {
    last: Waiting,
    /// When `last` was given.
    seen_at: Instant,
    /// When a line about it was last written.
    logged_at: Instant,
}

/// The run's progress display.
pub struct Progress {
    mode: Mode,
    sink: Arc<Sink>,
    counters: Arc<Counters>,
    bar: Mutex<Option<ProgressBar>>,
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    log_every: Duration,
    causes: Mutex<Causes>,
    held: Mutex<Option<Held>>,
    /// What the bar shows instead of its figures while the run waits for a service.
    bar_waiting: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .field("style", &self.sink.style)
            .finish()
    }
}

impl Progress {
    /// Progress on stderr.
    pub fn new(mode: Mode, style: Style) -> Progress {
        Progress::with_output(
            mode,
            style,
            Box::new(std::io::stderr()),
            LOG_EVERY,
            Arc::new(SystemClock),
        )
    }

    /// Progress into `out` (tests), on `clock`'s time, logging every `log_every` in
    /// [`Mode::Log`].
    pub fn with_output(
        mode: Mode,
        style: Style,
        out: Box<dyn Write + Send>,
        log_every: Duration,
        clock: Arc<dyn Clock>,
    ) -> Progress {
        Progress {
            mode,
            sink: Arc::new(Sink {
                out: Mutex::new(out),
                style,
                clock: clock.clone(),
            }),
            counters: Arc::new(Counters::new(clock)),
            bar: Mutex::new(None),
            ticker: Mutex::new(None),
            log_every,
            causes: Mutex::new(Causes::new(KEPT_CAUSES)),
            held: Mutex::new(None),
            bar_waiting: Arc::new(Mutex::new(None)),
        }
    }

    /// The counter uploads add their bytes to.
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.counters.bytes.clone()
    }

    /// Starts the bar or the log ticker for what `start` says will be sent.
    pub fn start(&self, start: &Start<'_>) {
        self.counters
            .rows_total
            .store(start.rows, Ordering::Relaxed);
        self.counters
            .bytes_total
            .store(start.bytes, Ordering::Relaxed);
        if self.mode != Mode::Quiet && self.sink.style.format == LogFormat::Json {
            self.sink.event(
                "start",
                json!({
                    "manifest": start.manifest,
                    "rows": start.rows,
                    "bytes": start.bytes,
                    "already_uploaded": start.already_uploaded,
                    "concurrency": start.concurrency,
                    "destination": start.destination,
                }),
            );
        }
        match self.mode {
            Mode::Bar => *self.bar.lock().expect("progress bar") = Some(self.make_bar(start.rows)),
            Mode::Log => self.start_ticker(),
            Mode::Quiet => {}
        }
    }

    fn make_bar(&self, rows: u64) -> ProgressBar {
        let width =
            || terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(width, _)| width.0);
        self.bar_on(rows, ProgressDrawTarget::stderr(), width)
    }

    /// The bar, drawn to `target`, whose width `width` says at each draw (a terminal may be
    /// resized): the figures first, fitted to the width, then the bar in what is left, so that
    /// the line never wraps (a wrapped line is redrawn as a new one at each tick).
    fn bar_on(
        &self,
        rows: u64,
        target: ProgressDrawTarget,
        width: impl Fn() -> u16 + Clone + Send + Sync + 'static,
    ) -> ProgressBar {
        let figures = {
            let counters = self.counters.clone();
            let waiting = self.bar_waiting.clone();
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let room = usize::from(width()).saturating_sub(MIN_BAR + 4);
                let waiting = waiting.lock().expect("waiting text").clone();
                let _ = w.write_str(&counters.fitted(room, waiting.as_deref()));
            }
        };
        let style = ProgressStyle::with_template("[{wide_bar}] {figures}")
            .expect("a valid progress template")
            .with_key("figures", figures)
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(rows), target);
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }

    fn start_ticker(&self) {
        let (stop, stopped) = mpsc::channel::<()>();
        let counters = self.counters.clone();
        let sink = self.sink.clone();
        let every = self.log_every;
        let thread = std::thread::Builder::new()
            .name("progress-log".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match sink.style.format {
                        LogFormat::Plain => sink.line(&format!("progress: {}", counters.line())),
                        LogFormat::Json => sink.event("progress", counters.fields()),
                    }
                }
            })
            .expect("start the progress log thread");
        *self.ticker.lock().expect("progress ticker") = Some((stop, thread));
    }

    fn settled(&self) {
        self.counters.rows_done.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = self.bar.lock().expect("progress bar").as_ref() {
            bar.inc(1);
        }
    }

    /// A row is uploaded.
    pub fn row_uploaded(&self) {
        self.settled();
    }

    /// A row failed: shown in every mode and counted for the summary's causes, unless
    /// `announce` is false (a stop that one message at the end explains: a wrong token, say,
    /// for every row that was in flight).
    pub fn row_failed(&self, failure: &RowFailure<'_>, announce: bool) {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        self.settled();
        if announce {
            self.causes
                .lock()
                .expect("causes of failure")
                .add(failure.error);
            let line = format!(
                "{}:{}: {}: failed: {}",
                failure.manifest,
                failure.line,
                human::one_line(failure.file),
                human::one_line(failure.error)
            );
            self.emit(&line, "row_failed", || {
                json!({
                    "line": failure.line,
                    "file": failure.file,
                    "error": failure.error,
                    "attempts": failure.attempts,
                })
            });
        }
    }

    /// A status line (`resuming: ...`); not shown with `--quiet`.
    pub fn say(&self, line: &str) {
        if self.mode != Mode::Quiet {
            self.message("info", line);
        }
    }

    /// A warning about the manifest; not shown with `--quiet`.
    pub fn warning(&self, line: &str) {
        if self.mode != Mode::Quiet {
            self.message("warning", line);
        }
    }

    /// An error (a problem of the manifest, a stop); shown in every mode.
    pub fn failure(&self, line: &str) {
        self.message("error", line);
    }

    /// The run is held up by an outage (`Some`, about once a second), or no longer (`None`).
    /// On a terminal the bar says so while it lasts; in a log, a line when it starts, one every
    /// [`LOG_EVERY`] while it lasts, and one when the service answers again; with `--quiet`,
    /// nothing (the summary tells).
    pub fn waiting(&self, waiting: Option<&Waiting>) {
        let now = self.sink.clock.instant();
        let mut held = self.held.lock().expect("waiting state");
        match waiting {
            Some(waiting) => {
                let logged_at = match held.as_ref() {
                    Some(before)
                        if before.last.service == waiting.service
                            && now.saturating_duration_since(before.logged_at) < self.log_every =>
                    {
                        Some(before.logged_at)
                    }
                    _ => None,
                };
                *held = Some(Held {
                    last: waiting.clone(),
                    seen_at: now,
                    logged_at: logged_at.unwrap_or(now),
                });
                drop(held);
                match self.mode {
                    Mode::Bar => {
                        *self.bar_waiting.lock().expect("waiting text") = Some(waiting.line())
                    }
                    Mode::Log if logged_at.is_none() => {
                        self.emit(&waiting.line(), "waiting", || waiting.fields())
                    }
                    Mode::Log | Mode::Quiet => {}
                }
            }
            None => {
                let Some(before) = held.take() else {
                    return;
                };
                drop(held);
                let down_for = before.last.down_for + now.saturating_duration_since(before.seen_at);
                *self.bar_waiting.lock().expect("waiting text") = None;
                if self.mode != Mode::Quiet {
                    let line = format!(
                        "resumed: {} answered again after {}",
                        human::one_line(before.last.service),
                        human::elapsed(down_for)
                    );
                    self.emit(
                        &line,
                        "resumed",
                        || json!({"service": before.last.service, "down_for_ms": millis(down_for)}),
                    );
                }
            }
        }
    }

    /// The run's end: the causes of failure (largest first) and the summary line, or the
    /// `summary` event; with `--quiet` only when something went wrong, so that cron, which
    /// mails any output, stays silent on a night when every row succeeded.
    pub fn summary(&self, summary: &Summary<'_>) {
        if summary.status == Status::Success && self.mode == Mode::Quiet {
            return;
        }
        let grouped = self
            .causes
            .lock()
            .expect("causes of failure")
            .grouped(SHOWN_CAUSES);
        match self.sink.style.format {
            LogFormat::Plain => {
                if let Some(causes) = grouped.line() {
                    self.print(&causes);
                }
                self.print(summary.line);
            }
            LogFormat::Json => self.summary_event(summary, &grouped),
        }
    }

    /// An error that ends the run before its summary (the manifest cannot be read, the run
    /// lock is held): its line, and with JSON a `summary` event that ends in `error`, exit 2.
    pub fn stopped_by_error(&self, line: &str) {
        self.failure(line);
        if self.sink.style.format == LogFormat::Json {
            let summary = Summary {
                ending: "error",
                line,
                counts: &Counts::default(),
                duration: Duration::ZERO,
                report: None,
                status: Status::Usage,
            };
            let grouped = self
                .causes
                .lock()
                .expect("causes of failure")
                .grouped(SHOWN_CAUSES);
            self.summary_event(&summary, &grouped);
        }
    }

    fn summary_event(&self, summary: &Summary<'_>, grouped: &Grouped) {
        let counts = summary.counts;
        let failures: Vec<Value> = grouped
            .shown
            .iter()
            .map(|(cause, count)| json!({"cause": cause, "count": count}))
            .collect();
        self.sink.event(
            "summary",
            json!({
                "ending": summary.ending,
                "uploaded": counts.uploaded,
                "already_uploaded": counts.already_uploaded,
                "failed": counts.failed,
                "invalid": counts.invalid,
                "not_attempted": counts.not_attempted,
                "bytes": counts.bytes,
                "duration_ms": millis(summary.duration),
                "failures": failures,
                "more_causes": grouped.more_causes,
                "more_failed": grouped.more_rows,
                "report": summary.report.map(|path| path.display().to_string()),
                "exit_code": summary.status.code(),
                "message": summary.line,
            }),
        );
    }

    /// A line of `level` (`info`, `warning`, `error`): plain, or a `message` event.
    fn message(&self, level: &str, line: &str) {
        self.emit(line, "message", || json!({"level": level, "message": line}));
    }

    /// `line` in the plain format, or `event` with `fields` in JSON.
    fn emit(&self, line: &str, event: &str, fields: impl FnOnce() -> Value) {
        match self.sink.style.format {
            LogFormat::Plain => self.print(line),
            LogFormat::Json => self.sink.event(event, fields()),
        }
    }

    /// A line above the bar, or on its own.
    fn print(&self, line: &str) {
        let bar = self.bar.lock().expect("progress bar").clone();
        match bar {
            Some(bar) => bar.suspend(|| self.sink.line(line)),
            None => self.sink.line(line),
        }
    }

    /// Removes the bar and stops the log ticker; later lines print plainly.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress bar").take() {
            bar.finish_and_clear();
        }
        if let Some((stop, thread)) = self.ticker.lock().expect("progress ticker").take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// An error found before the run starts (in the settings), with `--log-format json`: on stderr
/// as the run's own errors are, an error `message` and a `summary` that ends in `error`.
pub fn json_error(line: &str) {
    let progress = Progress::new(Mode::Log, Style::detect(LogFormat::Json));
    progress.stopped_by_error(line);
}

/// A duration as the JSON events give it: whole milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Every line, parsed as a JSON object.
        fn events(&self) -> Vec<Map<String, Value>> {
            self.text()
                .lines()
                .map(|line| match serde_json::from_str(line) {
                    Ok(Value::Object(object)) => object,
                    other => panic!("not a JSON object: {line:?} ({other:?})"),
                })
                .collect()
        }
    }

    /// A clock that stands still until the test moves it: 2026-12-03T11:52:07.250Z at first.
    #[derive(Debug)]
    struct Manual {
        wall: DateTime<Utc>,
        instant: Instant,
        moved: Mutex<Duration>,
    }

    impl Manual {
        fn new() -> Arc<Manual> {
            Arc::new(Manual {
                wall: DateTime::parse_from_rfc3339("2026-12-03T11:52:07.250Z")
                    .unwrap()
                    .with_timezone(&Utc),
                instant: Instant::now(),
                moved: Mutex::new(Duration::ZERO),
            })
        }

        fn advance(&self, by: Duration) {
            *self.moved.lock().unwrap() += by;
        }
    }

    impl Clock for Manual {
        fn now(&self) -> DateTime<Utc> {
            self.wall + *self.moved.lock().unwrap()
        }
        fn instant(&self) -> Instant {
            self.instant + *self.moved.lock().unwrap()
        }
    }

    const PLAIN: Style = Style {
        format: LogFormat::Plain,
        timestamps: false,
    };
    const LOGGED: Style = Style {
        format: LogFormat::Plain,
        timestamps: true,
    };
    const JSON: Style = Style {
        format: LogFormat::Json,
        timestamps: true,
    };

    fn progress(mode: Mode, style: Style, every: Duration) -> (Progress, Captured, Arc<Manual>) {
        let out = Captured::default();
        let clock = Manual::new();
        let progress =
            Progress::with_output(mode, style, Box::new(out.clone()), every, clock.clone());
        (progress, out, clock)
    }

    fn start() -> Start<'static> {
        Start {
            manifest: "manifest.csv",
            rows: 4,
            bytes: 4096,
            already_uploaded: 1,
            concurrency: 8,
            destination: "https://api.app.voyc.ai/api/v2/workspace/118/conversation/upload_data/",
        }
    }

    fn failure<'a>(line: u64, error: &'a str) -> RowFailure<'a> {
        RowFailure {
            manifest: "manifest.csv",
            line,
            file: "calls/2.wav",
            error,
            attempts: 1,
        }
    }

    fn summary<'a>(counts: &'a Counts, status: Status) -> Summary<'a> {
        Summary {
            ending: "done",
            line: "done: 2 uploaded, 2 failed in 4.0s (1.0 KiB/s); report r.csv",
            counts,
            duration: Duration::from_secs(4),
            report: Some(Path::new("r.csv")),
            status,
        }
    }

    /// The keys of each event as docs/logging.md's table lists them (besides `ts` and `event`).
    fn documented_keys() -> HashMap<String, Vec<String>> {
        let page = include_str!("../docs/logging.md");
        let events = page
            .split("\n## ")
            .find(|section| section.starts_with("Events"))
            .expect("docs/logging.md has a section \"Events\"");
        let mut keys = HashMap::new();
        for row in events.lines().filter(|line| line.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let event = cells[1].trim_matches('`').to_string();
            let listed = cells[2]
                .split(',')
                .map(|key| key.trim().trim_matches('`').to_string())
                .filter(|key| !key.is_empty())
                .collect();
            keys.insert(event, listed);
        }
        keys
    }

    #[test]
    fn the_bar_fits_a_narrow_terminal_instead_of_wrapping() {
        let (progress, _, _) = progress(Mode::Bar, PLAIN, LOG_EVERY);
        progress
            .counters
            .rows_total
            .store(48_210, Ordering::Relaxed);
        progress
            .counters
            .bytes_total
            .store(23 << 30, Ordering::Relaxed);
        progress.counters.bytes.store(10 << 30, Ordering::Relaxed);
        progress.counters.rows_done.store(21_944, Ordering::Relaxed);
        progress.counters.failed.store(2, Ordering::Relaxed);
        let term = Narrow::default();
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let bar = progress.bar_on(48_210, target, || 40);
        bar.set_position(21_944);
        bar.tick();
        bar.abandon();
        let drawn = term.0.lock().unwrap().clone();
        let lines: Vec<&str> = drawn.lines().filter(|l| l.contains('[')).collect();
        assert!(!lines.is_empty(), "nothing drawn: {drawn:?}");
        for line in lines {
            assert!(
                line.chars().count() <= 40,
                "{} columns: {line:?}",
                line.chars().count()
            );
            assert!(line.contains("21,944/48,210"), "{line:?}");
            assert!(line.contains("2 failed"), "{line:?}");
        }
        // On a wide terminal, every figure is there.
        let wide = progress.counters.fitted(200, None);
        assert_eq!(wide.matches("  ").count(), 4, "{wide}");
    }

    #[test]
    fn without_a_terminal_progress_is_plain_periodic_lines() {
        let (progress, out, _) = progress(Mode::Log, PLAIN, Duration::from_millis(30));
        progress.start(&start());
        progress.bytes_counter().fetch_add(2048, Ordering::Relaxed);
        progress.row_uploaded();
        progress.row_failed(&failure(3, "call 1: HTTP 400: bad"), true);
        std::thread::sleep(Duration::from_millis(120));
        progress.finish();
        let text = out.text();
        assert!(
            text.contains("manifest.csv:3: calls/2.wav: failed: call 1: HTTP 400: bad\n"),
            "{text}"
        );
        let log = text
            .lines()
            .find(|line| line.starts_with("progress: "))
            .unwrap_or_else(|| panic!("no log line in {text:?}"));
        assert!(
            log.starts_with("progress: 2/4 files, 2.0 KiB/4.0 KiB, ")
                && log.contains(" files/s")
                && log.ends_with(", 1 failed"),
            "{log}"
        );
        assert!(!text.contains('\x1b'), "no escape codes in logs: {text:?}");
        assert!(!text.contains('\r'));
    }

    #[test]
    fn every_plain_line_of_a_log_starts_with_the_time_in_utc_to_the_second() {
        let (progress, out, clock) = progress(Mode::Log, LOGGED, Duration::from_millis(20));
        progress.say("resuming: 1 row already uploaded");
        progress.row_failed(&failure(3, "call 1: HTTP 400: bad"), true);
        clock.advance(Duration::from_secs(61));
        progress.start(&start());
        std::thread::sleep(Duration::from_millis(80));
        progress.finish();
        let counts = Counts {
            failed: 1,
            ..Counts::default()
        };
        progress.summary(&summary(&counts, Status::Partial));
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "2026-12-03T11:52:07Z resuming: 1 row already uploaded"
        );
        assert_eq!(
            lines[1],
            "2026-12-03T11:52:07Z manifest.csv:3: calls/2.wav: failed: call 1: HTTP 400: bad"
        );
        assert!(
            lines[2].starts_with("2026-12-03T11:53:08Z progress: 1/4 files, "),
            "{text}"
        );
        assert_eq!(
            lines[lines.len() - 2],
            "2026-12-03T11:53:08Z 1 failed: 1 × call 1: HTTP 400: bad"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "2026-12-03T11:53:08Z done: 2 uploaded, 2 failed in 4.0s (1.0 KiB/s); report r.csv"
        );
        for line in &lines {
            let (stamp, rest) = line.split_once(' ').unwrap();
            assert!(DateTime::parse_from_rfc3339(stamp).is_ok(), "{line}");
            assert!(!rest.is_empty());
        }
    }

    #[test]
    fn a_terminal_gets_no_timestamps() {
        let (progress, out, _) = progress(Mode::Quiet, PLAIN, LOG_EVERY);
        progress.failure("error: the token was refused");
        assert_eq!(out.text(), "error: the token was refused\n");
    }

    #[test]
    fn quiet_shows_only_failures() {
        let (progress, out, _) = progress(Mode::Quiet, LOGGED, Duration::from_millis(10));
        progress.start(&start());
        progress.say("resuming: 1 row already uploaded");
        progress.warning("manifest.csv:4: warning: call_date is in the future");
        progress.waiting(Some(&outage(5)));
        progress.waiting(None);
        progress.row_failed(&failure(3, "upload: timed out"), true);
        std::thread::sleep(Duration::from_millis(50));
        progress.finish();
        assert_eq!(
            out.text(),
            "2026-12-03T11:52:07Z manifest.csv:3: calls/2.wav: failed: upload: timed out\n"
        );
    }

    #[test]
    fn quiet_prints_nothing_when_every_row_succeeded_in_either_format() {
        for style in [LOGGED, JSON] {
            let (progress, out, _) = progress(Mode::Quiet, style, Duration::from_millis(10));
            progress.start(&start());
            progress.say("resuming: 1 row already uploaded");
            progress.row_uploaded();
            std::thread::sleep(Duration::from_millis(30));
            progress.finish();
            let counts = Counts {
                uploaded: 4,
                ..Counts::default()
            };
            progress.summary(&summary(&counts, Status::Success));
            assert_eq!(out.text(), "", "{style:?}");
        }
    }

    #[test]
    fn quiet_json_has_only_failed_rows_and_the_summary() {
        let (progress, out, _) = progress(Mode::Quiet, JSON, Duration::from_millis(10));
        progress.start(&start());
        progress.say("resuming: 1 row already uploaded");
        progress.waiting(Some(&outage(5)));
        progress.waiting(None);
        progress.row_failed(&failure(3, "upload: timed out"), true);
        std::thread::sleep(Duration::from_millis(30));
        progress.finish();
        let counts = Counts {
            failed: 1,
            ..Counts::default()
        };
        progress.summary(&summary(&counts, Status::Partial));
        let events: Vec<Value> = out.events().iter().map(|e| e["event"].clone()).collect();
        assert_eq!(events, ["row_failed", "summary"]);
    }

    #[test]
    fn json_events_are_one_object_a_line_with_the_documented_keys() {
        let (progress, out, clock) = progress(Mode::Log, JSON, Duration::from_millis(20));
        progress.say("resuming: 1 row already uploaded");
        progress.warning("manifest.csv:5: warning: call_date \"2099-01-01\" is in the future");
        progress.start(&start());
        progress.bytes_counter().fetch_add(2048, Ordering::Relaxed);
        progress.row_uploaded();
        progress.row_failed(
            &RowFailure {
                file: "calls/\"odd\"\nname.wav",
                ..failure(3, "call 1: HTTP 400: agent: not a member of this workspace")
            },
            true,
        );
        progress.waiting(Some(&outage(0)));
        clock.advance(Duration::from_secs(2));
        progress.waiting(None);
        std::thread::sleep(Duration::from_millis(80));
        progress.finish();
        progress.failure("error: the report could not be written");
        let counts = Counts {
            uploaded: 1,
            failed: 1,
            already_uploaded: 1,
            bytes: 2048,
            ..Counts::default()
        };
        progress.summary(&summary(&counts, Status::Partial));

        let events = out.events();
        let documented = documented_keys();
        let mut seen = Vec::new();
        for event in &events {
            let name = event["event"].as_str().expect("every object has an event");
            let ts = event["ts"].as_str().expect("every object has ts");
            assert!(
                DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
                "{ts}"
            );
            let keys: Vec<&str> = event
                .keys()
                .map(String::as_str)
                .filter(|key| !matches!(*key, "ts" | "event"))
                .collect();
            let listed = documented
                .get(name)
                .unwrap_or_else(|| panic!("the event {name} is not in docs/logging.md"));
            assert_eq!(keys, *listed, "the keys of {name}, in order");
            if !seen.contains(&name) {
                seen.push(name);
            }
        }
        for name in [
            "message",
            "start",
            "row_failed",
            "waiting",
            "resumed",
            "progress",
            "summary",
        ] {
            assert!(seen.contains(&name), "no {name} event in {seen:?}");
        }
        assert_eq!(events[0]["ts"], "2026-12-03T11:52:07.250Z");
        assert_eq!(events[0]["level"], "info");
        assert_eq!(events[1]["level"], "warning");
        let failed = events.iter().find(|e| e["event"] == "row_failed").unwrap();
        assert_eq!(failed["line"], 3);
        assert_eq!(failed["file"], "calls/\"odd\"\nname.wav");
        assert_eq!(failed["attempts"], 1);
        let resumed = events.iter().find(|e| e["event"] == "resumed").unwrap();
        assert_eq!(resumed["down_for_ms"], 2000);
        let progress_event = events.iter().find(|e| e["event"] == "progress").unwrap();
        assert_eq!(
            (&progress_event["done"], &progress_event["failed"]),
            (&json!(2), &json!(1))
        );
        let summary = events.last().unwrap();
        assert_eq!(summary["event"], "summary");
        assert_eq!(summary["exit_code"], 1);
        assert_eq!(summary["duration_ms"], 4000);
        assert_eq!(
            summary["failures"],
            json!([{"cause": "call 1: HTTP 400: agent: not a member of this workspace", "count": 1}])
        );
    }

    #[test]
    fn the_summary_names_the_causes_of_failure_largest_first() {
        let (progress, out, _) = progress(Mode::Log, LOGGED, LOG_EVERY);
        for error in [
            "upload: timed out",
            "call 1: HTTP 400: agent: not a member of this workspace",
            "call 1: HTTP 400: agent: not a member of this workspace",
            "call 1: HTTP 400: agent: not a member of this workspace",
        ] {
            progress.row_failed(&failure(2, error), true);
        }
        // A stop that one message explains: neither a line nor a cause.
        progress.row_failed(&failure(2, "call 1: HTTP 401: Invalid token."), false);
        let counts = Counts {
            failed: 4,
            ..Counts::default()
        };
        progress.summary(&summary(&counts, Status::Partial));
        let text = out.text();
        let lines: Vec<&str> = text.lines().skip(4).collect();
        assert!(!text.contains("401"), "{text}");
        assert_eq!(
            lines[0],
            "2026-12-03T11:52:07Z 4 failed: 3 × call 1: HTTP 400: agent: not a member of this workspace; 1 × upload: timed out"
        );
        assert!(
            lines[1].ends_with(" done: 2 uploaded, 2 failed in 4.0s (1.0 KiB/s); report r.csv")
        );
    }

    #[test]
    fn many_causes_stay_one_line_naming_the_largest_and_counting_the_rest() {
        let mut causes = Causes::new(KEPT_CAUSES);
        // Causes 0..8 with 1..=8 rows, seen in order; a tie with a later cause keeps the
        // earlier first.
        for n in 0..8u64 {
            for _ in 0..=n {
                causes.add(&format!("cause {n}"));
            }
        }
        causes.add("late");
        causes.add("late");
        let grouped = causes.grouped(SHOWN_CAUSES);
        assert_eq!(
            grouped.line().unwrap(),
            "38 failed: 8 × cause 7; 7 × cause 6; 6 × cause 5; 5 × cause 4; 4 × cause 3; and 4 more causes (8 rows)"
        );
        let mut tie = Causes::new(KEPT_CAUSES);
        for cause in ["b", "a", "a", "b"] {
            tie.add(cause);
        }
        assert_eq!(tie.grouped(5).line().unwrap(), "4 failed: 2 × b; 2 × a");
        assert_eq!(Causes::new(3).grouped(5).line(), None);
    }

    #[test]
    fn causes_past_the_cap_are_counted_without_being_kept() {
        let mut causes = Causes::new(3);
        for n in 0..1000 {
            causes.add(&format!("calls/{n}.wav changed while it was uploaded"));
        }
        causes.add("calls/0.wav changed while it was uploaded");
        assert_eq!(causes.seen.len(), 3, "memory stays bounded");
        let grouped = causes.grouped(2);
        assert_eq!(grouped.rows(), 1001);
        assert_eq!(
            grouped.line().unwrap(),
            "1,001 failed: 2 × calls/0.wav changed while it was uploaded; 1 × calls/1.wav changed while it was uploaded; and over 2 more causes (998 rows)"
        );
    }

    fn outage(seconds: u64) -> Waiting {
        Waiting {
            service: "Voyc",
            down_for: Duration::from_secs(seconds),
            cause: "HTTP 503".into(),
            next_try_in: Duration::from_secs(20),
        }
    }

    /// `waiting()` once a second for `seconds`, then `None`, on the manual clock.
    fn an_outage_of(progress: &Progress, clock: &Manual, seconds: u64) {
        for s in 0..seconds {
            progress.waiting(Some(&outage(130 + s)));
            clock.advance(Duration::from_secs(1));
        }
        progress.waiting(None);
    }

    #[test]
    fn a_wait_is_logged_when_it_starts_then_every_log_interval_and_when_it_ends() {
        let (progress, out, clock) = progress(Mode::Log, LOGGED, LOG_EVERY);
        an_outage_of(&progress, &clock, 25);
        progress.waiting(None);
        assert_eq!(
            out.text(),
            "2026-12-03T11:52:07Z waiting: Voyc unavailable for 2m10s (HTTP 503), next try in 20s\n\
             2026-12-03T11:52:17Z waiting: Voyc unavailable for 2m20s (HTTP 503), next try in 20s\n\
             2026-12-03T11:52:27Z waiting: Voyc unavailable for 2m30s (HTTP 503), next try in 20s\n\
             2026-12-03T11:52:32Z resumed: Voyc answered again after 2m35s\n",
        );
    }

    #[test]
    fn another_service_going_down_is_logged_at_once() {
        let (progress, out, clock) = progress(Mode::Log, PLAIN, LOG_EVERY);
        progress.waiting(Some(&outage(3)));
        clock.advance(Duration::from_secs(1));
        progress.waiting(Some(&Waiting {
            service: "S3",
            cause: "SlowDown".into(),
            ..outage(1)
        }));
        assert_eq!(
            out.text(),
            "waiting: Voyc unavailable for 3.0s (HTTP 503), next try in 20s\n\
             waiting: S3 unavailable for 1.0s (SlowDown), next try in 20s\n"
        );
    }

    #[test]
    fn json_waits_come_at_the_same_cadence_with_one_resumed() {
        let (progress, out, clock) = progress(Mode::Log, JSON, LOG_EVERY);
        an_outage_of(&progress, &clock, 25);
        let events = out.events();
        let names: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["waiting", "waiting", "waiting", "resumed"]);
        assert_eq!(
            events[0],
            json!({"ts": "2026-12-03T11:52:07.250Z", "event": "waiting", "service": "Voyc",
                "down_for_ms": 130_000, "cause": "HTTP 503", "next_try_in_ms": 20_000})
            .as_object()
            .unwrap()
            .clone()
        );
        assert_eq!(events[3]["down_for_ms"], 155_000);
    }

    #[test]
    fn on_a_terminal_the_bar_shows_the_wait_until_it_ends() {
        let (progress, out, clock) = progress(Mode::Bar, PLAIN, LOG_EVERY);
        progress.counters.rows_total.store(10, Ordering::Relaxed);
        progress.waiting(Some(&outage(130)));
        let waiting = progress.bar_waiting.lock().unwrap().clone();
        assert_eq!(
            progress.counters.fitted(200, waiting.as_deref()),
            "0/10  waiting: Voyc unavailable for 2m10s (HTTP 503), next try in 20s"
        );
        assert_eq!(
            progress.counters.fitted(20, waiting.as_deref()),
            "0/10  waiting: Voyc "
        );
        assert_eq!(out.text(), "", "no line while it lasts");
        clock.advance(Duration::from_secs(5));
        progress.waiting(None);
        assert_eq!(*progress.bar_waiting.lock().unwrap(), None);
        assert_eq!(out.text(), "resumed: Voyc answered again after 2m15s\n");
    }

    #[test]
    fn the_eta_follows_bytes_when_there_are_any() {
        let clock = Manual::new();
        let counters = Counters::new(clock.clone());
        counters.rows_total.store(100, Ordering::Relaxed);
        counters.rows_done.store(50, Ordering::Relaxed);
        counters.bytes_total.store(1000, Ordering::Relaxed);
        counters.bytes.store(250, Ordering::Relaxed);
        clock.advance(Duration::from_secs(10));
        // A quarter of the bytes in 10 s: 30 s to go, whatever the file count says.
        assert_eq!(counters.eta(), Some(Duration::from_secs(30)));
        assert_eq!(counters.rate(), "5.0 files/s");
        assert_eq!(counters.fields()["eta_ms"], 30_000);
        assert_eq!(counters.fields()["rate"], 5.0);
    }

    /// A terminal of a fixed width that keeps what is drawn on it.
    #[derive(Clone, Debug, Default)]
    struct Narrow(Arc<Mutex<String>>);

    impl indicatif::TermLike for Narrow {
        fn width(&self) -> u16 {
            40
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, line: &str) -> std::io::Result<()> {
            self.write_str(&format!("{line}\n"))
        }
        fn write_str(&self, text: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(text);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.write_str("\n")
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

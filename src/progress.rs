//! What the user sees while a run goes: a live bar on a terminal, plain log lines otherwise.
//!
//! Whether stderr is a terminal is decided once, at the start. On a terminal: an indicatif
//! bar with files, bytes, rate, ETA and failures. Otherwise (cron, a pipe, a CI log): one
//! plain line every 10 seconds and one line per failed row, never a control character.
//! With `--quiet`: nothing when every row succeeded, otherwise only failed rows and the summary.
//! Nothing in `upload/` knows about this.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::human;

/// The fewest columns the bar itself keeps on a narrow terminal.
const MIN_BAR: usize = 4;

/// How often a log line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How progress is shown, decided once per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live bar on stderr (a terminal).
    Bar,
    /// A plain line every [`LOG_EVERY`], and each failure (stderr is a file or a pipe).
    Log,
    /// Only failures and the summary (`--quiet`).
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Log
        }
    }
}

/// Counters the workers update and the display reads.
#[derive(Debug)]
struct Counters {
    started: Instant,
    rows_total: AtomicU64,
    rows_done: AtomicU64,
    failed: AtomicU64,
    bytes_total: AtomicU64,
    /// Bytes sent so far, counted as they stream (wound back when an attempt fails).
    bytes: Arc<AtomicU64>,
}

impl Counters {
    /// The bar's figures in at most `room` columns: `21,944/48,210  9.8 GiB/21.7 GiB  41 files/s
    /// ETA 10m41s  2 failed`, the least needed dropped first (rate, then ETA, then bytes), and
    /// what still does not fit cut short.
    fn fitted(&self, room: usize) -> String {
        let done = self.rows_done.load(Ordering::Relaxed);
        let total = self.rows_total.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let eta = self.eta().unwrap_or_else(|| "-".into());
        let mut parts = vec![
            (0, format!("{}/{}", human::count(done), human::count(total))),
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
            let _ = write!(line, ", ETA {eta}");
        }
        let failed = self.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let _ = write!(line, ", {} failed", human::count(failed));
        }
        line
    }

    fn transfer(&self) -> String {
        format!(
            "{}/{}",
            human::bytes(self.bytes.load(Ordering::Relaxed)),
            human::bytes(self.bytes_total.load(Ordering::Relaxed))
        )
    }

    fn rate(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.rows_done.load(Ordering::Relaxed) as f64 / seconds;
        if rate >= 10.0 {
            format!("{rate:.0} files/s")
        } else {
            format!("{rate:.1} files/s")
        }
    }

    /// By bytes when there are any (files differ in size), else by files.
    fn eta(&self) -> Option<String> {
        let seconds = self.started.elapsed().as_secs_f64();
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
        Some(human::elapsed(Duration::from_secs_f64(remaining.min(1e9))))
    }
}

/// The run's progress display.
pub struct Progress {
    mode: Mode,
    counters: Arc<Counters>,
    bar: Mutex<Option<ProgressBar>>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    log_every: Duration,
    /// The wait being shown, and when it was last printed.
    waiting: Mutex<Option<(Waiting, Instant)>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    /// Progress on stderr.
    pub fn new(mode: Mode) -> Progress {
        Progress::with_output(mode, Box::new(std::io::stderr()), LOG_EVERY)
    }

    /// Progress into `out` (tests), logging every `log_every` in [`Mode::Log`].
    pub fn with_output(mode: Mode, out: Box<dyn Write + Send>, log_every: Duration) -> Progress {
        Progress {
            mode,
            counters: Arc::new(Counters {
                started: Instant::now(),
                rows_total: AtomicU64::new(0),
                rows_done: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                bytes_total: AtomicU64::new(0),
                bytes: Arc::new(AtomicU64::new(0)),
            }),
            bar: Mutex::new(None),
            out: Arc::new(Mutex::new(out)),
            ticker: Mutex::new(None),
            log_every,
            waiting: Mutex::new(None),
        }
    }

    /// The counter uploads add their bytes to.
    pub fn bytes_counter(&self) -> Arc<AtomicU64> {
        self.counters.bytes.clone()
    }

    /// Starts the bar or the log ticker for `rows` files of `bytes` in total.
    pub fn start(&self, rows: u64, bytes: u64) {
        self.counters.rows_total.store(rows, Ordering::Relaxed);
        self.counters.bytes_total.store(bytes, Ordering::Relaxed);
        match self.mode {
            Mode::Bar => *self.bar.lock().expect("progress bar") = Some(self.make_bar(rows)),
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
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let room = usize::from(width()).saturating_sub(MIN_BAR + 4);
                let _ = w.write_str(&counters.fitted(room));
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
        let out = self.out.clone();
        let every = self.log_every;
        let thread = std::thread::Builder::new()
            .name("progress-log".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let line = format!("progress: {}", counters.line());
                    let mut out = out.lock().expect("progress output");
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            })
            .expect("start the progress log thread");
        *self.ticker.lock().expect("progress ticker") = Some((stop, thread));
    }

    /// A row is settled (uploaded, failed, or given up on).
    pub fn row_done(&self, failed: bool) {
        self.counters.rows_done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = self.bar.lock().expect("progress bar").as_ref() {
            bar.inc(1);
        }
    }

    /// A status line (`resuming: ...`); not shown with `--quiet`.
    pub fn say(&self, line: &str) {
        if self.mode != Mode::Quiet {
            self.print(line);
        }
    }

    /// The run's last line; with `--quiet` only when something went wrong, so that cron, which
    /// mails any output, stays silent on a night when every row succeeded.
    pub fn summary(&self, line: &str, succeeded: bool) {
        if !(succeeded && self.mode == Mode::Quiet) {
            self.print(line);
        }
    }

    /// A failed row or an error; shown in every mode.
    pub fn failure(&self, line: &str) {
        self.print(line);
    }

    /// A line above the bar, or on its own.
    pub fn print(&self, line: &str) {
        let bar = self.bar.lock().expect("progress bar").clone();
        match bar {
            Some(bar) => bar.suspend(|| self.write_line(line)),
            None => self.write_line(line),
        }
    }

    fn write_line(&self, line: &str) {
        let mut out = self.out.lock().expect("progress output");
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
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

/// The run is held up: a service is unreachable and one probe at a time is being made.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// "Voyc" or "S3".
    pub service: String,
    pub down_for: Duration,
    /// "HTTP 503".
    pub cause: String,
    pub next_try_in: Duration,
}

impl Waiting {
    fn line(&self) -> String {
        format!(
            "waiting: {} unavailable for {} ({}), next try in {}",
            self.service,
            human::elapsed(self.down_for),
            self.cause,
            human::elapsed(self.next_try_in)
        )
    }
}

impl Progress {
    /// Called about once a second while a service is down, and with `None` once it is back:
    /// a line when the wait starts and every [`LOG_EVERY`] while it lasts, and one when it ends.
    pub fn waiting(&self, waiting: Option<&Waiting>) {
        let mut shown = self.waiting.lock().expect("waiting");
        match (waiting, shown.as_mut()) {
            (Some(now), Some((latest, last))) => {
                *latest = now.clone();
                if last.elapsed() >= self.log_every {
                    *last = Instant::now();
                    drop(shown);
                    self.say(&now.line());
                }
            }
            (Some(now), None) => {
                *shown = Some((now.clone(), Instant::now()));
                drop(shown);
                self.say(&now.line());
            }
            (None, Some((latest, _))) => {
                let line = format!(
                    "resumed: {} answered again after {}",
                    latest.service,
                    human::elapsed(latest.down_for)
                );
                *shown = None;
                drop(shown);
                self.say(&line);
            }
            (None, None) => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
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

    #[test]
    fn the_bar_fits_a_narrow_terminal_instead_of_wrapping() {
        let progress = Progress::with_output(Mode::Bar, Box::new(std::io::sink()), LOG_EVERY);
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
        assert_eq!(
            progress.counters.fitted(200).matches("  ").count(),
            4,
            "{}",
            progress.counters.fitted(200)
        );
    }

    #[test]
    fn without_a_terminal_progress_is_plain_periodic_lines() {
        let out = Captured::default();
        let progress =
            Progress::with_output(Mode::Log, Box::new(out.clone()), Duration::from_millis(30));
        progress.start(4, 4096);
        progress.bytes_counter().fetch_add(2048, Ordering::Relaxed);
        progress.row_done(false);
        progress.row_done(true);
        progress.failure("manifest.csv:3: calls/2.wav: failed: call 1: HTTP 400: bad");
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
    fn quiet_shows_only_failures() {
        let out = Captured::default();
        let progress = Progress::with_output(
            Mode::Quiet,
            Box::new(out.clone()),
            Duration::from_millis(10),
        );
        progress.start(2, 10);
        progress.say("resuming: 1 row already uploaded");
        progress.row_done(true);
        progress.failure("x: failed");
        std::thread::sleep(Duration::from_millis(50));
        progress.finish();
        assert_eq!(out.text(), "x: failed\n");
    }

    #[test]
    fn the_eta_follows_bytes_when_there_are_any() {
        let counters = Counters {
            started: Instant::now() - Duration::from_secs(10),
            rows_total: AtomicU64::new(100),
            rows_done: AtomicU64::new(50),
            failed: AtomicU64::new(0),
            bytes_total: AtomicU64::new(1000),
            bytes: Arc::new(AtomicU64::new(250)),
        };
        // A quarter of the bytes in 10 s: 30 s to go, whatever the file count says.
        assert_eq!(counters.eta().as_deref(), Some("30s"));
        assert_eq!(counters.rate(), "5.0 files/s");
    }
}

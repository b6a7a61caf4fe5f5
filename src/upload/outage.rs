//! Waiting out an outage. When calls to one service (Voyc's API, or S3) fail transiently
//! [`TRIP_AFTER`] times in a row with no success between them, whichever rows they came from,
//! the service is taken to be down: no request goes to it but one probe at a time, spaced by
//! a capped backoff ([`probe_delay`]), and every other row waits. The first answer (any answer
//! that is not "unavailable": a 2xx, a 400, a 429) brings it back up and every row goes on at
//! once. Attempts made while a service is down spend none of a row's `--retries`; a service
//! down longer than `--max-outage` stops the run, resumable.
//!
//! Before any call 1 has succeeded, "nothing listens" is not taken for an outage: it is what a
//! mistyped `--base-url` looks like, which stops the run at once (see the pool).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::clock::Clock;
use super::failure::Failure;
use super::pool::{RunControl, StopReason};
use crate::human;

/// Transient failures in a row (with no success between them) that make a service down.
pub const TRIP_AFTER: u32 = 3;
/// The first probe's wait; each further one doubles it, up to [`PROBE_CAP`].
pub const PROBE_FIRST: Duration = Duration::from_secs(1);
pub const PROBE_CAP: Duration = Duration::from_secs(15);
/// A `Retry-After` on an unavailable answer spaces the probes up to this.
pub const PROBE_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait before probe number `probes + 1`: 1 s, 2 s, 4 s, 8 s, then 15 s (a service back
/// after 40 s is found within 15 s of it, for four requests a minute while it is down).
pub fn probe_delay(probes: u32) -> Duration {
    PROBE_FIRST
        .saturating_mul(1 << probes.min(10))
        .min(PROBE_CAP)
}

/// What a failed attempt says about its service: `Some(cause)` if the service looks
/// unavailable (connection errors, timeouts, 5xx), `None` if it answered (a 429, a 4xx) or the
/// failure was ours (no file descriptor, a file that changed).
pub fn unavailable(failure: &Failure) -> Option<String> {
    if !failure.is_transient() || failure.out_of_descriptors || failure.file_changed {
        return None;
    }
    match failure.status {
        Some(429) => None,
        Some(status) => Some(format!("HTTP {status}")),
        None => Some(human::one_line(&failure.message).chars().take(80).collect()),
    }
}

/// What the progress display says while a service is down.
#[derive(Clone, Debug, PartialEq)]
pub struct Down {
    pub service: &'static str,
    pub down_for: Duration,
    pub cause: String,
    pub next_try_in: Duration,
}

/// What an attempt's failure means for its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An ordinary failure: it spends one of the row's retries.
    Counted,
    /// The service is down: the attempt spends no retry, and the row waits to be let through.
    Outage,
}

/// The two services a row needs.
#[derive(Debug)]
pub struct Outages {
    pub api: Gate,
    pub s3: Gate,
    /// Where recordings named by object URLs are read from (their bucket or container).
    pub source: Gate,
    /// `--max-outage`.
    pub max_outage: Duration,
}

impl Outages {
    pub fn new(max_outage: Duration) -> Outages {
        Outages {
            api: Gate::new("Voyc"),
            s3: Gate::new("S3"),
            source: Gate::new("the recordings' store"),
            max_outage,
        }
    }

    /// The service that is down, if one is (Voyc's API first).
    pub fn down(&self, now: Instant) -> Option<Down> {
        self.api
            .down(now)
            .or_else(|| self.s3.down(now))
            .or_else(|| self.source.down(now))
    }
}

/// One service's state, shared by every worker.
#[derive(Debug)]
pub struct Gate {
    service: &'static str,
    state: Mutex<State>,
    /// Bumped at every change, to wake the rows that wait.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Outages that ended, and their total length.
    outages: u32,
    down_time: Duration,
    /// Failed probes over the run.
    probes_failed: u64,
    /// Rows waiting in [`Gate::admit`] while the service is down: the next probe goes to
    /// another than the last prober when there is one.
    probers_waiting: u32,
}

#[derive(Debug)]
enum Phase {
    Up {
        /// Transient failures since the last success, and when the first of them was.
        streak: u32,
        since: Option<Instant>,
    },
    Down {
        since: Instant,
        cause: String,
        next_probe: Instant,
        probes: u32,
        /// A probe is in flight.
        probing: bool,
        /// A row is sleeping until the next probe is due (the others wait for a change).
        timing: bool,
        /// The row whose probe failed last: a row whose own call fails (a server error only
        /// its metadata causes) must not be the only one to ask whether the service is back.
        last_prober: Option<u64>,
    },
}

/// Leave to send one request, given by [`Gate::admit`]. Dropped without being settled (the
/// request was never made), it hands its probe on.
#[derive(Debug)]
pub struct Ticket<'a> {
    gate: &'a Gate,
    probe: bool,
    /// The row it was given to.
    who: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.gate.update(|phase| {
                if let Phase::Down { probing, .. } = phase {
                    *probing = false;
                }
            });
        }
    }
}

impl Ticket<'_> {
    /// The service answered at `now`: it is up.
    pub fn answered(mut self, now: Instant) {
        let gate = self.gate;
        self.probe = false;
        gate.answered(now);
    }

    /// The attempt failed with `failure` at `now`: what that means for the row's retries.
    pub fn failed(mut self, failure: &Failure, now: Instant, trip: bool) -> Verdict {
        let gate = self.gate;
        match unavailable(failure) {
            // Only a real answer says the service is up.
            None if failure.status.is_some() => {
                self.probe = false;
                gate.answered(now);
                Verdict::Counted
            }
            // A failure of ours says nothing of the service: dropping the ticket hands a probe on.
            None => Verdict::Counted,
            Some(cause) => {
                let probe = std::mem::take(&mut self.probe);
                gate.unavailable(
                    cause,
                    now,
                    probe.then_some(self.who),
                    trip,
                    failure.retry_after,
                )
            }
        }
    }
}

impl Gate {
    fn new(service: &'static str) -> Gate {
        Gate {
            service,
            state: Mutex::new(State {
                phase: Phase::Up {
                    streak: 0,
                    since: None,
                },
                outages: 0,
                down_time: Duration::ZERO,
                probes_failed: 0,
                probers_waiting: 0,
            }),
            changed: watch::Sender::new(0),
        }
    }

    fn update<T>(&self, change: impl FnOnce(&mut Phase) -> T) -> T {
        let result = change(&mut self.state.lock().expect("outage gate").phase);
        self.changed.send_modify(|version| *version += 1);
        result
    }

    /// Waits until a request may go: at once while the service is up (even if the run is
    /// stopping: rows in flight finish); while it is down, until this row is the one to probe.
    /// `None` if the run stops while it waits — or was stopped here,
    /// because the service has been down longer than `max_outage`.
    pub async fn admit(
        &self,
        clock: &Clock,
        control: &RunControl,
        max_outage: Duration,
        who: u64,
    ) -> Option<Ticket<'_>> {
        self.wait(clock, control, max_outage, Some(who)).await
    }

    /// Waits until the service is up, sending nothing (a row about to make call 1 waits so
    /// while S3 is down: no row starts that could not finish).
    pub async fn until_up(
        &self,
        clock: &Clock,
        control: &RunControl,
        max_outage: Duration,
    ) -> bool {
        self.wait(clock, control, max_outage, None)
            .await
            .map(|ticket| debug_assert!(!ticket.probe))
            .is_some()
    }

    async fn wait(
        &self,
        clock: &Clock,
        control: &RunControl,
        max_outage: Duration,
        prober: Option<u64>,
    ) -> Option<Ticket<'_>> {
        enum Wait {
            Until(Instant),
            Change,
        }
        let who = prober.unwrap_or(u64::MAX);
        let mut counted = None;
        loop {
            let mut changed = self.changed.subscribe();
            let now = clock.now();
            let wait = {
                let mut guard = self.state.lock().expect("outage gate");
                let state = &mut *guard;
                match &mut state.phase {
                    Phase::Up { .. } => {
                        return Some(Ticket {
                            gate: self,
                            probe: false,
                            who,
                        });
                    }
                    Phase::Down {
                        since,
                        cause,
                        next_probe,
                        probing,
                        timing,
                        last_prober,
                        ..
                    } => {
                        if prober.is_some() && counted.is_none() {
                            state.probers_waiting += 1;
                            counted = Some(Waiting(self));
                        }
                        // A stop lets rows in flight finish, but not wait for an outage.
                        if control.is_stopping() {
                            return None;
                        }
                        let down_for = now.saturating_duration_since(*since);
                        if down_for >= max_outage {
                            let message = format!(
                                "{} has been unavailable for {} ({cause}), longer than --max-outage {}; the report and journal are written, and the same command resumes",
                                self.service,
                                human::elapsed(down_for),
                                human::duration(max_outage)
                            );
                            drop(guard);
                            control.stop(StopReason::Outage(message));
                            return None;
                        }
                        let yield_probe = *last_prober == prober && state.probers_waiting > 1;
                        if prober.is_some() && !yield_probe && !*probing && now >= *next_probe {
                            *probing = true;
                            return Some(Ticket {
                                gate: self,
                                probe: true,
                                who,
                            });
                        }
                        if !*probing && !*timing && !yield_probe {
                            *timing = true;
                            Wait::Until((*next_probe).min(*since + max_outage))
                        } else {
                            Wait::Change
                        }
                    }
                }
            };
            match wait {
                Wait::Until(at) => {
                    // Hands the timer on if this row is dropped while it sleeps.
                    let _timer = Timer(self);
                    tokio::select! {
                        () = clock.sleep_until(at) => {}
                        () = control.stopped() => return None,
                    }
                }
                Wait::Change => {
                    tokio::select! {
                        _ = changed.changed() => {}
                        () = control.stopped() => return None,
                    }
                }
            }
        }
    }

    fn answered(&self, now: Instant) {
        let mut state = self.state.lock().expect("outage gate");
        if let Phase::Down { since, .. } = state.phase {
            state.outages += 1;
            state.down_time += now.saturating_duration_since(since);
        }
        let woke = matches!(state.phase, Phase::Down { .. });
        state.phase = Phase::Up {
            streak: 0,
            since: None,
        };
        drop(state);
        if woke {
            self.changed.send_modify(|version| *version += 1);
        }
    }

    fn unavailable(
        &self,
        new_cause: String,
        now: Instant,
        probe: Option<u64>,
        trip: bool,
        retry_after: Option<Duration>,
    ) -> Verdict {
        let mut state = self.state.lock().expect("outage gate");
        let spacing = |probes: u32| {
            let delay = probe_delay(probes);
            retry_after.map_or(delay, |wait| delay.max(wait.min(PROBE_MAX_RETRY_AFTER)))
        };
        let verdict = match &mut state.phase {
            Phase::Up { streak, since } => {
                *streak += 1;
                let first = *since.get_or_insert(now);
                if trip && *streak >= TRIP_AFTER {
                    state.phase = Phase::Down {
                        since: first,
                        cause: new_cause,
                        next_probe: now + spacing(0),
                        probes: 0,
                        probing: false,
                        timing: false,
                        last_prober: None,
                    };
                    Verdict::Outage
                } else {
                    return Verdict::Counted;
                }
            }
            Phase::Down {
                cause,
                next_probe,
                probes,
                probing,
                last_prober,
                ..
            } => {
                *cause = new_cause;
                if probe.is_some() {
                    *last_prober = probe;
                    *probes += 1;
                    *probing = false;
                    *next_probe = now + spacing(*probes);
                    state.probes_failed += 1;
                }
                Verdict::Outage
            }
        };
        drop(state);
        self.changed.send_modify(|version| *version += 1);
        verdict
    }

    /// What progress says while the service is down.
    pub fn down(&self, now: Instant) -> Option<Down> {
        let state = self.state.lock().expect("outage gate");
        match &state.phase {
            Phase::Up { .. } => None,
            Phase::Down {
                since,
                cause,
                next_probe,
                ..
            } => Some(Down {
                service: self.service,
                down_for: now.saturating_duration_since(*since),
                cause: cause.clone(),
                next_try_in: next_probe.saturating_duration_since(now),
            }),
        }
    }

    /// Outages that ended, and their total length.
    pub fn waited(&self) -> (u32, Duration) {
        let state = self.state.lock().expect("outage gate");
        (state.outages, state.down_time)
    }

    /// "Voyc" or "S3".
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Probes that met the outage.
    pub fn probes_failed(&self) -> u64 {
        self.state.lock().expect("outage gate").probes_failed
    }
}

/// Counts a row among those waiting to probe, until it leaves [`Gate::admit`].
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("outage gate").probers_waiting -= 1;
    }
}

/// Held while a row sleeps until the next probe is due; lets another row take the timer if
/// this one goes away.
struct Timer<'a>(&'a Gate);

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.0.update(|phase| {
            if let Phase::Down { timing, .. } = phase {
                *timing = false;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::failure::Call;
    use super::*;

    fn http(status: u16) -> Failure {
        Failure::from_status(Call::Api, status, format!("HTTP {status}"))
    }

    #[test]
    fn probes_back_off_to_fifteen_seconds() {
        let delays: Vec<u64> = (0..8).map(|n| probe_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 15, 15, 15, 15]);
        assert_eq!(probe_delay(u32::MAX), PROBE_CAP);
    }

    #[test]
    fn only_a_service_that_does_not_answer_looks_unavailable() {
        assert_eq!(unavailable(&http(503)).as_deref(), Some("HTTP 503"));
        assert_eq!(unavailable(&http(502)).as_deref(), Some("HTTP 502"));
        assert_eq!(
            unavailable(&Failure::from_transport(
                Call::Api,
                false,
                "connection refused"
            ))
            .as_deref(),
            Some("connection refused")
        );
        assert_eq!(unavailable(&http(429)), None, "throttled, not down");
        assert_eq!(unavailable(&http(400)), None);
        let descriptors = Failure {
            out_of_descriptors: true,
            ..Failure::transient(Call::Upload, "too many open files")
        };
        assert_eq!(unavailable(&descriptors), None);
    }

    #[tokio::test]
    async fn three_failures_in_a_row_make_the_service_down_and_one_row_probes_at_a_time() {
        let (clock, manual) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("Voyc");
        let max = Duration::from_secs(1800);
        for n in 1..=3 {
            let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
            let verdict = ticket.failed(&http(503), clock.now(), true);
            let expected = if n < 3 {
                Verdict::Counted
            } else {
                Verdict::Outage
            };
            assert_eq!(verdict, expected, "failure {n}");
        }
        let down = gate.down(clock.now()).unwrap();
        assert_eq!((down.service, down.cause.as_str()), ("Voyc", "HTTP 503"));
        assert_eq!(down.next_try_in, Duration::from_secs(1));
        // The first row to ask waits for the probe's time and probes; while its probe is out,
        // nobody else is let through.
        let probe = gate.admit(&clock, &control, max, 0).await.unwrap();
        assert!(probe.probe);
        assert_eq!(manual.elapsed(), Duration::from_secs(1));
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            gate.admit(&clock, &control, max, 0),
        )
        .await;
        assert!(
            other.is_err(),
            "a second row went through while the probe was out"
        );
        // The probe succeeds: everyone goes at once.
        probe.answered(clock.now());
        assert!(gate.down(clock.now()).is_none());
        let all: Vec<_> =
            futures_util::future::join_all((0..10).map(|_| gate.admit(&clock, &control, max, 0)))
                .await;
        assert!(all.iter().all(|t| t.as_ref().is_some_and(|t| !t.probe)));
        assert_eq!(gate.waited().0, 1);
    }

    #[tokio::test]
    async fn a_success_between_failures_keeps_the_service_up() {
        let (clock, _) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("Voyc");
        let max = Duration::from_secs(60);
        for _ in 0..10 {
            for _ in 0..2 {
                let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
                assert_eq!(
                    ticket.failed(&http(503), clock.now(), true),
                    Verdict::Counted
                );
            }
            gate.admit(&clock, &control, max, 0)
                .await
                .unwrap()
                .answered(clock.now());
        }
        assert!(gate.down(clock.now()).is_none());
        // A 400 is an answer too.
        for _ in 0..2 {
            let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
            ticket.failed(&http(503), clock.now(), true);
        }
        let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
        assert_eq!(
            ticket.failed(&http(400), clock.now(), true),
            Verdict::Counted
        );
        let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
        assert_eq!(
            ticket.failed(&http(503), clock.now(), true),
            Verdict::Counted
        );
    }

    #[tokio::test]
    async fn failures_that_may_not_trip_spend_retries() {
        let (clock, _) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("Voyc");
        let refused = Failure::from_transport(Call::Api, false, "connection refused");
        for _ in 0..10 {
            let ticket = gate
                .admit(&clock, &control, Duration::MAX, 0)
                .await
                .unwrap();
            assert_eq!(
                ticket.failed(&refused, clock.now(), false),
                Verdict::Counted
            );
        }
        assert!(gate.down(clock.now()).is_none());
    }

    #[tokio::test]
    async fn a_ten_minute_outage_is_probed_with_capped_backoff_and_then_let_through() {
        let (clock, manual) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("S3");
        let max = Duration::from_secs(1800);
        let back_at = Duration::from_secs(600);
        let mut probes = 0;
        let mut spent = 0;
        loop {
            let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
            if manual.elapsed() >= back_at {
                ticket.answered(clock.now());
                break;
            }
            probes += u32::from(ticket.probe);
            if ticket.failed(&http(503), clock.now(), true) == Verdict::Counted {
                spent += 1;
            }
        }
        assert_eq!(
            spent,
            TRIP_AFTER - 1,
            "only the failures before the outage was seen"
        );
        // 1+2+4+8 s, then every 15 s up to 10 minutes.
        assert!((40..=45).contains(&probes), "{probes} probes");
        assert!(manual.sleeps().iter().all(|&s| s <= PROBE_CAP));
        let (outages, _) = gate.waited();
        assert_eq!(outages, 1);
        assert_eq!(gate.probes_failed(), u64::from(probes));
    }

    #[tokio::test]
    async fn an_outage_longer_than_max_outage_stops_the_run_saying_how_long() {
        let (clock, manual) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("Voyc");
        let max = Duration::from_secs(120);
        let mut rounds = 0;
        while let Some(ticket) = gate.admit(&clock, &control, max, 0).await {
            ticket.failed(&http(503), clock.now(), true);
            rounds += 1;
            assert!(rounds < 100, "never stopped");
        }
        assert_eq!(
            manual.elapsed(),
            max,
            "stopped at --max-outage, not at the next probe"
        );
        let Some(StopReason::Outage(message)) = control.reason() else {
            panic!("{:?}", control.reason());
        };
        assert!(
            message.starts_with(
                "Voyc has been unavailable for 2m00s (HTTP 503), longer than --max-outage 2m;"
            ),
            "{message}"
        );
        assert!(message.contains("the same command resumes"), "{message}");
    }

    #[tokio::test]
    async fn a_probe_never_sent_hands_the_probe_on() {
        let (clock, _) = Clock::manual();
        let control = RunControl::new();
        let gate = Gate::new("Voyc");
        let max = Duration::from_secs(1800);
        for _ in 0..3 {
            let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
            ticket.failed(&http(503), clock.now(), true);
        }
        let probe = gate.admit(&clock, &control, max, 0).await.unwrap();
        assert!(probe.probe);
        drop(probe);
        let next = gate.admit(&clock, &control, max, 0).await.unwrap();
        assert!(next.probe, "the next row may probe");
    }

    #[tokio::test]
    async fn rows_waiting_for_a_service_stop_with_the_run() {
        let (clock, _) = Clock::manual();
        let control = std::sync::Arc::new(RunControl::new());
        let gate = std::sync::Arc::new(Gate::new("Voyc"));
        let max = Duration::from_secs(1800);
        for _ in 0..3 {
            let ticket = gate.admit(&clock, &control, max, 0).await.unwrap();
            ticket.failed(&http(503), clock.now(), true);
        }
        let probe = gate.admit(&clock, &control, max, 0).await.unwrap();
        let waiting = {
            let (gate, control, clock) = (gate.clone(), control.clone(), clock.clone());
            tokio::spawn(async move { gate.until_up(&clock, &control, max).await })
        };
        tokio::task::yield_now().await;
        control.stop(StopReason::Interrupted);
        assert!(!waiting.await.unwrap());
        drop(probe);
    }
    #[tokio::test]
    async fn a_row_whose_probe_failed_lets_another_row_probe_next() {
        let (clock, _) = Clock::manual();
        let control = std::sync::Arc::new(RunControl::new());
        let gate = std::sync::Arc::new(Gate::new("Voyc"));
        let max = Duration::from_secs(1800);
        for _ in 0..3 {
            let ticket = gate.admit(&clock, &control, max, 1).await.unwrap();
            ticket.failed(&http(500), clock.now(), true);
        }
        // Row 2 waits to be let through meanwhile.
        let other = {
            let (gate, control, clock) = (gate.clone(), control.clone(), clock.clone());
            tokio::spawn(async move {
                let ticket = gate.admit(&clock, &control, max, 2).await.unwrap();
                (ticket.probe, ticket.who)
            })
        };
        // Row 1 probes, and its own call fails again (a server error only its row causes).
        let probe = gate.admit(&clock, &control, max, 1).await.unwrap();
        assert!(probe.probe);
        probe.failed(&http(500), clock.now(), true);
        // The next probe is row 2's, though row 1 asks first.
        let again = tokio::spawn({
            let (gate, control, clock) = (gate.clone(), control.clone(), clock.clone());
            async move { gate.admit(&clock, &control, max, 1).await.map(|t| t.probe) }
        });
        assert_eq!(other.await.unwrap(), (true, 2));
        control.stop(StopReason::Interrupted);
        let _ = again.await;
    }
}

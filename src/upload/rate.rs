//! How fast the run may go: call 1's rate (`--max-rps`, and slowing down on 429s) and the
//! upload bandwidth shared by the pool (`--bwlimit`).
//!
//! Both hand out slots from a [`Pace`]: evenly spaced at the rate, each request or chunk
//! reserving the next one and sleeping until it. Call 1's rate also adapts to throttling,
//! as TCP's congestion window does (additive increase, multiplicative decrease): the first
//! 429 sets the rate to what the server accepted in the last second, less the share it
//! refused; each later 429 (for a request sent after the last cut, and at most one a second)
//! cuts it by the share of the last second's call 1s refused (at least 3%, at most half), and
//! each success while the rate is what holds the run back raises it by about [`STEP_SHARE`] a
//! second. Random 429s (a limit shared with others) so cost about their own share, and a
//! rate over a limit comes down to it in one cut. Time is given, not read, so that tests drive it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a 429 leaves of the rate at most: a cut takes the share of the last second's call 1s
/// that were refused, and at least this much off.
pub const KEEP: f64 = 0.97;
/// No cut leaves less than this share of the rate.
pub const FLOOR: f64 = 0.5;
/// The least time between two cuts.
pub const CUT_GAP: Duration = Duration::from_secs(1);
/// The rate grows by this share of itself per second, or by [`MIN_STEP`] requests a second if
/// that is more, while calls succeed and the rate is what holds the run back.
pub const STEP_SHARE: f64 = 0.05;
pub const MIN_STEP: f64 = 0.1;
/// The slowest call 1 is ever paced: one every ten seconds.
pub const MIN_RATE: f64 = 0.1;

/// Evenly spaced slots: GCRA's "theoretical arrival time", moved on by `cost / rate` for
/// each reservation, with up to `burst` of slots allowed early.
#[derive(Debug, Default)]
struct Pace {
    next: Option<Instant>,
}

impl Pace {
    /// The instant the caller may go, for `cost` units at `rate` units per second.
    fn reserve(&mut self, now: Instant, cost: f64, rate: f64, burst: Duration) -> Instant {
        let next = self.next.map_or(now, |next| next.max(now));
        let at = next.checked_sub(burst).map_or(now, |early| early.max(now));
        self.next = Some(next + Duration::from_secs_f64(cost / rate));
        at
    }
}

/// Call 1's pace: `--max-rps`, and the rate that 429s taught.
#[derive(Debug)]
pub struct CallRate {
    state: Mutex<CallState>,
}

#[derive(Debug)]
struct CallState {
    /// `--max-rps`.
    cap: Option<f64>,
    /// What 429s taught; `None` until the first.
    learned: Option<f64>,
    pace: Pace,
    /// When the rate was last cut: 429s for requests sent before it are already answered for.
    cut: Option<Instant>,
    /// Call-1 successes and 429s in the last second.
    accepted: VecDeque<Instant>,
    refused: VecDeque<Instant>,
    /// The last time a call 1 had to wait for its slot: the rate is what holds the run back.
    waited: Option<Instant>,
    requests: u64,
    throttled: u64,
}

/// What the rate did, for the summary and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateStats {
    pub requests: u64,
    pub throttled: u64,
    /// The rate in force at the end (requests per second), if any.
    pub rate: Option<f64>,
}

impl CallRate {
    pub fn new(max_rps: Option<f64>) -> CallRate {
        CallRate {
            state: Mutex::new(CallState {
                cap: max_rps,
                learned: None,
                pace: Pace::default(),
                cut: None,
                accepted: VecDeque::new(),
                refused: VecDeque::new(),
                waited: None,
                requests: 0,
                throttled: 0,
            }),
        }
    }

    /// The instant the next call 1 may be sent (`now` if it need not wait); it is counted as
    /// sent then.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut state = self.state.lock().expect("call rate");
        state.requests += 1;
        let at = match state.rate() {
            Some(rate) => state.pace.reserve(now, 1.0, rate, Duration::ZERO),
            None => now,
        };
        if at > now {
            // When the slot comes, the rate is what held this request back.
            state.waited = Some(at);
        }
        at
    }

    /// A call 1 sent at `sent` succeeded at `now`.
    pub fn succeeded(&self, now: Instant) {
        let mut state = self.state.lock().expect("call rate");
        state.accepted.push_back(now);
        while state
            .accepted
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > Duration::from_secs(1))
        {
            state.accepted.pop_front();
        }
        let holding_back = state
            .waited
            .is_some_and(|at| now.saturating_duration_since(at) <= Duration::from_secs(1));
        if let Some(rate) = state.learned
            && holding_back
        {
            // About STEP_SHARE of the rate (or MIN_STEP) per second: one success in `rate`.
            let grown = rate + (rate * STEP_SHARE).max(MIN_STEP) / rate;
            state.learned = Some(state.cap.map_or(grown, |cap| grown.min(cap)));
        }
    }

    /// A call 1 sent at `sent` was answered 429 at `now`. (Its `Retry-After` is honoured by
    /// the row it answered, whose retry waits at least that long; holding every row for it
    /// would cost a quarter of the rate at each cut, and the cut already slows the others.)
    pub fn throttled(&self, sent: Instant, now: Instant) {
        let mut state = self.state.lock().expect("call rate");
        state.throttled += 1;
        while state
            .refused
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) > Duration::from_secs(1))
        {
            state.refused.pop_front();
        }
        // One cut per congestion event: not for requests sent before the last cut, nor within
        // a second of it (a server counting fixed one-second windows refuses the rest of one).
        if state
            .cut
            .is_some_and(|cut| sent <= cut || now.saturating_duration_since(cut) < CUT_GAP)
        {
            return;
        }
        // What the server accepted and refused over the last second: the share refused is
        // how far over its limit the run went (a run just over it loses a little, one far over
        // it most), and what it accepted is near its limit.
        state.refused.push_back(now);
        let accepted = state.accepted_in_last_second(now);
        let refused = within_a_second(&state.refused, now);
        let keep = (1.0 - refused / (accepted + refused)).clamp(FLOOR, KEEP);
        let from = match state.rate() {
            // Cut by the share refused, and to what was accepted if that is less, but never
            // below half in one cut (a limit counted per minute may have accepted little in
            // the last second).
            Some(rate) => (rate * keep).min(accepted.max(rate * FLOOR)),
            // The first 429: what the server has been accepting, less the share it refused.
            None => accepted.max(1.0) * keep,
        };
        state.learned = Some(from.max(MIN_RATE));
        state.cut = Some(now);
    }

    pub fn stats(&self) -> RateStats {
        let state = self.state.lock().expect("call rate");
        RateStats {
            requests: state.requests,
            throttled: state.throttled,
            rate: state.rate(),
        }
    }
}

impl CallState {
    fn rate(&self) -> Option<f64> {
        match (self.cap, self.learned) {
            (Some(cap), Some(learned)) => Some(cap.min(learned)),
            (cap, learned) => cap.or(learned),
        }
    }

    /// Successes over the last second.
    fn accepted_in_last_second(&self, now: Instant) -> f64 {
        within_a_second(&self.accepted, now)
    }
}

/// How many of `times` are within a second before `now`.
fn within_a_second(times: &VecDeque<Instant>, now: Instant) -> f64 {
    times
        .iter()
        .filter(|&&at| now.saturating_duration_since(at) <= Duration::from_secs(1))
        .count() as f64
}

/// `--bwlimit`: the bytes per second all uploads together may send.
#[derive(Debug)]
pub struct Bandwidth {
    rate: f64,
    pace: Mutex<Pace>,
}

impl Bandwidth {
    /// Up to this much of the rate may go at once.
    const BURST: Duration = Duration::from_millis(100);

    pub fn new(bytes_per_second: u64) -> Bandwidth {
        Bandwidth {
            rate: bytes_per_second.max(1) as f64,
            pace: Mutex::new(Pace::default()),
        }
    }

    /// The most a chunk may hold, so that workers take turns every tenth of a second or so
    /// rather than one of them waiting long enough to look stalled.
    pub fn chunk(&self) -> usize {
        ((self.rate / 10.0) as usize).clamp(1024, 1 << 20)
    }

    /// The instant `bytes` more may be sent.
    pub fn reserve(&self, now: Instant, bytes: usize) -> Instant {
        self.pace
            .lock()
            .expect("bandwidth")
            .reserve(now, bytes as f64, self.rate, Bandwidth::BURST)
    }
}

/// `--bwlimit`'s value: bytes per second, `K`, `M` or `G` for 1024, 1024² and 1024³ (as
/// rclone reads it), an optional `B` or `/s` after (`10M`, `500K`, `1.5MiB/s`, `250000`).
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let expected = "expected bytes per second such as 500K, 10M or 1G (K = 1024 bytes)";
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let lower = lower.strip_suffix("/s").unwrap_or(&lower);
    let lower = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(lower);
    let (number, unit) = match lower.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&lower[..at], Some(c)),
        _ => (lower, None),
    };
    let multiplier: u64 = match unit {
        None => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some(_) => return Err(format!("{trimmed:?}: unknown unit; {expected}")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{trimmed:?} is not a rate; {expected}"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!(
            "{trimmed:?} is less than one byte a second; {expected}"
        ));
    }
    Ok(bytes.min(u64::MAX as f64) as u64)
}

/// `--max-rps`'s value: a positive number of requests per second (`20`, `0.5`).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= MIN_RATE => Ok(rate),
        Ok(_) => Err(format!(
            "{text:?}: expected call-1 requests per second, at least {MIN_RATE}"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a number; expected call-1 requests per second such as 20 or 0.5"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn max_rps_spaces_call_1_evenly_from_the_first() {
        let rate = CallRate::new(Some(20.0));
        let t0 = Instant::now();
        // A hundred workers ask at the same instant: they go one every 50 ms.
        let slots: Vec<Instant> = (0..100).map(|_| rate.reserve(t0)).collect();
        assert_eq!(slots[0], t0);
        for pair in slots.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((gap.as_secs_f64() - 0.05).abs() < 1e-6, "{gap:?}");
        }
        // Over any whole second of the run, 20 calls.
        let in_second = slots
            .iter()
            .filter(|&&at| at >= t0 + secs(2.0) && at < t0 + secs(3.0))
            .count();
        assert_eq!(in_second, 20);
    }

    #[test]
    fn an_idle_spell_does_not_save_up_a_burst() {
        let rate = CallRate::new(Some(10.0));
        let t0 = Instant::now();
        rate.reserve(t0);
        let later = t0 + secs(60.0);
        assert_eq!(rate.reserve(later), later);
        assert_eq!(rate.reserve(later), later + secs(0.1));
    }

    #[test]
    fn without_max_rps_or_a_429_nothing_waits() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| rate.reserve(t0) == t0));
        assert_eq!(rate.stats().rate, None);
    }

    #[test]
    fn the_first_429_sets_the_rate_below_what_was_accepted() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // 40 accepted over the last second.
        for i in 0..40 {
            let at = t0 + secs(i as f64 / 40.0);
            rate.reserve(at);
            rate.succeeded(at);
        }
        let now = t0 + secs(1.0);
        rate.throttled(now, now);
        let learned = rate.stats().rate.unwrap();
        assert!((learned - 40.0 * KEEP).abs() < 2.0, "{learned}");
        // From then on, at the learned pace.
        let first = rate.reserve(now);
        assert_eq!(first, now);
        let second = rate.reserve(now);
        assert!(((second - first).as_secs_f64() - 1.0 / learned).abs() < 1e-6);
    }

    #[test]
    fn only_one_cut_for_the_429s_of_requests_sent_before_it() {
        let rate = CallRate::new(Some(100.0));
        let t0 = Instant::now();
        // The server accepted 100 a second until now.
        for i in 0..200 {
            rate.succeeded(t0 - secs(2.0) + secs(i as f64 / 100.0));
        }
        let sent = t0;
        // 32 requests in flight all come back 429: one cut, not 32.
        for i in 0..32 {
            rate.throttled(sent, t0 + secs(0.01 + i as f64 * 0.001));
        }
        assert_eq!(rate.stats().rate, Some(100.0 * KEEP));
        // Nor for one sent after it but answered within a second of it (a fixed-window
        // limiter refuses the rest of its second).
        rate.throttled(t0 + secs(0.1), t0 + secs(0.5));
        assert_eq!(rate.stats().rate, Some(100.0 * KEEP));
        // A request sent after that cut and throttled later cuts again: to what the server
        // accepted in the last second (nothing), but not below half.
        rate.throttled(t0 + secs(1.1), t0 + secs(1.2));
        assert_eq!(rate.stats().rate, Some(100.0 * KEEP * FLOOR));
        assert_eq!(rate.stats().throttled, 34);
    }

    #[test]
    fn a_rate_far_above_what_the_server_accepts_comes_down_to_it_at_once() {
        let rate = CallRate::new(Some(1000.0));
        let t0 = Instant::now();
        for i in 0..20 {
            rate.succeeded(t0 + secs(i as f64 / 20.0));
        }
        let now = t0 + secs(1.0);
        rate.throttled(now, now);
        assert_eq!(rate.stats().rate, Some(500.0), "half at most in one cut");
        let later = now + secs(1.5);
        for i in 0..20 {
            rate.succeeded(now + secs(0.5) + secs(i as f64 / 20.0));
        }
        rate.throttled(later, later);
        assert_eq!(rate.stats().rate, Some(250.0));
    }

    #[test]
    fn max_rps_stays_the_ceiling_when_successes_raise_the_rate() {
        let rate = CallRate::new(Some(20.0));
        let t0 = Instant::now();
        rate.throttled(t0, t0);
        let mut now = t0;
        for _ in 0..10_000 {
            now = rate.reserve(now);
            rate.succeeded(now);
        }
        assert_eq!(rate.stats().rate, Some(20.0));
    }

    /// How the simulated server counts its limit.
    #[derive(Clone, Copy, Debug)]
    enum Window {
        /// `limit` in each calendar second, as many gateways count.
        Fixed,
        /// `limit` in any second, counting only what it accepted (DRF's throttles, and the
        /// sandbox's `--rate-limit`).
        Sliding,
    }

    /// A whole run against a server that answers 429 beyond `limit` call-1 requests a second,
    /// with `workers` in flight and a fixed latency: the share of 429s over the whole run, the
    /// share in its first 10 seconds, and the rate the second half settled at. Events are
    /// processed in time order on a simulated clock.
    fn simulate(
        window: Window,
        limit: u32,
        workers: usize,
        latency: f64,
        seconds: f64,
    ) -> (f64, f64, f64) {
        simulate_noisy(window, limit, workers, latency, seconds, 0.0)
    }

    /// [`simulate`], with a share `noise` of the requests within the limit answered 429
    /// anyway, at random (a limit shared with other clients, or the sandbox's --throttle-rate).
    fn simulate_noisy(
        window: Window,
        limit: u32,
        workers: usize,
        latency: f64,
        seconds: f64,
        noise: f64,
    ) -> (f64, f64, f64) {
        let mut rng = fastrand::Rng::with_seed(7);
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // (when the worker is free again, worker)
        let mut free: BinaryHeap<Reverse<(Duration, usize)>> =
            (0..workers).map(|w| Reverse((Duration::ZERO, w))).collect();
        let mut fixed = (0u64, 0u32);
        let mut accepted: VecDeque<Duration> = VecDeque::new();
        let (mut sent, mut refused, mut accepted_late) = (0u64, 0u64, 0u64);
        let (mut sent_early, mut refused_early) = (0u64, 0u64);
        while let Some(Reverse((at, worker))) = free.pop() {
            if at.as_secs_f64() > seconds {
                break;
            }
            let go = rate.reserve(t0 + at) - t0;
            let over = match window {
                Window::Fixed => {
                    if fixed.0 != go.as_secs() {
                        fixed = (go.as_secs(), 0);
                    }
                    fixed.1 += 1;
                    fixed.1 > limit
                }
                Window::Sliding => {
                    while accepted
                        .front()
                        .is_some_and(|&a| go - a >= Duration::from_secs(1))
                    {
                        accepted.pop_front();
                    }
                    let over = accepted.len() >= limit as usize;
                    if !over {
                        accepted.push_back(go);
                    }
                    over
                }
            };
            sent += 1;
            let early = go.as_secs_f64() < 10.0;
            sent_early += u64::from(early);
            let answered = go + secs(latency);
            if over || rng.f64() < noise {
                refused += 1;
                refused_early += u64::from(early);
                rate.throttled(t0 + go, t0 + answered);
            } else {
                rate.succeeded(t0 + answered);
                if go.as_secs_f64() >= seconds / 2.0 {
                    accepted_late += 1;
                }
            }
            free.push(Reverse((answered, worker)));
        }
        let share = refused as f64 / sent as f64;
        let early = refused_early as f64 / sent_early.max(1) as f64;
        let settled = accepted_late as f64 / (seconds / 2.0);
        (share, early, settled)
    }

    #[test]
    fn an_unknown_rate_limit_costs_few_429s_and_the_run_settles_near_it() {
        let cases = [
            (20, 32, 0.02),
            (20, 256, 0.05),
            (5, 8, 0.2),
            (200, 64, 0.01),
            (20, 32, 0.001),
        ];
        for window in [Window::Fixed, Window::Sliding] {
            for (limit, workers, latency) in cases {
                let (share, early, settled) = simulate(window, limit, workers, latency, 600.0);
                // The figures docs/upload.md quotes (`-- --nocapture`).
                println!(
                    "{window:?} window, limit {limit}/s, {workers} in flight, latency {latency}s: {:.2}% answered 429 ({:.1}% in the first 10 s), settled at {settled:.1}/s",
                    share * 100.0,
                    early * 100.0
                );
                let case = format!("{window:?} window, limit {limit}, {workers} workers");
                assert!(
                    share <= 0.10,
                    "{case}: {:.1}% of call 1s answered 429",
                    share * 100.0
                );
                assert!(
                    settled >= 0.85 * f64::from(limit),
                    "{case}: settled at {settled:.1}/s"
                );
            }
        }
    }

    #[test]
    fn random_429s_within_the_limit_cost_a_little_of_the_rate_not_most_of_it() {
        for noise in [0.01, 0.05] {
            let (share, _, settled) = simulate_noisy(Window::Sliding, 60, 32, 0.02, 600.0, noise);
            println!(
                "limit 60/s and {:.0}% of calls 429 at random: {:.2}% answered 429, settled at {settled:.1}/s",
                noise * 100.0,
                share * 100.0
            );
            assert!(settled >= 0.5 * 60.0, "{noise}: settled at {settled:.1}/s");
        }
    }

    #[test]
    fn bandwidth_is_shared_across_uploads_and_allows_a_short_burst() {
        let bandwidth = Bandwidth::new(1 << 20);
        let t0 = Instant::now();
        let chunk = bandwidth.chunk();
        assert_eq!(chunk, (1 << 20) / 10);
        // 100 ms of bytes go at once, then one chunk per 100 ms whoever sends it.
        assert_eq!(bandwidth.reserve(t0, chunk), t0);
        assert_eq!(bandwidth.reserve(t0, chunk), t0);
        let third = bandwidth.reserve(t0, chunk);
        assert!(((third - t0).as_secs_f64() - 0.1).abs() < 1e-3, "{third:?}");
        let mut last = third;
        for _ in 0..98 {
            last = bandwidth.reserve(t0, chunk);
        }
        // 101 chunks of 1/10 MiB: 10.1 MiB at 1 MiB/s, the first 0.1 s free.
        assert!(((last - t0).as_secs_f64() - 9.9).abs() < 1e-2, "{last:?}");
    }

    #[test]
    fn bandwidth_reads_as_rclone_writes_it() {
        assert_eq!(parse_bandwidth("10M"), Ok(10 << 20));
        assert_eq!(parse_bandwidth("500K"), Ok(500 << 10));
        assert_eq!(parse_bandwidth("500k"), Ok(500 << 10));
        assert_eq!(parse_bandwidth("1.5MiB/s"), Ok(3 << 19));
        assert_eq!(parse_bandwidth("2GB"), Ok(2 << 30));
        assert_eq!(parse_bandwidth("250000"), Ok(250_000));
        for bad in ["", "fast", "10X", "0", "-5M", "0.1"] {
            let err = parse_bandwidth(bad).unwrap_err();
            assert!(err.contains("expected bytes per second"), "{bad}: {err}");
        }
    }

    #[test]
    fn max_rps_reads_a_positive_rate() {
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").unwrap_err().contains("at least"));
        assert!(parse_rate("x").unwrap_err().contains("not a number"));
        assert!(parse_rate("inf").is_err());
    }
}

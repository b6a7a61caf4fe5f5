//! How fast the run may go: call 1's rate (`--max-rps`, and slowing down on 429s) and the
//! upload bandwidth shared by the pool (`--bwlimit`).
//!
//! Both hand out slots from a [`Pace`]: evenly spaced at the rate, each request or chunk
//! reserving the next one and sleeping until it.
//!
//! Call 1's rate also adapts to throttling, by measuring rather than guessing (as BBR does for
//! TCP): from the first 429 on, it counts call 1s accepted and refused in each second, and paces
//! call 1 at the most the server accepted in a second over the last [`FILTER`] seconds, raised by
//! the share refused that does not depend on the rate. Every 8 seconds ([`CYCLE`]) it probes
//! 15% higher for one second (a limit that was raised, or room it never used, shows as more
//! accepted) and then a little lower for two (the second of them, below the limit and past the
//! probe's requests, shows what share the server refuses at random, whatever the rate: its
//! "noise"). So a limit is learned from what
//! it accepts, with a few percent of 429s for the probes, and 429s that come at random (a limit
//! shared with others, or the sandbox's `--throttle-rate`) cost the run almost nothing: a rate
//! that is lowered does not lower them, so they are not taken for a limit. Time is given, not
//! read, so that tests drive it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many of the last paced seconds the highest count accepted is taken from.
pub const FILTER: usize = 10;
/// A second answered fewer call 1s than this share of the rate in force was not paced: the
/// pool had fewer rows ready than the rate allowed (as BBR says "application-limited"), so
/// what it accepted says nothing of the limit but that it is at least that high.
const PACED: f64 = 0.75;
/// The most seconds kept, paced or not.
const MEMORY: usize = 4 * FILTER;
/// The gains of one probing cycle, a second each: probe above what was accepted, drain the
/// queue the probe built, stay below the limit for a second that measures the noise (a limit
/// refuses nothing there), then cruise.
const CYCLE: [f64; 8] = [1.15, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0];
/// After the first 429, the rate doubles each second while what is accepted grows by a quarter
/// (a run that was throttled at its start has learned little); two seconds without that
/// growth end the start-up.
const STARTUP_GAIN: f64 = 2.0;
const STARTUP_STALLS: u32 = 2;
/// A second of start-up with more than this share refused ends it at once.
const OVERSHOOT: f64 = 1.0 / 3.0;
/// A second with fewer answers than this says too little of the share refused to count.
const NOISE_SAMPLE: u32 = 20;
/// The noise is never taken to be more than this share (so the rate is at most doubled for it).
const MAX_NOISE: f64 = 0.5;
/// A second with this much more refused than the noise is a limit that came down: what it
/// accepted replaces the older seconds' highest at once, instead of after [`FILTER`] seconds.
const DROP_SHARE: f64 = 0.25;
/// A probe refused no more than the noise and this share besides, that had a tenth more
/// accepted, found room above the rate.
const ROOM: f64 = 0.05;
/// How far ahead a call 1 may hold its slot.
pub const HORIZON: Duration = Duration::from_millis(100);
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

/// Call-1 answers in one whole second of the run.
#[derive(Clone, Copy, Debug, Default)]
struct Second {
    /// Seconds since the first answer.
    index: u64,
    accepted: u32,
    refused: u32,
    /// The gain in force.
    gain: f64,
    /// Neither this second nor the one before it went above what was accepted (a probe's
    /// requests are still answered in the second after it): its refusals may be noise.
    level: bool,
    /// A second in which a limit came down: its refusals are not noise.
    overloaded: bool,
    /// The rate in force (0 if none).
    rate: f64,
}

impl Second {
    fn share_refused(&self) -> f64 {
        f64::from(self.refused) / f64::from((self.accepted + self.refused).max(1))
    }

    /// The rate was reached: the pool had rows enough to send it.
    fn paced(&self) -> bool {
        self.rate > 0.0 && f64::from(self.accepted + self.refused) >= PACED * self.rate
    }
}

#[derive(Debug)]
enum Phase {
    /// No 429 yet: call 1 goes as fast as the pool sends it (or at `--max-rps`).
    Free,
    /// Doubling; `best` accepted in a second so far, and seconds since it grew by a quarter.
    Startup { best: u32, stalls: u32 },
    /// Probing: the cycle began at this second.
    Cycle { from: u64 },
}

#[derive(Debug)]
struct CallState {
    /// `--max-rps`.
    cap: Option<f64>,
    /// What 429s taught; `None` until the first.
    learned: Option<f64>,
    /// What the cruise seconds since the last probe took off the rate: each one refused more
    /// than the noise says the highest count accepted was a lucky one.
    trim: f64,
    pace: Pace,
    phase: Phase,
    /// The last slot handed out above what was accepted (a probe, start-up): the answers to
    /// requests sent up to then say nothing of the noise. Workers reserve their slots ahead,
    /// so a probe's requests go out for a while after its second.
    high_until: Option<Instant>,
    /// The instant of the first answer: seconds are counted from it.
    origin: Option<Instant>,
    /// The second being counted, and the last [`FILTER`] whole ones, oldest first.
    current: Second,
    past: VecDeque<Second>,
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
                trim: 1.0,
                pace: Pace::default(),
                phase: Phase::Free,
                high_until: None,
                origin: None,
                current: Second {
                    gain: 1.0,
                    level: true,
                    ..Second::default()
                },
                past: VecDeque::with_capacity(MEMORY + 1),
                requests: 0,
                throttled: 0,
            }),
        }
    }

    /// `Ok`: the instant the next call 1 may be sent (`now` if it need not wait), counted as
    /// sent then. `Err`: the next slot is further away than [`HORIZON`] (or one slot at the
    /// rate, if that is longer): ask again at that instant, for a slot at the rate in force
    /// then. So workers do not hold slots reserved far ahead at a rate that has since risen.
    pub fn reserve(&self, now: Instant) -> Result<Instant, Instant> {
        let mut state = self.state.lock().expect("call rate");
        state.roll(now);
        let at = match state.rate() {
            Some(rate) => {
                let horizon = HORIZON.max(Duration::from_secs_f64(1.0 / rate));
                if state.pace.next.is_some_and(|next| next > now + horizon) {
                    return Err(now + horizon);
                }
                state.pace.reserve(now, 1.0, rate, Duration::ZERO)
            }
            None => now,
        };
        state.requests += 1;
        if state.current.gain > 1.0 {
            state.high_until = Some(state.high_until.map_or(at, |until| until.max(at)));
        }
        Ok(at)
    }

    /// A call 1 sent at `sent` succeeded at `now`.
    pub fn succeeded(&self, sent: Instant, now: Instant) {
        let mut state = self.state.lock().expect("call rate");
        state.roll(now);
        state.answered(sent);
        state.current.accepted += 1;
    }

    /// A call 1 sent at `sent` was answered 429 at `now`. (Its `Retry-After` is honoured by the row it
    /// answered, whose retry waits at least that long; holding every row for it would cost a
    /// quarter of the rate each time, and the rate already slows the others.)
    pub fn throttled(&self, sent: Instant, now: Instant) {
        let mut state = self.state.lock().expect("call rate");
        state.roll(now);
        state.answered(sent);
        state.throttled += 1;
        state.current.refused += 1;
        if !matches!(state.phase, Phase::Free) {
            return;
        }
        // The first 429. After a whole second of answers, that second says what the server
        // accepts: the cycle begins, at its drain second. In the run's first second, what it
        // accepted so far says little: start-up doubles it while that grows.
        let index = state.current.index;
        let (phase, gain, accepted) = match state.past.back() {
            Some(last) => (
                Phase::Cycle {
                    from: index.saturating_sub(1),
                },
                CYCLE[1],
                last.accepted,
            ),
            None => {
                let accepted = state.current.accepted;
                let best = accepted;
                (Phase::Startup { best, stalls: 0 }, STARTUP_GAIN, accepted)
            }
        };
        state.phase = phase;
        state.current.gain = gain;
        state.current.level &= gain <= 1.0;
        state.learn(now, (f64::from(accepted) * gain).max(MIN_RATE));
        state.current.rate = state.rate().unwrap_or(0.0);
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

    /// Sets the rate 429s taught. The slots already handed out are spaced again at it: a slot
    /// reserved at a rate that then rose (the run's first answer a 429, when nothing accepted
    /// yet says more than the slowest rate) does not hold the next one back for seconds.
    fn learn(&mut self, now: Instant, learned: f64) {
        let old = self.rate();
        self.learned = Some(learned);
        if let (Some(old), Some(new), Some(next)) = (old, self.rate(), self.pace.next) {
            // (Only a wait longer than a slot at the new rate: a rate that moves by a probe's
            // gain keeps the spacing of the slots already given.)
            let slot = HORIZON.max(Duration::from_secs_f64(1.0 / new));
            if next > now + slot && new > old {
                self.pace.next = Some(now + (next - now).mul_f64(old / new));
            }
        }
    }

    /// An answer to a request sent at `sent` is counted in this second: one sent above what
    /// was accepted keeps it from measuring the noise.
    fn answered(&mut self, sent: Instant) {
        if self.high_until.is_some_and(|until| sent <= until) {
            self.current.level = false;
        }
    }

    /// Closes the seconds that ended before `now`, and sets the rate for the one it is in.
    fn roll(&mut self, now: Instant) {
        let origin = *self.origin.get_or_insert(now);
        let index = now.saturating_duration_since(origin).as_secs();
        // (An instant a little before the second being counted, read by another thread just
        // before this one took the lock, counts in it.)
        if index <= self.current.index {
            return;
        }
        let ended = self.current;
        if ended.accepted + ended.refused > 0 {
            self.past.push_back(ended);
            // The last FILTER paced seconds, and those not paced since the oldest of them: a
            // spell of few rows ready (workers on long uploads, or waiting out retries) does
            // not push out what the server was seen to accept.
            let mut paced = 0;
            let cut = self.past.iter().rposition(|second| {
                paced += usize::from(second.paced());
                paced == FILTER
            });
            self.past.drain(..cut.unwrap_or(0));
            while self.past.len() > MEMORY {
                self.past.pop_front();
            }
        }
        let gain = self.next_gain(&ended, index);
        self.current = Second {
            index,
            gain,
            level: gain <= 1.0 && ended.gain <= 1.0,
            rate: self.cap.unwrap_or(0.0),
            ..Second::default()
        };
        if matches!(self.phase, Phase::Free) {
            return;
        }
        let noise = self.noise();
        let highest = self.past.iter().map(|s| s.accepted).max().unwrap_or(0);
        let rate = f64::from(highest) * gain * self.trim / (1.0 - noise);
        self.learn(now, rate.max(MIN_RATE));
        self.current.rate = self.rate().unwrap_or(0.0);
    }

    /// Moves the phase on at the end of second `ended`, and says the gain of second `index`.
    fn next_gain(&mut self, ended: &Second, index: u64) -> f64 {
        match &mut self.phase {
            Phase::Free => 1.0,
            Phase::Startup { best, stalls } => {
                // (A second the pool did not fill is no stall: doubling was not tried.)
                if f64::from(ended.accepted) >= 1.25 * f64::from(*best) && ended.accepted > 0 {
                    *best = ended.accepted;
                    *stalls = 0;
                } else if ended.paced() {
                    *stalls += 1;
                }
                // Doubling that has a third refused went past a limit: no need to see it twice.
                let answers = ended.accepted + ended.refused;
                let over = answers >= NOISE_SAMPLE && ended.share_refused() > OVERSHOOT;
                if *stalls < STARTUP_STALLS && !over {
                    return STARTUP_GAIN;
                }
                // Start-up overshot: what was accepted since is the limit, so the cycle starts
                // at its drain second, and the seconds of doubling no longer count.
                self.past.retain(|second| second.gain <= 1.0);
                self.past.push_back(*ended);
                self.phase = Phase::Cycle {
                    from: index.saturating_sub(1),
                };
                CYCLE[1]
            }
            Phase::Cycle { from } => {
                let noise_then = self.past.iter().filter(|s| s.index != ended.index);
                let noise = lowest_share(noise_then);
                let share = ended.share_refused();
                let answers = f64::from(ended.accepted + ended.refused);
                if share > noise + DROP_SHARE && ended.level && answers >= f64::from(NOISE_SAMPLE) {
                    // A limit came down: forget what the seconds before it accepted, and do not
                    // take this second's refusals for noise.
                    self.past.retain(|second| second.index == ended.index);
                    if let Some(second) = self.past.back_mut() {
                        second.overloaded = true;
                    }
                } else if ended.gain == 1.0 && ended.level && ended.paced() {
                    // A cruise second refused more than the noise (and what chance gives a
                    // second of so few answers): the rate was over the limit by that much.
                    let chance = (noise * (1.0 - noise) / answers.max(1.0)).sqrt();
                    let excess = share - noise - chance - 0.01;
                    if excess > 0.0 {
                        self.trim *= (1.0 - excess).max(0.5);
                    }
                }
                let sample = answers >= f64::from(NOISE_SAMPLE);
                let before = self.past.iter().filter(|s| s.index != ended.index);
                let highest = before.map(|s| s.accepted).max().unwrap_or(0);
                let more = f64::from(ended.accepted) >= 1.1 * f64::from(highest);
                if ended.gain > 1.0 && sample && more && share <= noise + ROOM {
                    // The probe was accepted as the seconds below it were, and more was accepted:
                    // there is room above, perhaps much (a limit raised, or a rate that 429s
                    // long held down).
                    let best = ended.accepted;
                    self.phase = Phase::Startup { best, stalls: 0 };
                    return STARTUP_GAIN;
                }
                let gain = CYCLE[((index - *from) % CYCLE.len() as u64) as usize];
                if gain > 1.0 {
                    // A probe starts afresh from the highest count accepted.
                    self.trim = 1.0;
                }
                gain
            }
        }
    }

    /// The share the server refuses whatever the rate: the lowest refused in a second kept
    /// below what was accepted (and not just after a probe), among those with enough answers
    /// to say. A second at the limit is refused a little by the limit itself.
    fn noise(&self) -> f64 {
        lowest_share(self.past.iter())
    }
}

fn lowest_share<'a>(seconds: impl Iterator<Item = &'a Second>) -> f64 {
    seconds
        .filter(|s| s.level && s.gain < 1.0 && !s.overloaded)
        .filter(|s| s.accepted + s.refused >= NOISE_SAMPLE)
        .map(Second::share_refused)
        .fold(None, |low: Option<f64>, share| {
            Some(low.map_or(share, |low| low.min(share)))
        })
        .unwrap_or(0.0)
        .min(MAX_NOISE)
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

    /// A call 1's slot, asking again as told until one is given (as the pool does).
    fn slot(rate: &CallRate, now: Instant) -> Instant {
        let mut now = now;
        loop {
            match rate.reserve(now) {
                Ok(at) => return at,
                Err(again) => now = again,
            }
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn max_rps_spaces_call_1_evenly_from_the_first() {
        let rate = CallRate::new(Some(20.0));
        let t0 = Instant::now();
        // A hundred workers ask at the same instant: they go one every 50 ms.
        let slots: Vec<Instant> = (0..100).map(|_| slot(&rate, t0)).collect();
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
    fn no_slot_is_held_far_ahead_at_a_rate_that_then_rises() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // The run's 11th call 1 was refused: the rate starts at twice the 10 accepted.
        answer_second(&rate, t0, 10, 0);
        rate.throttled(t0 + secs(0.5), t0 + secs(0.5));
        assert_eq!(rate.stats().rate, Some(20.0));
        // 32 workers ask at once: two get slots within the horizon, the others are told to
        // ask again then, rather than holding slots 1.6 s ahead.
        let asked: Vec<Result<Instant, Instant>> =
            (0..32).map(|_| rate.reserve(t0 + secs(0.5))).collect();
        let given = asked.iter().filter(|answer| answer.is_ok()).count();
        assert_eq!(given, 3, "{asked:?}");
        assert!(asked.iter().all(|answer| match answer {
            Ok(at) | Err(at) => *at <= t0 + secs(0.5) + HORIZON,
        }));
    }

    #[test]
    fn an_idle_spell_does_not_save_up_a_burst() {
        let rate = CallRate::new(Some(10.0));
        let t0 = Instant::now();
        slot(&rate, t0);
        let later = t0 + secs(60.0);
        assert_eq!(slot(&rate, later), later);
        assert_eq!(slot(&rate, later), later + secs(0.1));
    }

    #[test]
    fn without_max_rps_or_a_429_nothing_waits() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| slot(&rate, t0) == t0));
        assert_eq!(rate.stats().rate, None);
    }

    /// `count` call 1s answered evenly over the second that starts at `from`, the first
    /// `refused` of every ten answered 429.
    fn answer_second(rate: &CallRate, from: Instant, count: u32, refused_in_ten: u32) {
        for i in 0..count {
            let at = from + secs(f64::from(i) / f64::from(count));
            if i % 10 < refused_in_ten {
                rate.throttled(at, at);
            } else {
                rate.succeeded(at, at);
            }
        }
    }

    #[test]
    fn the_first_429_after_a_whole_second_paces_call_1_below_what_was_accepted() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // 40 accepted in the run's first second, unpaced.
        answer_second(&rate, t0, 40, 0);
        assert_eq!(rate.stats().rate, None);
        let now = t0 + secs(1.5);
        rate.throttled(now, now);
        let learned = rate.stats().rate.unwrap();
        assert!((learned - 40.0 * CYCLE[1]).abs() < 1e-9, "{learned}");
        // From then on, at the learned pace.
        let first = slot(&rate, now);
        assert_eq!(first, now);
        let second = slot(&rate, now);
        assert!(((second - first).as_secs_f64() - 1.0 / learned).abs() < 1e-6);
    }

    #[test]
    fn a_429_in_the_first_second_starts_low_and_doubles_while_more_is_accepted() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // The server refused the run's 11th call 1, and then accepts whatever it is sent.
        answer_second(&rate, t0, 10, 0);
        rate.throttled(t0 + secs(0.5), t0 + secs(0.5));
        assert_eq!(rate.stats().rate, Some(20.0));
        let mut expected = 20.0;
        for second in 1..6 {
            let sent = rate.stats().rate.unwrap() as u32;
            answer_second(&rate, t0 + secs(f64::from(second)), sent, 0);
            slot(&rate, t0 + secs(f64::from(second + 1)));
            expected *= 2.0;
            let learned = rate.stats().rate.unwrap();
            assert!(
                (learned - expected).abs() < 1.0,
                "second {second}: {learned}"
            );
        }
    }

    /// `sent` call 1s answered evenly over the second that starts at `from`: the first `limit`
    /// accepted, the rest refused (a fixed window).
    fn answer_up_to(rate: &CallRate, from: Instant, sent: u32, limit: u32) {
        for i in 0..sent {
            let at = from + secs(f64::from(i) / f64::from(sent));
            match i < limit {
                true => rate.succeeded(at, at),
                false => rate.throttled(at, at),
            }
        }
    }

    #[test]
    fn a_rate_far_above_what_the_server_accepts_comes_down_to_it_within_seconds() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // 1,000 call 1s a second were all accepted; then the server accepts 100 a second.
        answer_second(&rate, t0, 1000, 0);
        let mut sent = 1000;
        for second in 1..4 {
            answer_up_to(&rate, t0 + secs(f64::from(second)), sent, 100);
            slot(&rate, t0 + secs(f64::from(second + 1)));
            sent = (rate.stats().rate.unwrap() as u32).min(1000);
        }
        let learned = rate.stats().rate.unwrap();
        assert!((80.0..=100.0).contains(&learned), "{learned}");
    }

    #[test]
    fn a_limit_that_is_raised_is_found_within_a_minute() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // The pool could send 1,000 a second; the server accepts 20 a second for a minute,
        // then 60.
        answer_up_to(&rate, t0, 1000, 20);
        let mut sent = 1000;
        for second in 1..120 {
            let limit = if second < 60 { 20 } else { 60 };
            answer_up_to(&rate, t0 + secs(f64::from(second)), sent, limit);
            slot(&rate, t0 + secs(f64::from(second + 1)));
            sent = (rate.stats().rate.unwrap() as u32).min(1000);
            if second == 59 {
                assert!(sent <= 24, "{sent} a second against a limit of 20");
            }
        }
        assert!(
            (48..=70).contains(&sent),
            "{sent} a second against a limit of 60"
        );
    }

    #[test]
    fn refusals_of_a_probe_s_requests_answered_after_it_are_not_taken_for_noise() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        answer_second(&rate, t0, 100, 0);
        rate.throttled(t0 + secs(1.5), t0 + secs(1.5));
        for second in 1..8 {
            answer_up_to(&rate, t0 + secs(f64::from(second)), 100, 100);
        }
        // Second 8 probes, and its requests are answered 1.2 s later, in the seconds after
        // it (a slow API with many rows in flight); the limit refuses a tenth of them.
        slot(&rate, t0 + secs(8.0));
        assert!(rate.stats().rate.unwrap() > 100.0, "second 8 probes");
        let mut slots = Vec::new();
        let mut now = t0 + secs(8.0);
        while now < t0 + secs(9.0) {
            now = slot(&rate, now);
            slots.push(now);
        }
        for (i, &sent) in slots.iter().enumerate() {
            let answered = sent + secs(1.2);
            match i % 10 {
                0 => rate.throttled(sent, answered),
                _ => rate.succeeded(sent, answered),
            }
        }
        // The drain seconds that held those answers measured no noise: the rate is not
        // raised for one.
        // (Two cruise seconds more, so that the first cycle's drain seconds have left the
        // window and the probe's second is the only one that could measure the noise.)
        answer_up_to(&rate, t0 + secs(11.0), 90, 100);
        answer_up_to(&rate, t0 + secs(12.0), 90, 100);
        slot(&rate, t0 + secs(13.0));
        let learned = rate.stats().rate.unwrap();
        assert!(learned <= 1.0 * 104.0 + 1e-9, "{learned}");
    }

    #[test]
    fn a_share_refused_that_a_lower_rate_does_not_lower_is_not_taken_for_a_limit() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // A tenth of the call 1s are refused whatever the rate: at 1,000 a second, then at
        // whatever the rate says, for a minute.
        answer_second(&rate, t0, 1000, 1);
        let mut count = 1000;
        for second in 1..60 {
            answer_second(&rate, t0 + secs(f64::from(second)), count, 1);
            slot(&rate, t0 + secs(f64::from(second + 1)));
            count = (rate.stats().rate.unwrap() as u32).min(1000);
        }
        // The rate stays near what the run sent, not the 900 it was accepted, nor less.
        let learned = rate.stats().rate.unwrap();
        assert!(learned >= 0.95 * 1000.0 * CYCLE[1], "{learned}");
    }

    #[test]
    fn a_429_as_the_run_s_first_answer_holds_call_1_back_only_while_nothing_is_accepted() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // The run's first answer is a 429: nothing accepted yet, so the slowest rate. Two
        // workers take a slot at it, 10 s apart.
        rate.throttled(t0, t0);
        assert_eq!(rate.stats().rate, Some(MIN_RATE));
        assert_eq!(slot(&rate, t0), t0);
        assert!(slot(&rate, t0 + secs(0.1)) > t0 + secs(9.0));
        // The requests already sent are accepted: 25 in the first second.
        answer_second(&rate, t0, 25, 0);
        // From the next second the rate is twice that, and a slot is given at once, not after
        // the 20 s the two slots at the slowest rate reserved.
        let now = t0 + secs(1.0);
        let next = slot(&rate, now);
        assert!((rate.stats().rate.unwrap() - 50.0).abs() < 1e-9);
        assert!(
            next <= now + secs(0.5),
            "{:?} after the second began",
            next - now
        );
    }

    #[test]
    fn a_spell_with_few_rows_ready_does_not_lower_the_rate() {
        let rate = CallRate::new(None);
        let t0 = Instant::now();
        // A tenth refused at random, 100 call 1s a second for ten seconds...
        answer_second(&rate, t0, 100, 1);
        for second in 1..10 {
            answer_second(&rate, t0 + secs(f64::from(second)), 100, 1);
        }
        slot(&rate, t0 + secs(10.0));
        let before = rate.stats().rate.unwrap();
        assert!(before >= 90.0, "{before}");
        // ...then twenty seconds in which the pool had only 10 rows a second ready (its
        // workers on long uploads, or waiting out retries), a tenth of them refused too.
        for second in 10..30 {
            answer_second(&rate, t0 + secs(f64::from(second)), 10, 1);
        }
        // When rows are ready again, they go at the rate the server was seen to accept,
        // not at the 9 a second those quiet seconds had accepted.
        slot(&rate, t0 + secs(30.0));
        let after = rate.stats().rate.unwrap();
        assert!(after >= 0.9 * before, "{after} a second after {before}");
    }

    #[test]
    fn max_rps_stays_the_ceiling_when_successes_raise_the_rate() {
        let rate = CallRate::new(Some(20.0));
        let t0 = Instant::now();
        rate.throttled(t0, t0);
        let mut now = t0;
        for _ in 0..10_000 {
            now = slot(&rate, now);
            rate.succeeded(now, now);
        }
        // Never above it, whatever the successes; below it only in a drain second.
        let learned = rate.stats().rate.unwrap();
        assert!((20.0 * CYCLE[1]..=20.0).contains(&learned), "{learned}");
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
            let go = slot(&rate, t0 + at) - t0;
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
            let early = go.as_secs_f64() < 60.0;
            sent_early += u64::from(early);
            let answered = go + secs(latency);
            if over || rng.f64() < noise {
                refused += 1;
                refused_early += u64::from(early);
                rate.throttled(t0 + go, t0 + answered);
            } else {
                rate.succeeded(t0 + go, t0 + answered);
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
                    "{window:?} window, limit {limit}/s, {workers} in flight, latency {latency}s: {:.2}% answered 429 ({:.1}% in the first minute), settled at {settled:.1}/s",
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
    fn random_429s_cost_about_their_own_share_whether_or_not_there_is_a_limit() {
        // Within a limit of 60 a second.
        for noise in [0.01, 0.05, 0.1] {
            let (share, _, settled) = simulate_noisy(Window::Sliding, 60, 32, 0.02, 600.0, noise);
            println!(
                "limit 60/s and {:.0}% of calls 429 at random: {:.2}% answered 429, settled at {settled:.1}/s",
                noise * 100.0,
                share * 100.0
            );
            let fair = 60.0 * (1.0 - noise);
            assert!(settled >= 0.85 * fair, "{noise}: settled at {settled:.1}/s");
        }
        // No limit at all: 32 in flight at 20 ms go at most 1,600 a second.
        for noise in [0.01, 0.05, 0.1, 0.2] {
            let (share, _, settled) =
                simulate_noisy(Window::Sliding, u32::MAX, 32, 0.02, 120.0, noise);
            println!(
                "no limit, 32 in flight at 20 ms, {:.0}% of calls 429 at random: {:.2}% answered 429, settled at {settled:.1}/s",
                noise * 100.0,
                share * 100.0
            );
            let fair = 1600.0 * (1.0 - noise);
            assert!(settled >= 0.85 * fair, "{noise}: settled at {settled:.1}/s");
            assert!(share <= noise + 0.02, "{noise}: {share}");
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

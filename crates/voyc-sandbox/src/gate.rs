//! The gateway in front of the sandbox's API and S3 stand-in, for rehearsing a long migration:
//! `--rate-limit N` answers 429 to call-1 requests beyond N in any one second, and
//! `--outage-after N --outage-secs S` answers every API and S3 request 503 for S seconds once
//! the Nth call 1 has been let through. Unlike the fault rates, these depend on time, not on
//! chance: time comes from a [`Clock`], so the tests step it by hand instead of sleeping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The rate limit's window: DRF's `"N/second"` throttle rate.
const WINDOW: Duration = Duration::from_secs(1);

/// Time since the sandbox started.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Duration;
}

/// The clock of a running sandbox.
pub(crate) struct RealClock(Instant);

impl RealClock {
    pub(crate) fn new() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// `--outage-after N --outage-secs S [--outage-repeat]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// The outage starts once this many call-1 requests have been let through (0: at start).
    pub after_calls: u64,
    /// How long every request is answered 503.
    pub duration: Duration,
    /// After each outage, count `after_calls` call 1s again and go down again.
    pub repeat: bool,
}

/// How the gateway answers a request, before the sandbox itself sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Passage {
    /// Through to the sandbox.
    Open,
    /// 503: an outage is on.
    Down,
}

/// What the gateway counted, as `GET /_sandbox/stats` shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateCounts {
    /// Call-1 requests answered 429 by `--rate-limit`.
    pub rate_limited: u64,
    /// Outages started so far (at most 1 without `--outage-repeat`).
    pub outages: u64,
    /// Call-1 requests answered 503 because an outage was on.
    pub outage_api_requests: u64,
    /// Upload requests to the S3 stand-in answered 503 because an outage was on.
    pub outage_s3_requests: u64,
    /// True while an outage is on.
    pub outage_on: bool,
}

enum Phase {
    /// Up, counting call 1s towards the next outage.
    Counting { passed: u64 },
    /// Down until this time.
    Down { until: Duration },
    /// Up for good: the one outage is over (or none was asked for).
    Over,
}

struct State {
    phase: Phase,
    /// When the call 1s let through in the last second arrived, oldest first.
    recent: VecDeque<Duration>,
}

pub(crate) struct Gate {
    rate_limit: Option<u32>,
    outage: Option<Outage>,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
    rate_limited: AtomicU64,
    outages: AtomicU64,
    outage_api: AtomicU64,
    outage_s3: AtomicU64,
}

impl Gate {
    pub(crate) fn new(
        rate_limit: Option<u32>,
        outage: Option<Outage>,
        clock: Box<dyn Clock>,
    ) -> Gate {
        let gate = Gate {
            rate_limit,
            outage,
            clock,
            state: Mutex::new(State {
                phase: Phase::Over,
                recent: VecDeque::new(),
            }),
            rate_limited: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            outage_api: AtomicU64::new(0),
            outage_s3: AtomicU64::new(0),
        };
        if let Some(outage) = outage {
            let now = gate.clock.now();
            let phase = match outage.after_calls {
                0 => gate.go_down(now, outage),
                _ => Phase::Counting { passed: 0 },
            };
            gate.lock().phase = phase;
        }
        gate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the gate is never poisoned")
    }

    fn go_down(&self, now: Duration, outage: Outage) -> Phase {
        self.outages.fetch_add(1, Ordering::Relaxed);
        Phase::Down {
            until: now + outage.duration,
        }
    }

    /// Ends an outage whose time is up.
    fn settle(&self, state: &mut State, now: Duration) {
        if let (Phase::Down { until }, Some(outage)) = (&state.phase, self.outage)
            && now >= *until
        {
            state.phase = match outage.repeat {
                true => Phase::Counting { passed: 0 },
                false => Phase::Over,
            };
        }
    }

    /// A call-1 request arrives: answered 503 during an outage; otherwise it is let through
    /// and counted, and the Nth one let through starts the outage (it is answered as usual).
    pub(crate) fn call1(&self) -> Passage {
        let now = self.clock.now();
        let mut state = self.lock();
        self.settle(&mut state, now);
        match state.phase {
            Phase::Down { .. } => {
                self.outage_api.fetch_add(1, Ordering::Relaxed);
                return Passage::Down;
            }
            Phase::Counting { passed } => {
                let passed = passed + 1;
                state.phase = match self.outage {
                    Some(outage) if passed >= outage.after_calls => self.go_down(now, outage),
                    _ => Phase::Counting { passed },
                };
            }
            Phase::Over => {}
        }
        Passage::Open
    }

    /// An upload request to the S3 stand-in arrives: answered 503 during an outage.
    pub(crate) fn s3(&self) -> Passage {
        let now = self.clock.now();
        let mut state = self.lock();
        self.settle(&mut state, now);
        match state.phase {
            Phase::Down { .. } => {
                self.outage_s3.fetch_add(1, Ordering::Relaxed);
                Passage::Down
            }
            _ => Passage::Open,
        }
    }

    /// `--rate-limit`, for a call 1 the sandbox is about to process: `Some(seconds)` to
    /// answer 429 with that `Retry-After`. A sliding window, as DRF's throttles keep it: a
    /// call 1 is refused when N were let through in the second before it; refused ones do not
    /// count.
    pub(crate) fn throttle(&self) -> Option<u64> {
        let limit = self.rate_limit? as usize;
        let now = self.clock.now();
        let mut state = self.lock();
        while state
            .recent
            .front()
            .is_some_and(|&at| now.saturating_sub(at) >= WINDOW)
        {
            state.recent.pop_front();
        }
        if state.recent.len() >= limit {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            let oldest = *state.recent.front().expect("a full window is not empty");
            let wait = (oldest + WINDOW).saturating_sub(now);
            return Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        state.recent.push_back(now);
        None
    }

    pub(crate) fn counts(&self) -> GateCounts {
        let now = self.clock.now();
        let down = {
            let mut state = self.lock();
            self.settle(&mut state, now);
            matches!(state.phase, Phase::Down { .. })
        };
        GateCounts {
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            outage_api_requests: self.outage_api.load(Ordering::Relaxed),
            outage_s3_requests: self.outage_s3.load(Ordering::Relaxed),
            outage_on: down,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A clock the test moves by hand.
    #[derive(Clone, Default)]
    struct Hand(Arc<Mutex<Duration>>);

    impl Hand {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for Hand {
        fn now(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn gate(rate_limit: Option<u32>, outage: Option<Outage>) -> (Gate, Hand) {
        let hand = Hand::default();
        (Gate::new(rate_limit, outage, Box::new(hand.clone())), hand)
    }

    fn outage(after_calls: u64, secs: u64, repeat: bool) -> Option<Outage> {
        Some(Outage {
            after_calls,
            duration: Duration::from_secs(secs),
            repeat,
        })
    }

    #[test]
    fn without_switches_everything_passes() {
        let (gate, hand) = gate(None, None);
        for _ in 0..1000 {
            assert_eq!(gate.call1(), Passage::Open);
            assert_eq!(gate.s3(), Passage::Open);
            assert_eq!(gate.throttle(), None);
            hand.advance(ms(1));
        }
        assert_eq!(gate.counts(), GateCounts::default());
    }

    #[test]
    fn the_rate_limit_lets_n_through_in_any_one_second_and_refuses_the_rest() {
        let (gate, hand) = gate(Some(3), None);
        assert_eq!(
            [gate.throttle(), gate.throttle(), gate.throttle()],
            [None; 3]
        );
        assert_eq!(gate.throttle(), Some(1), "the fourth in the same instant");
        hand.advance(ms(999));
        assert_eq!(
            gate.throttle(),
            Some(1),
            "the window slides: still within a second"
        );
        hand.advance(ms(1));
        // A second after the first three, all three have left the window.
        assert_eq!(
            [gate.throttle(), gate.throttle(), gate.throttle()],
            [None; 3]
        );
        assert_eq!(gate.throttle(), Some(1));
        assert_eq!(gate.counts().rate_limited, 3);
    }

    #[test]
    fn a_sliding_window_never_lets_through_more_than_n_in_a_second_across_a_boundary() {
        let (gate, hand) = gate(Some(2), None);
        hand.advance(ms(900));
        assert_eq!([gate.throttle(), gate.throttle()], [None, None]);
        // A fixed window would start afresh at 1 s and let two more through 100 ms later.
        hand.advance(ms(200));
        assert_eq!(gate.throttle(), Some(1));
        hand.advance(ms(800));
        assert_eq!(gate.throttle(), None);
    }

    #[test]
    fn a_steady_caller_gets_exactly_the_rate_limit_per_second() {
        let (gate, hand) = gate(Some(20), None);
        // 100 calls a second for 10 seconds.
        let passed = (0..1000)
            .filter(|_| {
                let passed = gate.throttle().is_none();
                hand.advance(ms(10));
                passed
            })
            .count();
        assert_eq!(passed, 200);
        assert_eq!(gate.counts().rate_limited, 800);
    }

    #[test]
    fn the_outage_starts_after_the_nth_call_1_and_ends_after_its_seconds() {
        let (gate, hand) = gate(None, outage(2, 30, false));
        assert_eq!(gate.call1(), Passage::Open);
        assert_eq!(gate.s3(), Passage::Open);
        assert_eq!(
            gate.call1(),
            Passage::Open,
            "the second is answered as usual"
        );
        assert!(gate.counts().outage_on);
        assert_eq!(gate.s3(), Passage::Down, "its upload meets the outage");
        assert_eq!(gate.call1(), Passage::Down);
        hand.advance(Duration::from_secs(29));
        assert_eq!(gate.call1(), Passage::Down);
        hand.advance(Duration::from_secs(1));
        assert_eq!(gate.s3(), Passage::Open);
        for _ in 0..10 {
            assert_eq!(gate.call1(), Passage::Open, "one outage per run");
        }
        let counts = gate.counts();
        assert_eq!(
            (
                counts.outages,
                counts.outage_api_requests,
                counts.outage_s3_requests
            ),
            (1, 2, 1)
        );
        assert!(!counts.outage_on);
    }

    #[test]
    fn with_repeat_every_n_call_1s_after_an_outage_bring_another() {
        let (gate, hand) = gate(None, outage(3, 5, true));
        for round in 1..=3 {
            for _ in 0..3 {
                assert_eq!(gate.call1(), Passage::Open, "round {round}");
            }
            assert_eq!(gate.call1(), Passage::Down, "round {round}");
            hand.advance(Duration::from_secs(5));
        }
        let counts = gate.counts();
        assert_eq!((counts.outages, counts.outage_api_requests), (3, 3));
    }

    #[test]
    fn an_outage_after_zero_calls_is_on_from_the_start() {
        let (gate, hand) = gate(None, outage(0, 2, false));
        assert_eq!(gate.s3(), Passage::Down);
        assert_eq!(gate.call1(), Passage::Down);
        hand.advance(Duration::from_secs(2));
        assert_eq!(gate.call1(), Passage::Open);
        assert_eq!(gate.counts().outages, 1);
    }
}

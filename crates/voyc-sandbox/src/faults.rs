//! Fault injection: which requests fail, and how many did. Draws come from one seeded
//! generator, a fixed number per request, so a given `--seed` and a given order of requests
//! always inject the same faults. Expired targets are drawn from a second generator, so that
//! adding them left every other seeded sequence as it was. A short token lifetime draws
//! nothing: it depends on the time since the sandbox started alone, and is only counted here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// How often each fault is injected, each a probability between 0 and 1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub fail: f64,
    pub ambiguous: f64,
    pub throttle: f64,
    pub s3_fail: f64,
    pub s3_drop: f64,
    pub expired: f64,
}

impl Rates {
    /// Every rate with the name of the option that sets it, for error messages.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("fail rate", self.fail),
            ("ambiguous rate", self.ambiguous),
            ("throttle rate", self.throttle),
            ("S3 fail rate", self.s3_fail),
            ("S3 drop rate", self.s3_drop),
            ("expired rate", self.expired),
        ]
    }
}

/// The kinds of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Call 1 answered 503 before it is processed.
    Fail,
    /// Call 1 processed (the conversation exists), then answered 500.
    Ambiguous,
    /// Call 1 answered 429 with `Retry-After: 1`.
    Throttle,
    /// An upload answered 503 `SlowDown`.
    S3Fail,
    /// An upload's connection closed after part of its body.
    S3Drop,
    /// Call 1 handed out an upload target that had already expired.
    Expired,
    /// Call 1 refused the right token because `--token-ttl` had run out.
    TokenExpired,
}

/// How many faults of each kind were injected so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    pub fail: u64,
    pub ambiguous: u64,
    pub throttle: u64,
    pub s3_fail: u64,
    pub s3_drop: u64,
    pub expired: u64,
    /// Calls 1 with the right token refused because its lifetime (`--token-ttl`) had run out.
    pub token_expired: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.fail
            + self.ambiguous
            + self.throttle
            + self.s3_fail
            + self.s3_drop
            + self.expired
            + self.token_expired
    }
}

/// The faults drawn for one call 1; the handler decides which of them apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiDraw {
    pub fail: bool,
    pub throttle: bool,
    pub ambiguous: bool,
}

/// The faults drawn for one upload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S3Draw {
    pub fail: bool,
    pub drop: bool,
}

pub struct Faults {
    rates: Rates,
    rng: Mutex<fastrand::Rng>,
    /// For expired targets only.
    expiry_rng: Mutex<fastrand::Rng>,
    counts: [AtomicU64; 7],
}

impl Faults {
    pub fn new(rates: Rates, seed: u64) -> Faults {
        Faults {
            rates,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            expiry_rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0xe1b1_7ed0_7a26_e75d)),
            counts: Default::default(),
        }
    }

    /// Draws for a call 1: always three numbers, whatever they decide.
    pub fn draw_api(&self) -> ApiDraw {
        let mut rng = self
            .rng
            .lock()
            .expect("the fault generator is never poisoned");
        ApiDraw {
            fail: rng.f64() < self.rates.fail,
            throttle: rng.f64() < self.rates.throttle,
            ambiguous: rng.f64() < self.rates.ambiguous,
        }
    }

    /// Draws for an upload: always two numbers.
    pub fn draw_s3(&self) -> S3Draw {
        let mut rng = self
            .rng
            .lock()
            .expect("the fault generator is never poisoned");
        S3Draw {
            fail: rng.f64() < self.rates.s3_fail,
            drop: rng.f64() < self.rates.s3_drop,
        }
    }

    /// Whether the target of a call 1 that succeeds is handed out already expired.
    pub fn draw_expired(&self) -> bool {
        self.expiry_rng
            .lock()
            .expect("the fault generator is never poisoned")
            .f64()
            < self.rates.expired
    }

    /// Records that a fault was injected.
    pub fn count(&self, fault: Fault) {
        self.counts[fault as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> FaultCounts {
        let n = |fault: Fault| self.counts[fault as usize].load(Ordering::Relaxed);
        FaultCounts {
            fail: n(Fault::Fail),
            ambiguous: n(Fault::Ambiguous),
            throttle: n(Fault::Throttle),
            s3_fail: n(Fault::S3Fail),
            s3_drop: n(Fault::S3Drop),
            expired: n(Fault::Expired),
            token_expired: n(Fault::TokenExpired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(p: f64) -> Rates {
        Rates {
            fail: p,
            ambiguous: p,
            throttle: p,
            s3_fail: p,
            s3_drop: p,
            expired: p,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_in_the_same_order() {
        let sequence = |seed| {
            let faults = Faults::new(rates(0.3), seed);
            (0..200)
                .map(|i| {
                    if i % 3 == 0 {
                        format!("{:?}", faults.draw_s3())
                    } else {
                        format!("{:?}", faults.draw_api())
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sequence(7), sequence(7));
        assert_ne!(sequence(7), sequence(8));
    }

    #[test]
    fn rate_one_always_and_rate_zero_never_injects() {
        let always = Faults::new(rates(1.0), 1);
        let never = Faults::new(rates(0.0), 1);
        for _ in 0..1000 {
            let (a, s) = (always.draw_api(), always.draw_s3());
            assert!(a.fail && a.throttle && a.ambiguous && s.fail && s.drop);
            assert!(always.draw_expired() && !never.draw_expired());
            assert_eq!(never.draw_api(), ApiDraw::default());
            assert_eq!(never.draw_s3(), S3Draw::default());
        }
    }

    #[test]
    fn a_rate_injects_about_that_share_of_requests() {
        let faults = Faults::new(rates(0.1), 42);
        let hits = (0..10_000).filter(|_| faults.draw_api().fail).count();
        assert!((800..1200).contains(&hits), "{hits} of 10000 at rate 0.1");
    }

    #[test]
    fn expired_targets_leave_the_other_draws_of_a_seed_unchanged() {
        let with = Faults::new(rates(0.5), 9);
        let without = Faults::new(
            Rates {
                expired: 0.0,
                ..rates(0.5)
            },
            9,
        );
        for _ in 0..100 {
            with.draw_expired();
            assert_eq!(with.draw_api(), without.draw_api());
            assert_eq!(with.draw_s3(), without.draw_s3());
        }
    }

    #[test]
    fn counts_are_kept_per_kind() {
        let faults = Faults::new(rates(0.0), 1);
        faults.count(Fault::Throttle);
        faults.count(Fault::Throttle);
        faults.count(Fault::S3Drop);
        faults.count(Fault::TokenExpired);
        let counts = faults.counts();
        assert_eq!((counts.throttle, counts.s3_drop, counts.fail), (2, 1, 0));
        assert_eq!(counts.token_expired, 1);
        assert_eq!(counts.total(), 4);
    }
}

//! How long to wait before trying a failed call again: capped exponential backoff with full
//! jitter, never sooner than the server's `Retry-After` (honoured up to 5 minutes). Which
//! failures are worth another try is `failure`'s business; the loop is the pool's.

use std::time::Duration;

/// Capped exponential backoff with full jitter (AWS's "Exponential Backoff And Jitter").
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The ceiling before jitter for the first retry; doubles with each further retry.
    pub base: Duration,
    /// No computed wait exceeds this.
    pub cap: Duration,
    /// A server's `Retry-After` is honoured up to this; beyond it we wait this long.
    pub max_retry_after: Duration,
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(fastrand::Rng::new())
    }
}

impl Backoff {
    pub const BASE: Duration = Duration::from_millis(250);
    pub const CAP: Duration = Duration::from_secs(30);
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

    pub fn new(rng: fastrand::Rng) -> Backoff {
        Backoff {
            base: Backoff::BASE,
            cap: Backoff::CAP,
            max_retry_after: Backoff::MAX_RETRY_AFTER,
            rng,
        }
    }

    /// How long to wait before retry number `retry` (1 for the first retry): a uniform pick in
    /// `[0, min(cap, base·2^(retry-1))]`, but never less than the server's `Retry-After`.
    pub fn delay(&mut self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(self.rng.u64(0..=ceiling_ms));
        match retry_after {
            // Jitter on top of the server's wait so that throttled workers do not all come
            // back in the same millisecond.
            Some(wait) => wait.min(self.max_retry_after) + jittered.min(self.base),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_full_jitter_and_stops_at_the_cap() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(7));
        for retry in 1..=12 {
            let ceiling = (Backoff::BASE * (1 << (retry - 1))).min(Backoff::CAP);
            let mut largest = Duration::ZERO;
            for _ in 0..200 {
                let delay = backoff.delay(retry, None);
                assert!(delay <= ceiling, "retry {retry}: {delay:?} > {ceiling:?}");
                largest = largest.max(delay);
            }
            // Full jitter spreads over the whole range, not just near zero.
            assert!(largest > ceiling / 2, "retry {retry}: largest {largest:?}");
        }
    }

    #[test]
    fn backoff_never_waits_less_than_retry_after_and_caps_it() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(1));
        for _ in 0..100 {
            let delay = backoff.delay(1, Some(Duration::from_secs(2)));
            assert!(delay >= Duration::from_secs(2));
            assert!(delay <= Duration::from_secs(2) + Backoff::BASE);
        }
        let delay = backoff.delay(1, Some(Duration::from_secs(86_400)));
        assert!(delay <= Backoff::MAX_RETRY_AFTER + Backoff::BASE);
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let mut backoff = Backoff::new(fastrand::Rng::with_seed(3));
        assert!(backoff.delay(u32::MAX, None) <= Backoff::CAP);
    }
}

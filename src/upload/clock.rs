//! The time the pool waits on: the real one, or (in tests) a clock that moves only when
//! something sleeps, so that a ten-minute outage or a rate limit is tested in milliseconds
//! with no wall-clock assertion.

#[cfg(test)]
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Now and sleep, for backoff, outage probes and rate limits.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    Real,
    /// Starts at its creation; each sleep returns at once, moves the clock on by its length
    /// and is kept in a log.
    #[cfg(test)]
    Manual(Arc<Manual>),
}

#[cfg(test)]
#[derive(Debug)]
pub struct Manual {
    start: Instant,
    state: Mutex<(Duration, Vec<Duration>)>,
}

#[cfg(test)]
impl Manual {
    /// How far the clock has moved since it was made.
    pub fn elapsed(&self) -> Duration {
        self.state.lock().expect("manual clock").0
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.state.lock().expect("manual clock").1.clone()
    }
}

impl Clock {
    /// A manual clock and a handle on it.
    #[cfg(test)]
    pub fn manual() -> (Clock, Arc<Manual>) {
        let manual = Arc::new(Manual {
            start: Instant::now(),
            state: Mutex::new((Duration::ZERO, Vec::new())),
        });
        (Clock::Manual(manual.clone()), manual)
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            #[cfg(test)]
            Clock::Manual(manual) => manual.start + manual.elapsed(),
        }
    }

    pub async fn sleep(&self, duration: Duration) {
        match self {
            Clock::Real => tokio::time::sleep(duration).await,
            #[cfg(test)]
            Clock::Manual(manual) => {
                {
                    let mut state = manual.state.lock().expect("manual clock");
                    state.0 += duration;
                    state.1.push(duration);
                }
                tokio::task::yield_now().await;
            }
        }
    }

    /// Sleeps until `at` (at once if it has passed).
    pub async fn sleep_until(&self, at: Instant) {
        let now = self.now();
        if at > now {
            self.sleep(at - now).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_manual_clock_moves_by_each_sleep_and_keeps_them() {
        let (clock, manual) = Clock::manual();
        let start = clock.now();
        clock.sleep(Duration::from_secs(600)).await;
        clock.sleep_until(start + Duration::from_secs(601)).await;
        clock.sleep_until(start).await;
        assert_eq!(clock.now() - start, Duration::from_secs(601));
        assert_eq!(
            manual.sleeps(),
            [Duration::from_secs(600), Duration::from_secs(1)]
        );
    }
}

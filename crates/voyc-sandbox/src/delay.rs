//! `--latency-ms` to within a fraction of a millisecond. Tokio's timer counts in whole
//! milliseconds and wakes a sleeper at the next tick after its deadline, so `sleep(50 ms)`
//! took 51.5–52 ms here: 3–4 % more latency than asked for on every request, which a
//! benchmark against the limit `concurrency / (2 × latency)` would charge to the client. One
//! thread keeps the deadlines in a heap and waits for the earliest with the operating system's
//! high-resolution timeout instead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A sleeper waiting for its deadline; ordered by deadline, then by arrival.
struct Wake {
    at: Instant,
    order: u64,
    done: oneshot::Sender<()>,
}

impl PartialEq for Wake {
    fn eq(&self, other: &Wake) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Wake {}

impl PartialOrd for Wake {
    fn partial_cmp(&self, other: &Wake) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Wake {
    fn cmp(&self, other: &Wake) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Precise delays for async handlers; the thread stops when this is dropped.
pub struct Delays {
    queue: mpsc::Sender<Wake>,
    order: AtomicU64,
}

impl Delays {
    pub fn new() -> Delays {
        let (queue, waiting) = mpsc::channel();
        // If the thread cannot start, `waiting` is dropped, every send fails, and `sleep`
        // falls back to tokio's timer.
        let _ = std::thread::Builder::new()
            .name("sandbox-latency".into())
            .spawn(move || wake_in_order(&waiting));
        Delays {
            queue,
            order: AtomicU64::new(0),
        }
    }

    /// Waits `duration` from now.
    pub async fn sleep(&self, duration: Duration) {
        let at = Instant::now() + duration;
        let (done, woken) = oneshot::channel();
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        let sent = self.queue.send(Wake { at, order, done });
        if sent.is_err() || woken.await.is_err() {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// The thread: wake every sleeper whose deadline has passed, then wait for the next deadline
/// or a new sleeper, whichever comes first.
fn wake_in_order(waiting: &mpsc::Receiver<Wake>) {
    let mut heap: BinaryHeap<Reverse<Wake>> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(next)| next.at <= now) {
            if let Some(Reverse(due)) = heap.pop() {
                let _ = due.done.send(());
            }
        }
        let arrived = match heap.peek() {
            Some(Reverse(next)) => waiting.recv_timeout(next.at - now),
            None => waiting.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match arrived {
            Ok(wake) => heap.push(Reverse(wake)),
            Err(RecvTimeoutError::Timeout) => {}
            // The sandbox stopped: its requests are gone with it.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleepers_wake_in_the_order_of_their_deadlines_and_never_early() {
        let delays = std::sync::Arc::new(Delays::new());
        let (tx, mut woken) = tokio::sync::mpsc::unbounded_channel();
        for ms in [150u64, 30, 90] {
            let (delays, tx) = (delays.clone(), tx.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                delays.sleep(Duration::from_millis(ms)).await;
                let _ = tx.send((ms, started.elapsed()));
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some((ms, took)) = woken.recv().await {
            assert!(took >= Duration::from_millis(ms), "{ms} ms took {took:?}");
            order.push(ms);
        }
        assert_eq!(order, [30, 90, 150]);
    }
}

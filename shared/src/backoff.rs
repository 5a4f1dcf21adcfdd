//! The wait between attempts at something that failed (an etcd request, a
//! MongoDB write, a watch): doubling from a first delay up to a cap, back
//! to the first delay after a success. One helper so every retry loop in
//! the cluster backs off alike and stops at once on shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A doubling delay between `first` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles after each wait, never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// The usual retry of an etcd request: 200 ms doubling to 5 s.
    pub fn etcd() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The delay the next wait will last.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// Takes the next delay and doubles the one after it (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to the first delay: the last attempt succeeded.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Sleeps the next delay unless `token` is cancelled first; false when
    /// it was (the caller stops retrying).
    pub async fn wait_or_cancel(&mut self, token: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = token.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_start_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_cancelled_wait_returns_false_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.wait_or_cancel(&token).await);
    }
}

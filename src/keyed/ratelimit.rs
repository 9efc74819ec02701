//! The token bucket of PROTOCOL.md §8: capacity N, continuous refill of N/60 tokens
//! per second, a new bucket starts full, a message needs one whole token.
//! Time is passed in as seconds (f64) so tests can drive it exactly.

/// One bucket. `tokens` is fractional; refills are computed lazily on use.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    tokens: f64,
    updated_at: f64,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens at time `now`.
    pub fn new(capacity: u32, now: f64) -> TokenBucket {
        TokenBucket {
            capacity: f64::from(capacity),
            tokens: f64::from(capacity),
            updated_at: now,
        }
    }

    fn refill(&mut self, now: f64) {
        if now > self.updated_at {
            let per_second = self.capacity / 60.0;
            self.tokens = (self.tokens + (now - self.updated_at) * per_second).min(self.capacity);
            self.updated_at = now;
        }
    }

    /// Takes one token, or returns `Err(retry_after_secs)` =
    /// max(1, ceil((1 - t) * 60 / N)) when less than one whole token is left.
    pub fn take(&mut self, now: f64) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - self.tokens) * 60.0 / self.capacity).ceil();
            // `wait` is finite and positive: tokens < 1 and capacity >= 1.
            Err((wait as u64).max(1))
        }
    }

    /// True when the bucket would be full at `now`: it can be discarded (§8).
    pub fn is_full(&self, now: f64) -> bool {
        let elapsed = (now - self.updated_at).max(0.0);
        self.tokens + elapsed * self.capacity / 60.0 >= self.capacity
    }
}

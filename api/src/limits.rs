//! Per-user rate limits, kept in this node's memory: message sends (token bucket) and failed
//! logins (fixed one-minute window). They protect the node, so they are not replicated.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket per key: `rate` per second, bursts up to `burst`.
pub struct SendLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl SendLimiter {
    /// `rate` 0 turns the limit off.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate);
        SendLimiter { rate, burst: (rate * 4.0).max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `user`; false when they are over the limit.
    pub fn allow(&self, user: &str) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget idle users rather than grow without bound.
            buckets.retain(|_, (tokens, at)| *tokens < self.burst || now.duration_since(*at) < Duration::from_secs(60));
        }
        let (tokens, at) = buckets.entry(user.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed logins per user id per minute.
pub struct LoginLimiter {
    per_minute: u32,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        LoginLimiter { per_minute, failures: Mutex::new(HashMap::new()) }
    }

    /// False when `user` has used up this minute's failed attempts.
    pub fn allow(&self, user: &str) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.get(user) {
            Some((n, since)) if since.elapsed() < Duration::from_secs(60) => *n < self.per_minute,
            _ => true,
        }
    }

    pub fn failed(&self, user: &str) {
        if self.per_minute == 0 {
            return;
        }
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, (_, since)| since.elapsed() < Duration::from_secs(60));
        }
        let entry = f.entry(user.to_owned()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= Duration::from_secs(60) {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_bucket_allows_a_burst_then_refuses() {
        let l = SendLimiter::new(5);
        let allowed = (0..100).filter(|_| l.allow("alice")).count();
        assert!((20..=21).contains(&allowed), "burst of 4x rate, got {allowed}");
        assert!(l.allow("bob"), "buckets are per user");
        assert!(SendLimiter::new(0).allow("x"));
    }

    #[test]
    fn login_window() {
        let l = LoginLimiter::new(2);
        assert!(l.allow("a"));
        l.failed("a");
        l.failed("a");
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
    }
}

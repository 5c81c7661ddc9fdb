//! Per-user rate limits, kept in this node's memory: message sends (token bucket) and failed
//! logins per user id and source (fixed one-minute window, bounded). They protect the node, so they are not replicated.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
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

/// How long a failed-login window lasts.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Most (user id, source IP) pairs remembered; past it the oldest window is forgotten first.
/// A pair's key is at most 32 bytes of user id and an address, so this bounds the memory at a
/// few MiB whatever the traffic.
pub const LOGIN_LIMITER_CAPACITY: usize = 50_000;

/// The failed-login key: a user id (already validated: `^[a-z0-9_]{3,32}$`) from one source.
/// Keyed by the source too, so someone guessing passwords locks out only themselves, not the
/// account's owner everywhere.
type LoginKey = (String, Option<IpAddr>);

/// Failed logins per (user id, source IP) per minute (a fixed window from the first failure).
pub struct LoginLimiter {
    per_minute: u32,
    capacity: usize,
    state: Mutex<LoginState>,
}

#[derive(Default)]
struct LoginState {
    failures: HashMap<LoginKey, (u32, Instant)>,
    /// Window starts in time order, to expire and evict oldest first in O(1) each. Every key
    /// in `failures` has exactly one entry here, with the same start.
    order: VecDeque<(Instant, LoginKey)>,
}

impl LoginState {
    /// Forgets every window that has ended. The queue is in time order, so this stops at the
    /// first live one.
    fn sweep(&mut self, now: Instant) {
        while let Some((since, _)) = self.order.front() {
            if now.duration_since(*since) < LOGIN_WINDOW {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.failures.remove(&key);
            }
        }
    }
}

impl LoginLimiter {
    /// `per_minute` 0 turns the limit off.
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, LOGIN_LIMITER_CAPACITY)
    }

    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        LoginLimiter { per_minute, capacity: capacity.max(1), state: Mutex::default() }
    }

    /// False when `user` from `ip` has used up this minute's failed attempts.
    pub fn allow(&self, user: &str, ip: Option<IpAddr>) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sweep(Instant::now());
        st.failures.get(&(user.to_owned(), ip)).is_none_or(|(n, _)| *n < self.per_minute)
    }

    /// Counts a failed attempt.
    pub fn failed(&self, user: &str, ip: Option<IpAddr>) {
        if self.per_minute == 0 {
            return;
        }
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.sweep(now);
        let key = (user.to_owned(), ip);
        if let Some((n, _)) = st.failures.get_mut(&key) {
            *n += 1;
            return;
        }
        while st.failures.len() >= self.capacity {
            let Some((_, oldest)) = st.order.pop_front() else { break };
            st.failures.remove(&oldest);
        }
        st.order.push_back((now, key.clone()));
        st.failures.insert(key, (1, now));
    }

    /// Pairs currently remembered.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).failures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    const ME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const THEM: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[test]
    fn login_window_is_per_user_and_source() {
        let l = LoginLimiter::new(2);
        assert!(l.allow("alice", THEM));
        l.failed("alice", THEM);
        l.failed("alice", THEM);
        assert!(!l.allow("alice", THEM), "the guesser is locked out");
        assert!(l.allow("alice", ME), "the owner, from elsewhere, is not");
        assert!(l.allow("bob", THEM));
    }

    #[test]
    fn login_limiter_stays_within_its_capacity() {
        let l = LoginLimiter::with_capacity(5, 1_000);
        for i in 0..100_000 {
            l.failed(&format!("user_{i}"), THEM);
        }
        assert_eq!(l.len(), 1_000, "bounded, whatever the number of distinct keys");
        // The newest windows survive; the oldest were evicted first.
        for _ in 0..5 {
            l.failed("user_99999", THEM);
        }
        assert!(!l.allow("user_99999", THEM));
        assert!(l.allow("user_0", THEM));
    }
}

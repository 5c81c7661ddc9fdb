//! Per-source-IP rate limits on the endpoints a stranger can hit without an account: logins,
//! registrations and admin-token attempts. Each is a keyed token bucket (`governor`'s GCRA:
//! a per-minute rate with bursts of the same size), in this node's memory, not replicated.
//!
//! The source is the TCP peer address: proxy headers are not trusted (any client could set
//! them). Buckets that have refilled are dropped by a sweep at most every
//! [`SWEEP_EVERY`], so memory follows the sources active in the last minute or so.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use warp::http::Method;
use warp::path::FullPath;
use warp::Filter;

use crate::error::ApiError;
use crate::state::AppState;

/// How often idle buckets are forgotten.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Requests per minute per source IP, bursts of the same size; 0 = off.
pub struct IpLimiter {
    what: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    last_sweep: Mutex<Instant>,
}

impl IpLimiter {
    pub fn per_minute(what: &'static str, n: u32) -> Self {
        IpLimiter {
            what,
            limiter: NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Takes one request from `ip`'s bucket; `rate_limited` with `Retry-After` when empty.
    /// Requests without a known source (none over TCP) are not limited.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.limiter, ip) else { return Ok(()) };
        self.sweep(limiter);
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::rate_limited(format!("too many {} from this address; slow down", self.what))
                .retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }

    fn sweep(&self, limiter: &DefaultKeyedRateLimiter<IpAddr>) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Sources with a bucket that has not refilled yet (an upper bound between sweeps).
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The three limiters of a node.
pub struct IpLimits {
    pub logins: IpLimiter,
    pub registrations: IpLimiter,
    pub admin: IpLimiter,
}

impl IpLimits {
    pub fn new(logins_per_minute: u32, registrations_per_minute: u32, admin_per_minute: u32) -> Self {
        IpLimits {
            logins: IpLimiter::per_minute("logins", logins_per_minute),
            registrations: IpLimiter::per_minute("registrations", registrations_per_minute),
            admin: IpLimiter::per_minute("admin requests", admin_per_minute),
        }
    }

    /// The limiter that covers a request, if any.
    fn for_request(&self, method: &Method, path: &str) -> Option<&IpLimiter> {
        match (method, path) {
            (&Method::POST, "/v1/sessions") => Some(&self.logins),
            (&Method::POST, "/v1/users") => Some(&self.registrations),
            (_, p) if p.starts_with("/v1/admin/") => Some(&self.admin),
            _ => None,
        }
    }
}

/// A filter in front of every route: passes, or rejects with `rate_limited` (answered by
/// the routes' recover as the contract's JSON error) before the request's body is read.
pub fn gate(s: &Arc<AppState>) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    let s = s.clone();
    warp::method()
        .and(warp::path::full())
        .and(crate::listener::remote())
        .and_then(move |method: Method, path: FullPath, from: Option<std::net::SocketAddr>| {
            let s = s.clone();
            async move {
                match s.ip_limits.for_request(&method, path.as_str()) {
                    Some(limiter) => limiter.check(from.map(|a| a.ip())).map_err(|e| {
                        s.metrics.rate_limited.inc();
                        warp::reject::custom(e)
                    }),
                    None => Ok(()),
                }
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n)))
    }

    #[test]
    fn a_source_gets_its_burst_then_429_with_retry_after() {
        let l = IpLimiter::per_minute("logins", 3);
        for _ in 0..3 {
            assert!(l.check(ip(1)).is_ok());
        }
        let e = l.check(ip(1)).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (429, "rate_limited"));
        assert!(matches!(e.retry_after, Some(1..=20)), "one token per 20 s: {:?}", e.retry_after);
        assert!(l.check(ip(2)).is_ok(), "buckets are per source");
        assert!(l.check(None).is_ok(), "an unknown source is not limited");
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let l = IpLimiter::per_minute("logins", 0);
        assert!((0..1000).all(|_| l.check(ip(1)).is_ok()));
        assert!(l.is_empty());
    }

    #[test]
    fn requests_map_to_their_limiter() {
        let l = IpLimits::new(1, 2, 3);
        let name = |m: Method, p: &str| l.for_request(&m, p).map(|x| x.what);
        assert_eq!(name(Method::POST, "/v1/sessions"), Some("logins"));
        assert_eq!(name(Method::POST, "/v1/users"), Some("registrations"));
        assert_eq!(name(Method::GET, "/v1/admin/journal"), Some("admin requests"));
        assert_eq!(name(Method::GET, "/v1/sessions"), None);
        assert_eq!(name(Method::GET, "/v1/users/alice"), None);
    }
}

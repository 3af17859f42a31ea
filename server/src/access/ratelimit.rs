//! Per-principal rate limits: a token bucket per authenticated principal
//! (anonymous callers share one), refilled at the configured rate up to the
//! configured burst. A request over the limit is answered
//! `RESOURCE_EXHAUSTED` before any work is done.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One limit.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// Limits as configured: a default and per-principal overrides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// For principals without their own limit; none: unlimited.
    pub default: Option<Limit>,
    /// Per principal (token subject, SPIFFE ID, DNS name, `anonymous`).
    pub principals: HashMap<String, Limit>,
}

/// Buckets kept before full ones are forgotten.
const MAX_BUCKETS: usize = 65_536;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The limiter.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter for these limits.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `principal` at `now`; on refusal,
    /// how long until a token is available.
    pub fn check(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self
            .limits
            .principals
            .get(principal)
            .or(self.limits.default.as_ref())
        else {
            return Ok(());
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let burst = f64::from(limit.burst.max(1));
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(principal) {
            // Many distinct callers (peer addresses, say): forget those
            // whose bucket has refilled, which is what a new bucket holds.
            let per_second = limit.per_second;
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_second < burst
            });
        }
        let b = buckets.entry(principal.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limit.per_second).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else if limit.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / limit.per_second))
        } else {
            Err(Duration::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_per_principal() {
        let l = RateLimiter::new(RateLimits {
            default: Some(Limit {
                per_second: 10.0,
                burst: 3,
            }),
            principals: HashMap::from([(
                "big".to_owned(),
                Limit {
                    per_second: 1000.0,
                    burst: 100,
                },
            )]),
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check("a", t0).is_ok());
        }
        let wait = l.check("a", t0).expect_err("limited");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another principal has its own bucket.
        assert!(l.check("b", t0).is_ok());
        for _ in 0..100 {
            assert!(l.check("big", t0).is_ok());
        }
        // 100 ms later one more token for "a".
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.check("a", t1).is_ok());
        assert!(l.check("a", t1).is_err());
        // No limit configured: never limited.
        let none = RateLimiter::new(RateLimits::default());
        for _ in 0..1000 {
            assert!(none.check("x", t0).is_ok());
        }
    }
}

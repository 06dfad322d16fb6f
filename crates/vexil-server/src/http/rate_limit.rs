//! Per-key rate limits (SPEC 4: 429 with `Retry-After`): each API key may make
//! `rate_limit_per_key` requests a second, with bursts of `rate_limit_burst`, counted by a
//! GCRA limiter (the `governor` crate) keyed by the key's id, so one key's flood — a client
//! key copied out of a web page, say — is refused before it reaches the handlers while other
//! keys go on. Off by default: one limit for every key of every installation would throttle
//! the busiest legitimate backend first.

use crate::http::auth::Caller;
use crate::http::error::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The limiter of every key, or nothing when limits are off.
pub struct RateLimits(Option<DefaultKeyedRateLimiter<Arc<str>>>);

impl RateLimits {
    /// `per_second` requests a second per key (0: no limit), in bursts of up to `burst`
    /// (0: one second's worth).
    pub fn new(per_second: u32, burst: u32) -> RateLimits {
        let Some(rate) = NonZeroU32::new(per_second) else { return RateLimits(None) };
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        RateLimits(Some(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))))
    }

    /// The 429 answer for `caller`, if it is over its limit.
    pub fn refuse(&self, caller: &Caller) -> Option<Response> {
        let limiter = self.0.as_ref()?;
        let not_until = limiter.check_key(&caller.key_id).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // Whole seconds, rounded up: a client that waits what it is told is let through.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this key is over its rate limit; retry in {seconds} s"),
        )
        .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        Some(response)
    }
}

//! Rate limits with governor's GCRA: the login, refresh and password routes per
//! client address (`RATE_LIMIT_AUTH` per 15 minutes), everything else per tenant
//! (`RATE_LIMIT_TENANT` per minute; unauthenticated calls per address). Every
//! response carries `RateLimit-Limit`, `-Remaining` and `-Reset`; a refusal is a
//! 429 problem with `Retry-After`.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use super::{AppState, Problem};
use crate::auth::Authentication;

/// Routes where guessing passwords or tokens would be attractive.
pub const AUTH_PATHS: [&str; 3] = [
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/change-password",
];

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

struct Limiter<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    limit: u32,
    /// Time to earn back one request.
    per_request: Duration,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(limit: u32, window: Duration) -> Self {
        let burst = NonZeroU32::new(limit.max(1)).expect("at least 1");
        let per_request = window / burst.get();
        let quota = Quota::with_period(per_request)
            .expect("a positive period")
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::dashmap_with_clock(quota, DefaultClock::default())
                .with_middleware::<StateInformationMiddleware>(),
            limit: burst.get(),
            per_request,
        }
    }

    fn check(&self, key: &K) -> Decision {
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    limit: self.limit,
                    remaining,
                    reset: self.per_request * (self.limit - remaining),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    limit: self.limit,
                    remaining: 0,
                    reset: wait.max(self.per_request),
                    retry_after: Some(wait),
                }
            }
        }
    }
}

struct Decision {
    limit: u32,
    remaining: u32,
    reset: Duration,
    retry_after: Option<Duration>,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    fn write(&self, headers: &mut HeaderMap) {
        let number = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits");
        headers.insert("ratelimit-limit", number(self.limit.into()));
        headers.insert("ratelimit-remaining", number(self.remaining.into()));
        headers.insert("ratelimit-reset", number(ceil_secs(self.reset)));
        if let Some(wait) = self.retry_after {
            headers.insert("retry-after", number(ceil_secs(wait).max(1)));
        }
    }
}

pub struct RateLimits {
    auth: Limiter<IpAddr>,
    tenant: Limiter<Uuid>,
    anonymous: Limiter<IpAddr>,
}

impl RateLimits {
    pub fn new(auth_per_15_min: u32, tenant_per_min: u32) -> Arc<Self> {
        let limits = Arc::new(Self {
            auth: Limiter::new(auth_per_15_min, Duration::from_secs(15 * 60)),
            tenant: Limiter::new(tenant_per_min, Duration::from_secs(60)),
            anonymous: Limiter::new(tenant_per_min, Duration::from_secs(60)),
        });
        // Forget keys whose budget has fully refilled, so the maps stay small.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                limits.auth.limiter.retain_recent();
                limits.tenant.limiter.retain_recent();
                limits.anonymous.limiter.retain_recent();
            }
        });
        limits
    }
}

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let limits = &state.rate_limits;
    let decision = if AUTH_PATHS.contains(&request.uri().path()) {
        limits.auth.check(&ip)
    } else {
        match request.extensions().get::<Authentication>() {
            Some(Authentication(Ok(Some(principal)))) => limits.tenant.check(&principal.tenant_id),
            _ => limits.anonymous.check(&ip),
        }
    };
    let mut response = if decision.retry_after.is_some() {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too Many Requests",
        )
        .detail("the rate limit for this route is used up; retry after the time in Retry-After")
        .into_response()
    } else {
        next.run(request).await
    };
    decision.write(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_counts_down_then_refuses_with_a_wait() {
        let limiter = Limiter::<u8>::new(3, Duration::from_secs(15 * 60));
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check(&1).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check(&1);
        let wait = refused.retry_after.expect("the fourth is refused");
        assert!(wait > Duration::from_secs(250) && wait <= Duration::from_secs(300));
        // Another key has its own budget.
        assert!(limiter.check(&2).retry_after.is_none());
    }
}

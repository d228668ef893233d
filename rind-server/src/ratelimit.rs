//! Per-client query rate limit (`--rate-limit`, off by default), in the manner of BIND's and
//! Knot's response rate limiting.
//!
//! Each client (an IPv4 address, or an IPv6 /64, which is what one host usually gets) has a
//! token bucket refilled at the limit per second and holding one second's worth. A query
//! beyond it over TCP is REFUSED; over UDP every second one is answered with TC=1 and no
//! records ("slip"), so a real client whose address is being spoofed or shared retries over
//! TCP and still gets through, and the others are dropped, so a forged flood is not reflected.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::request::Transport;

/// Buckets are split over this many locks so two cores rarely wait on each other.
const SHARDS: usize = 16;
/// Clients tracked per shard before idle ones are forgotten; bounds memory under a flood of
/// spoofed sources.
const CLIENTS_PER_SHARD: usize = 4_096;

/// What to do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: answer it.
    Allow,
    /// Over the limit (UDP): send nothing.
    Drop,
    /// Over the limit (UDP, one in two): answer TC=1 so the client retries over TCP.
    Truncate,
    /// Over the limit (TCP): answer REFUSED.
    Refuse,
}

/// The per-client buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
    slip: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// Seconds since the limiter's epoch at the last refill.
    at: f64,
}

impl RateLimiter {
    /// A limiter allowing `per_second` queries per client; `None` when the limit is off (0).
    pub fn new(per_second: u32) -> Option<RateLimiter> {
        (per_second > 0).then(|| RateLimiter {
            per_second: f64::from(per_second),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            slip: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Takes a token for one query from `client`.
    pub fn check(&self, client: IpAddr, transport: Transport) -> Verdict {
        self.check_at(client, transport, self.epoch.elapsed().as_secs_f64())
    }

    fn check_at(&self, client: IpAddr, transport: Transport, now: f64) -> Verdict {
        let client = source(client);
        let Some(shard) = self
            .shards
            .get(self.hasher.hash_one(client) as usize % SHARDS)
        else {
            return Verdict::Allow;
        };
        // A poisoned shard only means a panic elsewhere mid-update; the map is still usable.
        let mut buckets = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= CLIENTS_PER_SHARD && !buckets.contains_key(&client) {
            // A bucket idle for a second is full again: forgetting it changes nothing.
            buckets.retain(|_, b| now - b.at < 1.0);
            if buckets.len() >= CLIENTS_PER_SHARD {
                // Thousands of sources within a second: a flood of forged addresses. Starting
                // over keeps memory bounded; each source still gets at most one burst.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        bucket.tokens = (bucket.tokens + (now - bucket.at) * self.per_second).min(self.per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Allow;
        }
        drop(buckets);
        match transport {
            Transport::Tcp | Transport::Tls | Transport::Https => Verdict::Refuse,
            Transport::Udp if self.slip.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) => {
                Verdict::Truncate
            }
            Transport::Udp => Verdict::Drop,
        }
    }
}

/// The unit a limit applies to: the IPv4 address, or the IPv6 /64.
fn source(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn off_when_zero() {
        assert!(RateLimiter::new(0).is_none());
    }

    #[test]
    fn a_burst_over_the_limit_is_cut_and_refills() {
        let limiter = RateLimiter::new(10).expect("on");
        let client = ip("192.0.2.1");
        let verdicts: Vec<Verdict> = (0..14)
            .map(|_| limiter.check_at(client, Transport::Udp, 0.0))
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Allow));
        assert_eq!(
            &verdicts[10..],
            [
                Verdict::Truncate,
                Verdict::Drop,
                Verdict::Truncate,
                Verdict::Drop
            ]
        );
        assert_eq!(
            limiter.check_at(client, Transport::Tcp, 0.0),
            Verdict::Refuse
        );
        // Half a second later, five tokens are back.
        let later: Vec<Verdict> = (0..6)
            .map(|_| limiter.check_at(client, Transport::Udp, 0.5))
            .collect();
        assert_eq!(later.iter().filter(|v| **v == Verdict::Allow).count(), 5);
        // Another client is not affected.
        assert_eq!(
            limiter.check_at(ip("192.0.2.2"), Transport::Udp, 0.0),
            Verdict::Allow
        );
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = RateLimiter::new(1).expect("on");
        assert_eq!(
            limiter.check_at(ip("2001:db8::1"), Transport::Tcp, 0.0),
            Verdict::Allow
        );
        assert_eq!(
            limiter.check_at(ip("2001:db8::2"), Transport::Tcp, 0.0),
            Verdict::Refuse
        );
        assert_eq!(
            limiter.check_at(ip("2001:db8:0:1::1"), Transport::Tcp, 0.0),
            Verdict::Allow
        );
    }

    #[test]
    fn memory_is_bounded_under_spoofed_sources() {
        let limiter = RateLimiter::new(5).expect("on");
        for i in 0..(SHARDS * CLIENTS_PER_SHARD * 2) as u32 {
            limiter.check_at(IpAddr::V4(i.into()), Transport::Udp, f64::from(i) * 1e-4);
        }
        let tracked: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(tracked <= SHARDS * CLIENTS_PER_SHARD, "{tracked}");
    }
}

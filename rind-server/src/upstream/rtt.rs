//! How long to wait for a UDP reply before sending the query again: a retransmission timeout
//! per upstream from its smoothed round-trip time, as TCP does it (RFC 6298 §2) and Unbound
//! does it for DNS.
//!
//! A lost datagram (a full socket buffer under load, a flaky link) would otherwise cost the
//! whole 2 s try, longer than most clients wait. Samples are UDP exchanges only, from the
//! first send to the reply, even when the reply answers a resend: that can only overstate the
//! round trip, so the timeout errs towards fewer resends. A try that got no reply at all
//! doubles the estimate (RFC 6298 §5.5), so an upstream that has gone quiet gets fewer
//! copies, not five per try.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Timeout before the first sample (RFC 6298 §2.1).
const INITIAL: Duration = Duration::from_secs(1);
/// Floor: an upstream resolver's answer time varies with its own cache, and resending what it
/// is still resolving only adds load.
const MIN: Duration = Duration::from_millis(100);
/// Ceiling of the backed-off round trip (microseconds): past a few seconds a resend timeout
/// is longer than any try anyway.
const MAX_SRTT_US: u32 = 4_000_000;

/// Smoothed round-trip time and its variation, in microseconds (0: no sample yet).
///
/// Updated without a lock: two samples landing at once may lose one, which only delays the
/// estimate by a sample.
#[derive(Debug, Default)]
pub struct Rtt {
    srtt_us: AtomicU32,
    rttvar_us: AtomicU32,
}

impl Rtt {
    /// Folds in one measured round trip (RFC 6298 §2.2–2.3, alpha 1/8, beta 1/4).
    pub fn sample(&self, took: Duration) {
        let r = u32::try_from(took.as_micros()).unwrap_or(u32::MAX).max(1);
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        let (srtt, rttvar) = if srtt == 0 {
            (r, r / 2)
        } else {
            let rttvar = self.rttvar_us.load(Ordering::Relaxed);
            let rttvar = (u64::from(rttvar) * 3 + u64::from(srtt.abs_diff(r))) / 4;
            let srtt = (u64::from(srtt) * 7 + u64::from(r)) / 8;
            (clamp_u32(srtt), clamp_u32(rttvar))
        };
        self.srtt_us.store(srtt.max(1), Ordering::Relaxed);
        self.rttvar_us.store(rttvar, Ordering::Relaxed);
    }

    /// Backs off after a try that got no reply: the round trip counts as twice the timeout
    /// that just ran out, so the next timeout is at least double (RFC 6298 §5.5), until
    /// samples bring it down again.
    pub fn back_off(&self) {
        let ceiling = Duration::from_micros(u64::from(MAX_SRTT_US));
        let rto = u64::try_from(self.timeout(ceiling).as_micros()).unwrap_or(u64::MAX);
        let doubled = clamp_u32(rto.saturating_mul(2)).min(MAX_SRTT_US);
        self.srtt_us.store(doubled, Ordering::Relaxed);
    }

    /// How long to wait for a reply before the first resend: SRTT + 4 × RTTVAR, between
    /// [`MIN`] and `cap` (the try's own limit; [`MIN`] wins should `cap` be lower).
    pub fn timeout(&self, cap: Duration) -> Duration {
        let srtt = self.srtt_us.load(Ordering::Relaxed);
        if srtt == 0 {
            return INITIAL.min(cap);
        }
        let rttvar = self.rttvar_us.load(Ordering::Relaxed);
        let rto = Duration::from_micros(u64::from(srtt) + 4 * u64::from(rttvar));
        rto.clamp(MIN, cap.max(MIN))
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(2);

    #[test]
    fn starts_at_one_second_and_follows_the_samples() {
        let rtt = Rtt::default();
        assert_eq!(rtt.timeout(CAP), Duration::from_secs(1));
        rtt.sample(Duration::from_millis(300));
        // First sample: SRTT 300 ms, RTTVAR 150 ms -> 900 ms.
        assert_eq!(rtt.timeout(CAP), Duration::from_millis(900));
        for _ in 0..50 {
            rtt.sample(Duration::from_millis(300));
        }
        let settled = rtt.timeout(CAP);
        assert!(
            settled >= Duration::from_millis(300) && settled < Duration::from_millis(320),
            "{settled:?}"
        );
    }

    #[test]
    fn never_below_the_floor_nor_above_the_cap() {
        let fast = Rtt::default();
        for _ in 0..50 {
            fast.sample(Duration::from_micros(80));
        }
        assert_eq!(fast.timeout(CAP), MIN);
        let slow = Rtt::default();
        slow.sample(Duration::from_secs(30));
        assert_eq!(slow.timeout(CAP), CAP);
        assert_eq!(
            Rtt::default().timeout(Duration::from_millis(400)),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn a_try_without_reply_backs_off_until_samples_come_back() {
        let rtt = Rtt::default();
        rtt.back_off();
        assert_eq!(rtt.timeout(CAP), CAP, "no sample: 1 s doubled");
        let fast = Rtt::default();
        for _ in 0..20 {
            fast.sample(Duration::from_millis(1));
        }
        assert_eq!(fast.timeout(CAP), MIN);
        // 100 ms doubled five times (3.2 s) passes the 2 s cap; four times does not.
        for _ in 0..4 {
            fast.back_off();
        }
        assert!(fast.timeout(CAP) >= Duration::from_millis(1_600));
        assert!(fast.timeout(CAP) < CAP);
        fast.back_off();
        assert_eq!(
            fast.timeout(CAP),
            CAP,
            "a quiet upstream gets one copy per try"
        );
        for _ in 0..100 {
            fast.sample(Duration::from_millis(1));
        }
        assert_eq!(
            fast.timeout(CAP),
            MIN,
            "answers bring the timeout back down"
        );
    }

    #[test]
    fn a_slow_spell_raises_the_timeout_quickly() {
        let rtt = Rtt::default();
        for _ in 0..20 {
            rtt.sample(Duration::from_millis(2));
        }
        assert_eq!(rtt.timeout(CAP), MIN);
        for _ in 0..3 {
            rtt.sample(Duration::from_millis(600));
        }
        assert!(
            rtt.timeout(CAP) > Duration::from_millis(600),
            "{:?}",
            rtt.timeout(CAP)
        );
    }
}

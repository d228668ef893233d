//! Wall-clock helpers for tests whose outcome depends on whole-second TTL arithmetic.
//!
//! The server counts TTLs in whole Unix seconds (an entry stored at second S with TTL T is
//! fresh while `now < S + T`), so tests that must hit an entry just before it expires start
//! their clock at the beginning of a second and sleep until a fixed point after it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest sleep any of these helpers will do; a bug in a test must not hang it.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Unix time now, in seconds with a fraction.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Sleeps until Unix time `t` (no-op when it has passed); panics if that is over 30 s away.
pub async fn sleep_until_unix(t: f64) {
    let left = t - unix_now();
    if left <= 0.0 {
        return;
    }
    let left = Duration::from_secs_f64(left);
    assert!(left <= MAX_SLEEP, "test asked to sleep {left:?}");
    tokio::time::sleep(left).await;
}

/// Sleeps until just after the next whole second starts and returns that second, so that
/// what the test does in the next few hundred milliseconds happens within it.
pub async fn next_second_start() -> u64 {
    let now = unix_now();
    let next = now.floor() + 1.0;
    sleep_until_unix(next + 0.02).await;
    next as u64
}

/// Panics unless the clock is still within second `s` (the machine was too slow for a
/// timing-sensitive step).
pub fn assert_still_in_second(s: u64, what: &str) {
    let now = unix_now();
    assert!(
        now.floor() as u64 == s,
        "{what}: expected to still be in second {s}, it is {now:.3}; machine too slow?"
    );
}

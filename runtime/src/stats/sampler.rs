//! CPU usage rate (CRI `usage_nano_cores`): the cgroups hold only a cumulative counter, so
//! the rate is the difference between two reads over the time between them, as containerd
//! and CRI-O compute it.
//!
//! - The first read of an id has no rate (`None`): kubelet then computes one from its own
//!   cache of cumulative values, which is better than a made-up 0 or an average since the
//!   container started (meaningless after a corrald restart).
//! - Reads closer together than [`MIN_WINDOW`] (two clients asking at once, or ListPodSandbox
//!   Stats right after ListContainerStats) reuse the last rate and keep the older sample, so
//!   that a window of a few microseconds never turns scheduler jitter into a 10-core spike.
//! - A counter that went backwards (a cgroup made anew under the same id) starts over.
//!
//! Time between reads is measured on the monotonic clock, never on the wall clock that the
//! CRI timestamps use, so a clock step can't make a rate negative or huge.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reads closer together than this reuse the previous rate.
pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    usage_ns: u64,
    rate: Option<u64>,
}

/// The last cumulative CPU read of each container (or pod), by id.
#[derive(Default)]
pub(crate) struct Sampler {
    last: Mutex<HashMap<String, Sample>>,
}

impl Sampler {
    /// Record that `id` had used `usage_ns` of CPU at `at`; its rate in nanocores (CPU
    /// nanoseconds per second) since the previous read, if there was one.
    pub(crate) fn rate(&self, id: &str, at: Instant, usage_ns: u64) -> Option<u64> {
        let mut last = self.lock();
        let fresh = Sample {
            at,
            usage_ns,
            rate: None,
        };
        let Some(prev) = last.get_mut(id) else {
            last.insert(id.to_string(), fresh);
            return None;
        };
        if usage_ns < prev.usage_ns || at < prev.at {
            *prev = fresh;
            return None;
        }
        let window = at.duration_since(prev.at);
        if window < MIN_WINDOW {
            return prev.rate;
        }
        let rate = nanocores(usage_ns - prev.usage_ns, window);
        *prev = Sample {
            rate: Some(rate),
            ..fresh
        };
        Some(rate)
    }

    /// Forget every id not in `live` (removed containers and pods).
    pub(crate) fn retain(&self, live: &HashSet<&str>) {
        self.lock().retain(|id, _| live.contains(id.as_str()));
    }

    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sample>> {
        // Only samples are behind it; after a panic elsewhere they are still valid.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `used` CPU nanoseconds over `window` as nanocores, without overflow (u128 arithmetic).
fn nanocores(used: u64, window: Duration) -> u64 {
    let ns = window.as_nanos().max(1);
    u64::try_from(u128::from(used) * 1_000_000_000 / ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_has_no_rate_then_delta_over_time() {
        let s = Sampler::default();
        let t0 = Instant::now();
        assert_eq!(s.rate("c", t0, 1_000), None);
        // 0.5 s of CPU in 1 s: half a core.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.rate("c", t1, 500_001_000), Some(500_000_000));
        // Two cores busy for 200 ms.
        let t2 = t1 + Duration::from_millis(200);
        assert_eq!(s.rate("c", t2, 900_001_000), Some(2_000_000_000));
        // Idle.
        let t3 = t2 + Duration::from_secs(10);
        assert_eq!(s.rate("c", t3, 900_001_000), Some(0));
    }

    #[test]
    fn close_reads_reuse_the_last_rate_and_keep_the_window() {
        let s = Sampler::default();
        let t0 = Instant::now();
        s.rate("c", t0, 0);
        // Too soon after the first read: still no rate, and the first sample stays.
        assert_eq!(s.rate("c", t0 + Duration::from_millis(1), 10_000_000), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.rate("c", t1, 250_000_000), Some(250_000_000));
        // A read 1 ms later answers the same rate, whatever the counter did meanwhile.
        assert_eq!(
            s.rate("c", t1 + Duration::from_millis(1), 260_000_000),
            Some(250_000_000)
        );
        // The window then runs from t1, not from the close read.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(s.rate("c", t2, 750_000_000), Some(500_000_000));
    }

    #[test]
    fn a_counter_that_goes_back_starts_over() {
        let s = Sampler::default();
        let t0 = Instant::now();
        s.rate("c", t0, 5_000_000_000);
        assert_eq!(s.rate("c", t0 + Duration::from_secs(1), 100), None);
        assert_eq!(
            s.rate("c", t0 + Duration::from_secs(2), 100_000_100),
            Some(100_000_000)
        );
    }

    #[test]
    fn ids_are_separate_and_removed_ones_are_dropped() {
        let s = Sampler::default();
        let t0 = Instant::now();
        s.rate("a", t0, 0);
        s.rate("b", t0, 0);
        s.rate("gone", t0, 0);
        assert_eq!(
            s.rate("a", t0 + Duration::from_secs(1), 1_000_000_000),
            Some(1_000_000_000)
        );
        assert_eq!(s.rate("b", t0 + Duration::from_secs(1), 0), Some(0));
        s.retain(&["a", "b"].into_iter().collect());
        assert_eq!(s.len(), 2);
        s.forget("b");
        assert_eq!(s.len(), 1);
        // A forgotten id starts from scratch.
        assert_eq!(s.rate("gone", t0 + Duration::from_secs(2), 7), None);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert_eq!(nanocores(u64::MAX, Duration::from_nanos(1)), u64::MAX);
        assert_eq!(nanocores(0, Duration::ZERO), 0);
    }
}

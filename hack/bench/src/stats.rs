//! Latency samples and their summary: min, median, p90, p99, max.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runtime: String,
    pub call: String,
    pub subject: String,
    pub runs: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank quantile of sorted samples (`q` in 0..=1); `None` when there are none.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i).copied()
}

/// Median of unsorted values (the upper one of the middle two for an even count, as
/// [`quantile`]); 0 when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    quantile(&v, 0.5).unwrap_or(0.0)
}

pub fn summarize(runtime: &str, call: &str, subject: &str, mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let pick = |q: f64| quantile(&samples, q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Summary {
        runtime: runtime.to_string(),
        call: call.to_string(),
        subject: subject.to_string(),
        runs: samples.len(),
        min_ms: pick(0.0),
        median_ms: pick(0.5),
        p90_ms: pick(0.9),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
    }
}

/// Samples per call, in the order the calls were first recorded.
#[derive(Default)]
pub struct Recorder {
    order: Vec<(String, String)>,
    samples: BTreeMap<(String, String), Vec<Duration>>,
}

impl Recorder {
    pub fn add(&mut self, call: &str, subject: &str, d: Duration) {
        let key = (call.to_string(), subject.to_string());
        if !self.samples.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.samples.entry(key).or_default().push(d);
    }

    pub fn summaries(mut self, runtime: &str) -> Vec<Summary> {
        self.order
            .iter()
            .map(|key| {
                let samples = self.samples.remove(key).unwrap_or_default();
                summarize(runtime, &key.0, &key.1, samples)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<Duration> = (1..=10).rev().map(Duration::from_millis).collect();
        let r = summarize("x", "c", "s", s);
        assert_eq!(r.runs, 10);
        assert_eq!(r.min_ms, 1.0);
        assert_eq!(r.max_ms, 10.0);
        assert_eq!(r.median_ms, 6.0);
        assert_eq!(r.p90_ms, 9.0);
        assert_eq!(r.p99_ms, 10.0);
    }

    #[test]
    fn empty_summary_is_zero() {
        let r = summarize("x", "c", "s", Vec::new());
        assert_eq!((r.runs, r.min_ms, r.max_ms), (0, 0.0, 0.0));
    }

    #[test]
    fn median_of_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn recorder_keeps_first_seen_order() {
        let mut r = Recorder::default();
        r.add("b", "s", Duration::from_millis(2));
        r.add("a", "s", Duration::from_millis(1));
        r.add("b", "s", Duration::from_millis(4));
        let s = r.summaries("x");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].call.as_str(), s[0].runs), ("b", 2));
        assert_eq!((s[1].call.as_str(), s[1].runs), ("a", 1));
    }
}

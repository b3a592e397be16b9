//! A lock-free cumulative latency histogram in the Prometheus style, shared by the webhook
//! attempts and the relay's sends.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Counts durations into fixed buckets (upper bounds in seconds, ascending) and +Inf.
pub struct Histogram {
    bounds: &'static [f64; 9],
    /// Cumulative count per bound, then +Inf (the total).
    buckets: [AtomicU64; 10],
    sum_us: AtomicU64,
}

/// A reading of a [`Histogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// (upper bound in seconds, cumulative count).
    pub buckets: [(f64, u64); 9],
    pub count: u64,
    pub sum_secs: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64; 9]) -> Self {
        Self {
            bounds,
            buckets: Default::default(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn record(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (b, bound) in self.bounds.iter().enumerate() {
            if secs <= *bound {
                self.buckets[b].fetch_add(1, Relaxed);
            }
        }
        self.buckets[9].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: std::array::from_fn(|b| (self.bounds[b], self.buckets[b].load(Relaxed))),
            count: self.buckets[9].load(Relaxed),
            sum_secs: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        static BOUNDS: [f64; 9] = [0.01, 0.1, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let h = Histogram::new(&BOUNDS);
        h.record(Duration::from_millis(5));
        h.record(Duration::from_millis(50));
        h.record(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], (0.01, 1));
        assert_eq!(s.buckets[1], (0.1, 2));
        assert_eq!(s.buckets[8], (7.0, 2));
        assert_eq!(s.count, 3);
        assert!((s.sum_secs - 10.055).abs() < 1e-9);
    }
}

//! Latency distributions: one implementation for the service's counters and the benchmarks.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Longest latency recorded exactly; longer ones are clamped to it (a deliberation is bounded
/// by its 6-hour maximum deadline anyway).
const HIGHEST: Duration = Duration::from_secs(6 * 3600);

/// A latency histogram in microseconds with 3 significant digits: constant memory, any
/// percentile in constant time, no sorting of samples.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let highest = u64::try_from(HIGHEST.as_micros()).unwrap_or(u64::MAX);
        // 1 µs .. 6 h with 3 significant figures is a valid configuration, so this cannot fail.
        let histogram = Histogram::new_with_bounds(1, highest, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures are supported"));
        Self { histogram }
    }
}

impl LatencyHistogram {
    /// Records one latency (clamped to the histogram's range).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The latency at percentile `p` (0..=100), in milliseconds; 0 when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(p / 100.0) as f64 / 1000.0
    }

    /// p50, p95 and p99 in milliseconds.
    pub fn p50_p95_p99_ms(&self) -> (f64, f64, f64) {
        (self.percentile_ms(50.0), self.percentile_ms(95.0), self.percentile_ms(99.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_hundred_milliseconds() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let (p50, p95, p99) = h.p50_p95_p99_ms();
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert!(close(p50, 50.0) && close(p95, 95.0) && close(p99, 99.0), "{p50} {p95} {p99}");
        assert_eq!(h.len(), 100);
    }

    #[test]
    fn empty_is_zero_and_huge_values_are_clamped_not_lost() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile_ms(99.0), 0.0);
        h.record(Duration::from_secs(24 * 3600));
        assert_eq!(h.len(), 1);
        assert!(h.percentile_ms(50.0) >= 6.0 * 3600.0 * 1000.0 * 0.999);
    }
}

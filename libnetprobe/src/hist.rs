//! Log2 histograms with percentiles, rendered like bcc/bpftrace.
use serde::Serialize;
use std::fmt::Write as _;

/// Number of log2 slots: values up to 2^64.
pub const SLOTS: usize = 64;

/// A log2 histogram: slot `i` counts values in `[2^(i-1), 2^i)`, slot 0 counts zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log2Hist {
    slots: [u64; SLOTS],
    max: u64,
}

impl Default for Log2Hist {
    fn default() -> Self {
        Self {
            slots: [0; SLOTS],
            max: 0,
        }
    }
}

/// Percentiles of a histogram, each the upper bound of the slot holding it (at most `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// 50th percentile.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value seen (or the upper bound of the highest slot).
    pub max: u64,
}

/// One histogram bucket: values in `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Smallest value of the bucket.
    pub low: u64,
    /// Largest value of the bucket.
    pub high: u64,
    /// Samples in it.
    pub count: u64,
}

/// A histogram as reports carry it: unit, count, mean, percentiles and the non-empty buckets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistSummary {
    /// Unit of every value (`ns`).
    pub unit: &'static str,
    /// Samples.
    pub count: u64,
    /// Mean (exact where the sum of the samples is known, else 0).
    pub avg: u64,
    /// 50th percentile (upper bound of its log2 bucket).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample (upper bound of the highest bucket, or the exact maximum if known).
    pub max: u64,
    /// Non-empty buckets, lowest first.
    pub buckets: Vec<Bucket>,
    #[serde(skip)]
    hist: Log2Hist,
}

impl HistSummary {
    /// The summary of `hist` in `unit`, whose samples sum to `sum` (0: unknown).
    pub fn new(unit: &'static str, hist: &Log2Hist, sum: u64) -> Self {
        let p = hist.percentiles();
        Self {
            unit,
            count: p.count,
            avg: sum.checked_div(p.count).unwrap_or(0),
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
            p999: p.p999,
            max: p.max,
            buckets: hist.bucket_list(),
            hist: hist.clone(),
        }
    }

    /// The histogram itself (for rendering).
    pub fn hist(&self) -> &Log2Hist {
        &self.hist
    }
}

/// The slot of a value, as BPF computes it.
pub fn slot_of(v: u64) -> usize {
    (64 - v.leading_zeros()) as usize
}

/// The values slot `i` holds: `[low, high]`.
pub fn slot_bounds(i: usize) -> (u64, u64) {
    match i {
        0 => (0, 0),
        64.. => (1 << 63, u64::MAX),
        _ => (1u64 << (i - 1), (1u64 << i) - 1),
    }
}

impl Log2Hist {
    /// The non-empty buckets, lowest first.
    pub fn bucket_list(&self) -> Vec<Bucket> {
        self.buckets()
            .map(|(low, high, count)| Bucket { low, high, count })
            .collect()
    }

    /// Builds a histogram from slot counts read from a BPF map.
    pub fn from_slots(counts: &[u64]) -> Self {
        let mut h = Self::default();
        for (i, c) in counts.iter().take(SLOTS).enumerate() {
            h.slots[i] = *c;
            if *c > 0 {
                h.max = slot_bounds(i).1;
            }
        }
        h
    }

    /// Sets the largest value seen, when it is known exactly (percentiles are capped at it).
    pub fn with_max(mut self, max: u64) -> Self {
        if self.count() > 0 {
            self.max = max;
        }
        self
    }

    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        self.slots[slot_of(v).min(SLOTS - 1)] += 1;
        self.max = self.max.max(v);
    }

    /// Count of slot `i` (0 beyond the last).
    pub fn slot(&self, i: usize) -> u64 {
        self.slots.get(i).copied().unwrap_or(0)
    }

    /// Non-empty buckets as (low, high, count), lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        (0..SLOTS).filter_map(move |i| {
            let c = self.slots[i];
            (c > 0).then(|| {
                let (lo, hi) = slot_bounds(i);
                (lo, hi, c)
            })
        })
    }

    /// Total number of values.
    pub fn count(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// The value below which `p` percent of samples fall (slot upper bound, capped at max).
    pub fn percentile(&self, p: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.slots.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return slot_bounds(i).1.min(self.max);
            }
        }
        self.max
    }

    /// P50/P90/P99/P99.9/max.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count(),
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            p999: self.percentile(99.9),
            max: self.max,
        }
    }

    /// bcc-style rendering with the unit in the header and percentiles below.
    pub fn render(&self, unit: &str) -> String {
        let p = self.percentiles();
        let line = format!(
            "count {}  P50 {} {unit}  P90 {} {unit}  P99 {} {unit}  P99.9 {} {unit}  max {} {unit}",
            p.count, p.p50, p.p90, p.p99, p.p999, p.max
        );
        self.render_with(unit, &line)
    }

    /// Nanosecond histogram, bcc-style, with percentiles and the mean in readable units
    /// (`P99 1.2 ms`) below.
    pub fn render_ns(&self, avg_ns: u64) -> String {
        let p = self.percentiles();
        let line = format!(
            "count {}  avg {}  P50 {}  P90 {}  P99 {}  P99.9 {}  max {}",
            p.count,
            human_ns(avg_ns),
            human_ns(p.p50),
            human_ns(p.p90),
            human_ns(p.p99),
            human_ns(p.p999),
            human_ns(p.max)
        );
        self.render_with("nsecs", &line)
    }

    fn render_with(&self, unit: &str, footer: &str) -> String {
        let mut out = String::new();
        let used: Vec<usize> = (0..SLOTS).filter(|i| self.slots[*i] > 0).collect();
        let _ = writeln!(out, "{:>24} : {:<8} distribution", unit, "count");
        if let (Some(&lo), Some(&hi)) = (used.first(), used.last()) {
            let peak = *self.slots.iter().max().unwrap_or(&1);
            for i in lo..=hi {
                let (a, b) = slot_bounds(i);
                let bar = (self.slots[i] * 40).div_ceil(peak.max(1)) as usize;
                let _ = writeln!(
                    out,
                    "{:>10} -> {:<10} : {:<8} |{:<40}|",
                    a,
                    b,
                    self.slots[i],
                    "*".repeat(bar)
                );
            }
        }
        let _ = writeln!(out, "{footer}");
        out
    }
}

/// A nanosecond value in the largest unit that keeps it readable: `850 ns`, `12.3 us`,
/// `4.56 ms`, `1.20 s`.
pub fn human_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} us", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_distribution() {
        let mut h = Log2Hist::default();
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        let p = h.percentiles();
        assert_eq!(p.p50, 511); // 500 lies in [256, 511]
        assert_eq!(p.p90, 1000); // capped at max
        assert_eq!(p.max, 1000);
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999);
    }

    #[test]
    fn empty_and_zero() {
        let mut h = Log2Hist::default();
        assert_eq!(h.percentile(99.0), 0);
        h.record(0);
        assert_eq!(h.percentile(50.0), 0);
        assert_eq!(slot_of(0), 0);
        assert_eq!(slot_of(1), 1);
        assert_eq!(slot_of(1024), 11);
    }

    #[test]
    fn render_has_unit_and_percentiles() {
        let h = Log2Hist::from_slots(&[0, 0, 3, 5]);
        let s = h.render("usecs");
        assert!(s.contains("usecs"));
        assert!(s.contains("P99.9"));
        assert!(s.contains("4 -> 7"));
        assert_eq!(h.percentiles().count, 8);
    }
}

//! The interleaved A/B benchmark schedule of DESIGN.md ("Benchmarks"): `baseline, A,
//! baseline, B, baseline, …` with the configuration order shuffled per repetition, every
//! run divided by the mean of its two neighbouring baselines, and min/median/max over the
//! repetitions. [`Row`] collects the samples of one configuration; [`table`] prints rows.
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeMap;

/// One step of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A no-tool window.
    Baseline,
    /// A window with configuration `i`.
    Config(usize),
}

/// A small deterministic PRNG (xorshift64*), so a seed replays an order.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeded generator (a zero seed is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The steps of `reps` repetitions over `configs` configurations: every configuration once
/// per repetition in shuffled order, each between two baselines.
pub fn schedule(configs: usize, reps: usize, rng: &mut XorShift) -> Vec<Step> {
    let mut steps = vec![Step::Baseline];
    for _ in 0..reps {
        let mut order: Vec<usize> = (0..configs).collect();
        rng.shuffle(&mut order);
        for c in order {
            steps.push(Step::Config(c));
            steps.push(Step::Baseline);
        }
    }
    steps
}

/// For each run of a configuration, `f(value, baseline)` where `baseline` is the mean of the
/// baselines right before and after it. `values[i]` is the measurement of `steps[i]`; runs
/// next to a missing (non-finite or non-positive) value are left out.
pub fn vs_neighbours(
    steps: &[Step],
    values: &[f64],
    configs: usize,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); configs];
    let ok = |v: Option<&f64>| v.copied().filter(|v| v.is_finite() && *v > 0.0);
    for (i, step) in steps.iter().enumerate() {
        let Step::Config(c) = step else { continue };
        let (Some(v), Some(before), Some(after)) = (
            ok(values.get(i)),
            ok(i.checked_sub(1).and_then(|j| values.get(j))),
            ok(values.get(i + 1)),
        ) else {
            continue;
        };
        out[*c].push(f(v, (before + after) / 2.0));
    }
    out
}

/// For each run of a configuration, its value divided by the mean of the baselines right
/// before and after it (see [`vs_neighbours`]).
pub fn ratios(steps: &[Step], values: &[f64], configs: usize) -> Vec<Vec<f64>> {
    vs_neighbours(steps, values, configs, |v, base| v / base)
}

/// Min, median and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (`None` when empty).
    pub fn of(v: &[f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Some(Self {
            min: s[0],
            median,
            max: s[n - 1],
        })
    }
}

/// The results of one configuration: samples of named metrics (one per repetition, summarised
/// as a [`Spread`]) and summed counters. Serializes as one flat JSON object: `{"config":…,
/// "runs":…, "failed":…, "<metric>":{"min":…,"median":…,"max":…}, …, "<counter>":…, …}`.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Configuration name.
    pub config: String,
    /// Windows measured.
    pub runs: usize,
    /// Windows that failed.
    pub failed: usize,
    samples: BTreeMap<&'static str, Vec<f64>>,
    counts: BTreeMap<&'static str, u64>,
}

impl Row {
    /// An empty row for `config`.
    pub fn new(config: impl Into<String>) -> Self {
        Self {
            config: config.into(),
            ..Self::default()
        }
    }

    /// Adds a sample of `metric` (non-finite values are dropped).
    pub fn sample(&mut self, metric: &'static str, value: f64) {
        let v = self.samples.entry(metric).or_default();
        if value.is_finite() {
            v.push(value);
        }
    }

    /// Adds samples of `metric`.
    pub fn extend(&mut self, metric: &'static str, values: impl IntoIterator<Item = f64>) {
        values.into_iter().for_each(|v| self.sample(metric, v));
    }

    /// Adds `n` to counter `key`.
    pub fn count(&mut self, key: &'static str, n: u64) {
        *self.counts.entry(key).or_default() += n;
    }

    /// The spread of `metric` (`None` without samples).
    pub fn spread(&self, metric: &str) -> Option<Spread> {
        Spread::of(self.samples.get(metric)?)
    }

    /// The median of `metric`.
    pub fn median(&self, metric: &str) -> Option<f64> {
        self.spread(metric).map(|s| s.median)
    }

    /// Counter `key` (`None` if never counted).
    pub fn counted(&self, key: &str) -> Option<u64> {
        self.counts.get(key).copied()
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("config", &self.config)?;
        m.serialize_entry("runs", &self.runs)?;
        m.serialize_entry("failed", &self.failed)?;
        for (k, v) in &self.samples {
            m.serialize_entry(k, &Spread::of(v))?;
        }
        for (k, v) in &self.counts {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Spread {
    /// `min / median / max`, each with one decimal below 100 and none above.
    pub fn show(&self) -> String {
        let n = |x: f64| {
            if x.abs() < 100.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.0}")
            }
        };
        format!("{} / {} / {}", n(self.min), n(self.median), n(self.max))
    }
}

/// The two header lines of a [`table`]: the column names, then `min / median / max` under
/// every column from `first_spread` on.
pub fn spread_header(columns: &[&str], first_spread: usize) -> Vec<Vec<String>> {
    let under = (0..columns.len())
        .map(|i| {
            if i < first_spread {
                String::new()
            } else {
                "min / median / max".to_string()
            }
        })
        .collect();
    vec![columns.iter().map(|c| c.to_string()).collect(), under]
}

/// Whether a bench was asked for one repetition: `--quick` or `NETPROBE_BENCH_QUICK` set
/// (not empty, not `0`).
pub fn quick_requested() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("NETPROBE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A text table: `lines[0..header]` are headers, the first column is left-aligned and the
/// others right-aligned, every column as wide as its widest cell.
pub fn table(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let width = |i: usize| {
        lines
            .iter()
            .filter_map(|l| l.get(i))
            .map(|c| c.chars().count())
            .max()
    };
    let widths: Vec<usize> = (0..cols).map(|i| width(i).unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
            if i == 0 {
                text.push_str(&format!("{cell:<w$}"));
            } else {
                text.push_str(&format!("  {cell:>w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_sits_between_baselines() {
        let mut rng = XorShift::new(7);
        let steps = schedule(3, 2, &mut rng);
        assert_eq!(steps.len(), 1 + 2 * 3 * 2);
        for (i, s) in steps.iter().enumerate() {
            if let Step::Config(_) = s {
                assert_eq!(steps[i - 1], Step::Baseline);
                assert_eq!(steps[i + 1], Step::Baseline);
            }
        }
        let values: Vec<f64> = steps
            .iter()
            .map(|s| match s {
                Step::Baseline => 100.0,
                Step::Config(c) => 50.0 + *c as f64,
            })
            .collect();
        let r = ratios(&steps, &values, 3);
        assert_eq!(r[0], vec![0.5, 0.5]);
        assert_eq!(Spread::of(&r[2]).unwrap().median, 0.52);
        let mut gap = values.clone();
        gap[0] = f64::NAN;
        assert_eq!(
            ratios(&steps, &gap, 3).iter().map(Vec::len).sum::<usize>(),
            5
        );
    }

    #[test]
    fn row_serializes_flat() {
        let mut row = Row::new("a");
        row.runs = 2;
        for v in [3.0, 1.0, f64::NAN] {
            row.sample("ns", v);
        }
        row.count("lost", 4);
        assert_eq!(row.median("ns"), Some(2.0));
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"config":"a","runs":2,"failed":0,"ns":{"min":1.0,"median":2.0,"max":3.0},"lost":4}"#
        );
        assert_eq!(row.spread("ns").unwrap().show(), "1.0 / 2.0 / 3.0");
        let t = table(&[
            vec!["name".into(), "n".into()],
            vec!["a".into(), "100".into()],
        ]);
        assert_eq!(t, "name    n\na     100\n");
    }
}

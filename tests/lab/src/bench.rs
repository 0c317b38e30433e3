//! The interleaved A/B benchmark schedule of DESIGN.md ("Benchmarks"): `baseline, A,
//! baseline, B, baseline, …` with the configuration order shuffled per repetition, every
//! run divided by the mean of its two neighbouring baselines, and min/median/max over the
//! repetitions.
use serde::Serialize;

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

/// For each run of a configuration, its value divided by the mean of the baselines right
/// before and after it. `values[i]` is the measurement of `steps[i]`.
pub fn ratios(steps: &[Step], values: &[f64], configs: usize) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); configs];
    for (i, step) in steps.iter().enumerate() {
        let Step::Config(c) = step else { continue };
        let (Some(before), Some(after)) = (
            i.checked_sub(1).and_then(|j| values.get(j)),
            values.get(i + 1),
        ) else {
            continue;
        };
        let base = (before + after) / 2.0;
        if base > 0.0 {
            out[*c].push(values[i] / base);
        }
    }
    out
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
    }
}

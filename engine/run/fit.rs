//! Will it fit? Each step's expected duration from the journal's history
//! of its plan (issue 14 §6): the 90th percentile of its last ten
//! successful runs, scaled by this run's predicted rows (or bytes) when
//! both sides have them — a retention step that deleted 1 M rows in 60 s
//! and is predicted 2 M now is expected to take about 120 s. The diff
//! shows it per step and in total against what is left of `max_runtime`
//! and the window; with `limits.fit: defer` a step whose expectation does
//! not fit in what is left is deferred before it starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::execplan::{ExecutionPlan, human_count};

/// How long a step is expected to take, and from what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub ms: u64,
    /// Past runs it comes from.
    pub runs: usize,
    /// In words: `p90 of 7 runs, scaled to ~2.0M rows`.
    pub basis: String,
}

/// One past run of a step: (duration ms, rows, bytes).
pub type Past = (i64, i64, i64);

/// The expectation for a step predicted to touch `rows` rows and `bytes`
/// bytes, from its `past` runs; `None` without any.
pub fn expected(past: &[Past], rows: u64, bytes: u64) -> Option<Expected> {
    if past.is_empty() {
        return None;
    }
    let n = past.len();
    // Scaled by rows when this run and every past one have rows; else by
    // bytes the same way; else the durations themselves.
    let scaled = |pick: fn(&Past) -> i64, now: u64, unit: &str| -> Option<Expected> {
        if now == 0 || past.iter().any(|p| pick(p) <= 0) {
            return None;
        }
        let per: Vec<f64> = past.iter().map(|p| p.0.max(0) as f64 / pick(p) as f64).collect();
        Some(Expected {
            ms: (p90(per) * now as f64).round() as u64,
            runs: n,
            basis: format!("p90 of {n} {}, scaled to {} {unit}", runs(n), human_count(now)),
        })
    };
    scaled(|p| p.1, rows, "rows")
        .or_else(|| scaled(|p| p.2, bytes, "bytes"))
        .or_else(|| {
            Some(Expected {
                ms: p90(past.iter().map(|p| p.0.max(0) as f64).collect()).round() as u64,
                runs: n,
                basis: format!("p90 of {n} {}", runs(n)),
            })
        })
}

fn runs(n: usize) -> &'static str {
    if n == 1 { "run" } else { "runs" }
}

/// The nearest-rank 90th percentile.
fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * 0.9).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Sets each step's expectation from `history` (the journal's rows:
/// step, ms, rows, bytes).
pub fn apply_history(ep: &mut ExecutionPlan, history: &[(String, i64, i64, i64)]) {
    let mut by_step: BTreeMap<&str, Vec<Past>> = BTreeMap::new();
    for (step, ms, rows, bytes) in history {
        by_step.entry(step.as_str()).or_default().push((*ms, *rows, *bytes));
    }
    for s in &mut ep.steps {
        if s.no_op {
            continue;
        }
        s.expected = by_step
            .get(s.id.as_str())
            .and_then(|p| expected(p, s.estimate.rows, s.estimate.bytes));
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn clock_ms(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expectation_is_the_p90_scaled_by_what_this_run_does() {
        // 10 runs of 1,000 rows: 10..=100 ms a row-thousand; p90 = 90 ms.
        let past: Vec<Past> = (1..=10).map(|i| (i * 10, 1000, 0)).collect();
        let e = expected(&past, 2000, 0).expect("expected");
        assert_eq!(e.ms, 180, "90 ms per 1,000 rows, 2,000 rows now");
        assert_eq!(e.basis, "p90 of 10 runs, scaled to 2,000 rows");
        // Without rows now: by bytes when both sides have them, else plain.
        let past: Vec<Past> = vec![(4000, 0, 1_000_000)];
        let e = expected(&past, 0, 3_000_000).expect("expected");
        assert_eq!((e.ms, e.runs), (12_000, 1));
        assert_eq!(e.basis, "p90 of 1 run, scaled to 3,000,000 bytes");
        let past: Vec<Past> = vec![(100, 0, 0), (300, 0, 0), (200, 0, 0)];
        assert_eq!(expected(&past, 500, 0).map(|e| e.ms), Some(300));
        assert_eq!(expected(&[], 500, 0), None);
    }

    #[test]
    fn clock_reads_like_a_person_writes_it() {
        assert_eq!(clock_ms(1), "1s");
        assert_eq!(clock_ms(42_000), "42s");
        assert_eq!(clock_ms(185_000), "3m05s");
        assert_eq!(clock_ms(3_720_000), "1h02m");
    }
}

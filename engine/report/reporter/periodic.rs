//! Progress without a terminal: with `--progress always` and a stderr that
//! is not a TTY (a CI log, `| tee`, a cron mail), one plain line every
//! interval (10 s, `DBMAINT_PROGRESS_EVERY` seconds) says where the run
//! is, beside the log lines: steps done, and for each running step its
//! rows against the expected total with rate and ETA (retention), or its
//! objects. A thread of its own prints, so a long VACUUM that sends no
//! event still shows the run is alive.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Reporter;
use crate::run::events::Event;
use crate::run::execplan::human_count;

/// The interval when `DBMAINT_PROGRESS_EVERY` does not set one.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// `DBMAINT_PROGRESS_EVERY` (seconds, fractions allowed, at least 0.1),
/// else [`DEFAULT_EVERY`].
pub fn every_from_env() -> Duration {
    std::env::var("DBMAINT_PROGRESS_EVERY")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.1)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_EVERY)
}

#[derive(Debug)]
struct Running {
    op: String,
    started: Instant,
    /// Batches or objects expected, and done.
    units: u64,
    done: u64,
    /// Rows expected and deleted so far (retention).
    rows_expected: u64,
    rows: u64,
    /// What its running statement is doing (`events: scanning heap 45%`).
    phase: Option<String>,
}

#[derive(Debug)]
struct State {
    started: Instant,
    steps: u64,
    finished: u64,
    /// Running steps by start order.
    running: BTreeMap<u64, (String, Running)>,
    next: u64,
}

#[derive(Debug)]
pub struct Periodic {
    state: Arc<Mutex<State>>,
    stop: Option<Sender<()>>,
    printer: Option<JoinHandle<()>>,
}

impl Periodic {
    pub fn new(steps: u64, every: Duration) -> Self {
        let state = Arc::new(Mutex::new(State {
            started: Instant::now(),
            steps,
            finished: 0,
            running: BTreeMap::new(),
            next: 0,
        }));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let shared = Arc::clone(&state);
        let printer = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let line = match shared.lock() {
                    Ok(s) => line(&s, Instant::now()),
                    Err(_) => return,
                };
                let _ = writeln!(
                    std::io::stderr(),
                    "{} {}",
                    chrono::Utc::now().format("%H:%M:%S"),
                    crate::report::textsafe::visible(&line)
                );
            }
        });
        Self {
            state,
            stop: Some(stop),
            printer: Some(printer),
        }
    }

    fn finish(&mut self) {
        drop(self.stop.take());
        if let Some(p) = self.printer.take() {
            let _ = p.join();
        }
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Reporter for Periodic {
    fn event(&mut self, e: &Event) {
        if matches!(e, Event::RunFinished { .. }) {
            self.finish();
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        match e {
            Event::StepStarted { step, op, units, rows } => {
                let n = s.next;
                s.next += 1;
                s.running.insert(
                    n,
                    (
                        step.clone(),
                        Running {
                            op: op.clone(),
                            started: Instant::now(),
                            units: *units,
                            done: 0,
                            rows_expected: *rows,
                            rows: 0,
                            phase: None,
                        },
                    ),
                );
            }
            Event::BatchDone { step, rows_total, .. } => {
                if let Some(r) = running(&mut s, step) {
                    r.done += 1;
                    r.rows = *rows_total;
                }
            }
            // Counted as the bars count them: one per event (the event's
            // `done` is the action's index, not a count of objects).
            Event::ObjectDone { step, .. } => {
                if let Some(r) = running(&mut s, step) {
                    r.done += 1;
                    r.phase = None;
                }
            }
            Event::Phase { step, object, phase } => {
                if let Some(r) = running(&mut s, step) {
                    r.phase = Some(format!("{object}: {phase}"));
                }
            }
            Event::StepFinished { result } | Event::StepFailed { result } | Event::StepDeferred { result } => {
                let step = result.step.clone();
                s.running.retain(|_, (name, _)| *name != step);
                s.finished += 1;
            }
            Event::StepSkipped { .. } => s.finished += 1,
            _ => {}
        }
    }
}

fn running<'a>(s: &'a mut State, step: &str) -> Option<&'a mut Running> {
    s.running.values_mut().find(|(n, _)| n == step).map(|(_, r)| r)
}

/// The progress line at `now`.
fn line(s: &State, now: Instant) -> String {
    let mut out = format!(
        "progress {}: {} of {} steps done",
        clock(now.duration_since(s.started)),
        s.finished,
        s.steps
    );
    if s.running.is_empty() {
        out.push_str(", none running");
    }
    for (step, r) in s.running.values() {
        let took = now.duration_since(r.started);
        out.push_str(&format!("; {step} ({}) ", r.op));
        if r.rows_expected > 0 && r.op == "retention" {
            let pct = (r.rows as f64 * 100.0 / r.rows_expected as f64).min(100.0);
            out.push_str(&format!(
                "{} of {} rows ({pct:.0}%)",
                human_count(r.rows),
                human_count(r.rows_expected)
            ));
            let rate = r.rows as f64 / took.as_secs_f64().max(0.001);
            if r.rows > 0 {
                out.push_str(&format!(", {} rows/s", human_count(rate.round() as u64)));
                let left = r.rows_expected.saturating_sub(r.rows) as f64 / rate;
                out.push_str(&format!(", ETA {}", clock(Duration::from_secs_f64(left))));
            }
        } else if r.units > 0 {
            out.push_str(&format!("{} of {} done", r.done.min(r.units), r.units));
            if let Some(p) = &r.phase {
                out.push_str(&format!(" ({p})"));
            }
        } else {
            out.push_str("running");
        }
        out.push_str(&format!(", running {}", clock(took)));
    }
    out
}

fn clock(d: Duration) -> String {
    crate::run::fit::clock_ms(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_steps_rows_rate_and_eta() {
        let t0 = Instant::now();
        let mut s = State {
            started: t0,
            steps: 3,
            finished: 1,
            running: BTreeMap::new(),
            next: 0,
        };
        s.running.insert(
            0,
            (
                "purge".into(),
                Running {
                    op: "retention".into(),
                    started: t0,
                    units: 10,
                    done: 4,
                    rows_expected: 10_000,
                    rows: 4_000,
                    phase: None,
                },
            ),
        );
        s.running.insert(
            1,
            (
                "vacuum".into(),
                Running {
                    op: "vacuum".into(),
                    started: t0 + Duration::from_secs(1),
                    units: 5,
                    done: 2,
                    rows_expected: 0,
                    rows: 0,
                    phase: Some("public.events: scanning heap 45%".into()),
                },
            ),
        );
        let l = line(&s, t0 + Duration::from_secs(2));
        assert_eq!(
            l,
            "progress 2s: 1 of 3 steps done; purge (retention) 4,000 of 10,000 rows (40%), 2,000 rows/s, ETA 3s, running 2s; \
             vacuum (vacuum) 2 of 5 done (public.events: scanning heap 45%), running 1s"
        );
        s.running.clear();
        assert_eq!(
            line(&s, t0 + Duration::from_secs(125)),
            "progress 2m05s: 1 of 3 steps done, none running"
        );
    }
}

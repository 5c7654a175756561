//! Progress bars on a TTY: one overall bar (steps) and one per running step
//! (rows with rate and ETA for retention, objects for the rest). The only module that
//! uses indicatif. Finished steps print their log line above the bars.

use std::collections::{HashMap, HashSet};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Reporter, line_for};
use crate::run::events::Event;

#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    steps: HashMap<String, ProgressBar>,
    /// Steps whose bar counts rows (retention), not batches or objects.
    by_rows: HashSet<String>,
}

impl Bars {
    pub fn new(total_steps: u64) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total_steps));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} steps {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_prefix("dbmaint");
        Self {
            multi,
            overall,
            steps: HashMap::new(),
            by_rows: HashSet::new(),
        }
    }
}

impl Reporter for Bars {
    fn event(&mut self, e: &Event) {
        match e {
            Event::StepStarted { step, op, units, rows } => {
                // Retention counts rows (its total is exact or estimated
                // before it starts), with rate and ETA; the rest objects.
                let by_rows = op == "retention" && *rows > 0;
                let (len, template) = if by_rows {
                    (
                        *rows,
                        "{prefix:>12} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, ETA {eta} {msg}",
                    )
                } else {
                    ((*units).max(1), "{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                };
                let bar = self.multi.add(ProgressBar::new(len));
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(step.clone());
                if by_rows {
                    self.by_rows.insert(step.clone());
                }
                self.steps.insert(step.clone(), bar);
            }
            Event::BatchDone {
                step,
                batch,
                rows_total,
                ..
            } => {
                if let Some(b) = self.steps.get(step) {
                    if self.by_rows.contains(step) {
                        // Rows made eligible during the walk can pass the
                        // expected total: the bar grows, never overshoots.
                        advance_to(b, *rows_total);
                        b.set_message(crate::run::execplan::counted(*batch, "batch", "batches"));
                    } else {
                        advance_to(b, b.position() + 1);
                        b.set_message(format!(
                            "batches, {} rows",
                            crate::run::execplan::human_count(*rows_total)
                        ));
                    }
                }
            }
            Event::ObjectDone { step, object, .. } => {
                if let Some(b) = self.steps.get(step) {
                    advance_to(b, b.position() + 1);
                    b.set_message(object.clone());
                }
            }
            Event::Phase { step, object, phase } => {
                if let Some(b) = self.steps.get(step) {
                    b.set_message(format!("{object}: {phase}"));
                }
            }
            _ => {}
        }
        if let Some(step) = e.step()
            && matches!(
                e,
                Event::StepFinished { .. }
                    | Event::StepFailed { .. }
                    | Event::StepDeferred { .. }
                    | Event::StepSkipped { .. }
            )
        {
            self.by_rows.remove(step);
            if let Some(b) = self.steps.remove(step) {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
            self.overall.inc(1);
        }
        if let Some(line) = line_for(e)
            && !matches!(e, Event::StepStarted { .. })
        {
            let _ = self.multi.println(line);
        }
        if matches!(e, Event::RunFinished { .. }) {
            self.overall.finish_and_clear();
        }
    }
}

/// Moves `b` to `pos`, growing its length when `pos` passes it (a bar
/// never shows `100/88`).
fn advance_to(b: &ProgressBar, pos: u64) {
    if b.length().is_some_and(|len| pos > len) {
        b.set_length(pos);
    }
    b.set_position(pos);
}

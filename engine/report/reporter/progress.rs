//! Progress bars on a TTY: one overall bar (steps) and one per running step
//! (batches for retention, objects for the rest). The only module that
//! uses indicatif. Finished steps print their log line above the bars.

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Reporter, line_for};
use crate::run::events::Event;

#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    steps: HashMap<String, ProgressBar>,
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
        }
    }
}

impl Reporter for Bars {
    fn event(&mut self, e: &Event) {
        match e {
            Event::StepStarted { step, units, .. } => {
                let bar = self.multi.add(ProgressBar::new((*units).max(1)));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(step.clone());
                self.steps.insert(step.clone(), bar);
            }
            Event::BatchDone { step, rows_total, .. } => {
                if let Some(b) = self.steps.get(step) {
                    b.inc(1);
                    b.set_message(format!(
                        "batches, {} rows",
                        crate::run::execplan::human_count(*rows_total)
                    ));
                }
            }
            Event::ObjectDone { step, object, .. } => {
                if let Some(b) = self.steps.get(step) {
                    b.inc(1);
                    b.set_message(object.clone());
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

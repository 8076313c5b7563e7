//! The live progress of a run: on a terminal one indicatif line per agent step (attempt, state,
//! duration, tokens), redrawn as the run's record grows; otherwise a plain log line whenever a
//! step changes state. All of it on stderr: stdout carries the result.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{format_duration, step_state, tokens};
use crate::record::RunRecord;

pub(super) struct View {
    shown: bool,
    terminal: bool,
    bars: MultiProgress,
    steps: RefCell<Vec<Step>>,
}

struct Step {
    bar: Option<ProgressBar>,
    last: String,
}

impl View {
    pub(super) fn new(shown: bool) -> View {
        let terminal = std::io::stderr().is_terminal();
        View {
            shown,
            terminal,
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            steps: RefCell::new(Vec::new()),
        }
    }

    /// Shows the steps of `record` (the run so far).
    pub(super) fn show_record(&self, record: &RunRecord) {
        if !self.shown {
            return;
        }
        let mut steps = self.steps.borrow_mut();
        for (i, step) in record.steps.iter().enumerate() {
            let state = step_state(step);
            let attempt = step.attempts.len().max(1);
            let line = format!(
                "{:>2}. {:<28} attempt {attempt}  {state:<9}  {:>7}  tokens {}",
                i + 1,
                step.agent,
                if state == "running" || state == "scheduled" || state == "retrying" {
                    "…".to_owned()
                } else {
                    format_duration(step.duration)
                },
                tokens(step),
            );
            let done = matches!(state, "completed" | "failed");
            if i >= steps.len() {
                let bar = self.terminal.then(|| {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bar
                });
                steps.push(Step {
                    bar,
                    last: String::new(),
                });
            }
            let shown = &mut steps[i];
            if shown.last == line {
                continue;
            }
            shown.last = line.clone();
            match &shown.bar {
                Some(bar) if done => bar.finish_with_message(line),
                Some(bar) => bar.set_message(line),
                None => eprintln!("step {line}"),
            }
        }
    }

    pub(super) fn finish(&self) {
        for step in self.steps.borrow().iter() {
            if let Some(bar) = &step.bar
                && !bar.is_finished()
            {
                bar.finish();
            }
        }
    }
}

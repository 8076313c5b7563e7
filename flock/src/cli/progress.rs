//! The live progress of a run: on a terminal one indicatif line per agent step (attempt, state,
//! duration, tokens), redrawn as the run's record grows; otherwise a plain log line whenever a
//! step changes state. All of it on stderr: stdout carries the result.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{format_duration, step_state, tokens};
use crate::record::{AttemptRecord, RunRecord, StepEvent, StepEventKind, StepRecord};

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

    /// The run continued as new: `line` says which generation it is in now. The steps shown are
    /// the last generation's: they stay as they are, and the new generation's start afresh.
    pub(super) fn new_generation(&self, line: &str) {
        if !self.shown {
            return;
        }
        let mut steps = self.steps.borrow_mut();
        for step in steps.iter() {
            if let Some(bar) = &step.bar
                && !bar.is_finished()
            {
                bar.finish();
            }
        }
        steps.clear();
        if self.terminal {
            let _ = self.bars.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Shows the steps of `record` (the run so far).
    pub(super) fn show_record(&self, record: &RunRecord) {
        self.show_steps(&record.steps);
    }

    /// Shows `steps` (the run so far), each on its line.
    pub(super) fn show_steps(&self, records: &[StepRecord]) {
        if !self.shown {
            return;
        }
        let mut steps = self.steps.borrow_mut();
        for (i, step) in records.iter().enumerate() {
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

/// The steps of a local run so far, folded from the executor's step events into the records the
/// Temporal path reads from history, so that both show the same lines.
#[derive(Default)]
pub(super) struct LiveSteps {
    /// (run id, step number) of each record, in the order the steps started.
    keys: Vec<(std::sync::Arc<str>, u64)>,
    pub(super) records: Vec<StepRecord>,
}

impl LiveSteps {
    pub(super) fn apply(&mut self, event: StepEvent) {
        let key = (event.run_id.clone(), event.step);
        let at = match self.keys.iter().position(|k| *k == key) {
            Some(at) => at,
            None => {
                self.keys.push(key);
                self.records.push(StepRecord {
                    agent: event.agent.to_owned(),
                    started: event.at,
                    duration: Default::default(),
                    input: serde_json::Value::Null,
                    output: None,
                    error: None,
                    attempts: Vec::new(),
                    usage: Default::default(),
                });
                self.records.len() - 1
            }
        };
        let step = &mut self.records[at];
        match event.kind {
            StepEventKind::AttemptStarted => step.attempts.push(AttemptRecord {
                attempt: event.attempt,
                started: event.at,
                duration: Default::default(),
                error: None,
            }),
            StepEventKind::AttemptFailed {
                error, duration, ..
            } => {
                if let Some(attempt) = step.attempts.last_mut() {
                    attempt.duration = duration;
                    attempt.error = Some(error);
                }
            }
            StepEventKind::Completed { duration, usage } => {
                step.duration = duration;
                step.usage = usage;
                step.output = Some(serde_json::Value::Null);
            }
            StepEventKind::Failed {
                error,
                duration,
                usage,
            } => {
                step.duration = duration;
                step.usage = usage;
                step.error = Some(error);
            }
        }
    }
}

//! The live progress of a run: on a terminal one indicatif line per agent step (attempt, state,
//! duration, tokens), redrawn as the run's record grows; otherwise a plain log line whenever a
//! step changes state. All of it on stderr: stdout carries the result.

use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{format_duration, step_state, tokens};
use crate::error::AgentError;
use crate::events::{EventKind, RunEvent};
use crate::record::{AttemptRecord, StepEvent, StepRecord};

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

    /// Shows `steps`, each on its line, with the end of the text its model streamed so far
    /// (`tails`, by step, when there is one).
    pub(super) fn show_steps_with_text(&self, records: &[StepRecord], tails: &[String]) {
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
            let line = match tails.get(i).filter(|tail| !tail.is_empty()) {
                Some(tail) => format!("{line}  “{tail}”"),
                None => line,
            };
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

/// The steps of a run so far, folded from its live events ([`crate::events`]) into the records
/// the progress view shows, with the end of each step's streamed text. The local executor's step
/// events (which a run's child flows share) fold the same way.
#[derive(Default)]
pub(super) struct EventSteps {
    /// The run id and step number of each record.
    keys: Vec<(String, u64)>,
    pub(super) records: Vec<StepRecord>,
    /// The last characters of each step's streamed text (its current attempt's).
    pub(super) tails: Vec<String>,
}

impl EventSteps {
    /// Folds a local step event in.
    pub(super) fn apply_step(&mut self, event: &StepEvent) {
        for kind in crate::events::of_step_event(event) {
            self.apply(&RunEvent {
                run_id: event.run_id.to_string(),
                kind,
            });
        }
    }

    pub(super) fn apply(&mut self, event: &RunEvent) {
        let (step, name) = match &event.kind {
            EventKind::StepStarted { step, name, .. }
            | EventKind::Text { step, name, .. }
            | EventKind::AttemptFailed { step, name, .. }
            | EventKind::StepFinished { step, name, .. } => (*step, name),
            _ => return,
        };
        let at = match self
            .keys
            .iter()
            .position(|(run, n)| *n == step && *run == event.run_id)
        {
            Some(at) => at,
            None => {
                self.keys.push((event.run_id.clone(), step));
                self.records
                    .push(StepRecord::new(name, std::time::Duration::ZERO));
                self.tails.push(String::new());
                self.records.len() - 1
            }
        };
        let record = &mut self.records[at];
        match &event.kind {
            EventKind::StepStarted { attempt, .. } => {
                record.attempts.push(AttemptRecord {
                    attempt: *attempt,
                    started: Default::default(),
                    duration: Default::default(),
                    error: None,
                });
                self.tails[at].clear();
            }
            EventKind::Text { text, .. } => push_tail(&mut self.tails[at], text),
            EventKind::AttemptFailed { error, .. } => {
                if let Some(attempt) = record.attempts.last_mut() {
                    attempt.error = Some(AgentError::transient(error.clone()));
                }
            }
            EventKind::StepFinished {
                error,
                duration_ms,
                usage,
                ..
            } => {
                record.duration = std::time::Duration::from_millis(*duration_ms);
                record.usage = *usage;
                match error {
                    Some(error) => record.error = Some(AgentError::permanent(error.clone())),
                    None => record.output = Some(serde_json::Value::Null),
                }
            }
            _ => {}
        }
    }
}

/// How much of a step's streamed text its line shows.
const TAIL: usize = 40;

/// Adds streamed `text` to a step's shown `tail`, keeping its last [`TAIL`] characters on one line.
fn push_tail(tail: &mut String, text: &str) {
    tail.push_str(&text.replace(['\n', '\r'], " "));
    let extra = tail.chars().count().saturating_sub(TAIL);
    if extra > 0 {
        *tail = tail.chars().skip(extra).collect();
    }
}

/// `flock watch`'s plain rendering of a run's events: streamed text on stdout as it comes, a
/// line on stderr for everything else.
#[derive(Default)]
pub(super) struct EventLog {
    /// The step whose text was printed last, when its line is still open.
    open_text: Option<u64>,
}

impl EventLog {
    pub(super) fn show(&mut self, event: &RunEvent, program: &str) {
        use std::io::Write;
        if let EventKind::Text { step, text, .. } = &event.kind {
            let mut out = std::io::stdout().lock();
            if self.open_text.is_some_and(|open| open != *step) {
                let _ = writeln!(out);
            }
            let _ = write!(out, "{text}");
            let _ = out.flush();
            self.open_text = Some(*step);
            return;
        }
        if self.open_text.take().is_some() {
            println!();
        }
        let run_id = &event.run_id;
        let line = match &event.kind {
            EventKind::StepStarted {
                step,
                name,
                attempt: 1,
                ..
            } => format!("step {step} {name}: started"),
            EventKind::StepStarted {
                step,
                name,
                attempt,
                ..
            } => format!(
                "step {step} {name}: attempt {attempt} started (a retry: its text starts afresh)"
            ),
            EventKind::AttemptFailed {
                step,
                name,
                attempt,
                error,
                retry: true,
                retry_in_ms,
            } => match retry_in_ms {
                Some(ms) => format!(
                    "step {step} {name}: attempt {attempt} failed, retried in {}: {error}",
                    format_duration(std::time::Duration::from_millis(*ms))
                ),
                None => format!("step {step} {name}: attempt {attempt} failed, retried: {error}"),
            },
            EventKind::StepFinished {
                step,
                name,
                error: None,
                duration_ms,
                usage,
                ..
            } => format!(
                "step {step} {name}: completed in {}{}",
                format_duration(std::time::Duration::from_millis(*duration_ms)),
                if usage.prompt_tokens + usage.completion_tokens > 0 {
                    format!(
                        ", tokens {}+{}",
                        usage.prompt_tokens, usage.completion_tokens
                    )
                } else {
                    String::new()
                }
            ),
            EventKind::StepFinished {
                step,
                name,
                error: Some(error),
                attempts,
                ..
            } => format!("step {step} {name}: failed after {attempts} attempt(s): {error}"),
            EventKind::ApprovalWaiting {
                call,
                tool,
                arguments,
                ..
            } => format!(
                "call {call} waits for approval: {tool}({arguments}) — `{program} approve {run_id} --call {call}` (or `--deny REASON`)"
            ),
            EventKind::RunFinished {
                status,
                error: None,
            } => format!("run {run_id} {status}"),
            EventKind::RunFinished {
                status,
                error: Some(error),
            } => format!("run {run_id} {status}: {error}"),
            _ => return,
        };
        eprintln!("{line}");
    }
}

//! Named phases of one long end-to-end test, each reporting on its own: a phase that
//! fails says so by name and shows the diagnostics at that moment, the phases that do not
//! need it still run, the ones that do are skipped with the reason, and `finish` fails
//! the test listing every phase that did not pass.
//!
//! One cluster serves every phase of a test: it is too expensive to bring up per phase,
//! and `cargo nextest` runs each `#[test]` in a process of its own, where a cluster shared
//! between tests would need its own locking and teardown.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Passed,
    /// The first line of the phase's panic message.
    Failed(String),
    /// Why it did not run: which phases it needed did not pass.
    Skipped(String),
}

pub struct Phases<'a> {
    diagnose: Box<dyn Fn() + 'a>,
    done: Vec<(&'static str, Outcome)>,
}

impl<'a> Phases<'a> {
    /// `diagnose` prints what a reader needs when a phase fails (logs, pods, events).
    pub fn new(diagnose: impl Fn() + 'a) -> Self {
        Self {
            diagnose: Box::new(diagnose),
            done: Vec::new(),
        }
    }

    /// Runs `phase` under `name`, unless a phase it `needs` did not pass: then it is
    /// skipped. A panic in `phase` (a failed assertion, a wait that timed out) fails it.
    pub fn run(&mut self, name: &'static str, needs: &[&'static str], phase: impl FnOnce()) {
        assert!(
            self.outcome(name).is_none(),
            "two phases are named {name:?}"
        );
        let unmet: Vec<String> = needs
            .iter()
            .filter_map(|need| match self.outcome(need) {
                Some(Outcome::Passed) => None,
                Some(Outcome::Failed(_)) => Some(format!("needs `{need}`, which failed")),
                Some(Outcome::Skipped(_)) => Some(format!("needs `{need}`, which was skipped")),
                None => panic!("phase {name:?} needs {need:?}, which has not run before it"),
            })
            .collect();
        if !unmet.is_empty() {
            let why = unmet.join("; ");
            eprintln!("==== phase `{name}`: SKIPPED: {why}");
            self.done.push((name, Outcome::Skipped(why)));
            return;
        }
        eprintln!("==== phase `{name}`: started");
        let started = Instant::now();
        let outcome = match catch_unwind(AssertUnwindSafe(phase)) {
            Ok(()) => {
                let secs = started.elapsed().as_secs();
                eprintln!("==== phase `{name}`: passed ({secs}s)");
                Outcome::Passed
            }
            Err(panic) => {
                let message = first_line(&*panic);
                let secs = started.elapsed().as_secs();
                eprintln!("==== phase `{name}`: FAILED ({secs}s): {message}");
                eprintln!("---- diagnostics: `{name}` failed ----");
                (self.diagnose)();
                eprintln!("---- end of diagnostics for `{name}` ----");
                Outcome::Failed(message)
            }
        };
        self.done.push((name, outcome));
    }

    /// Prints every phase's outcome, and fails the test when any phase did not pass.
    #[track_caller]
    pub fn finish(self) {
        eprintln!("==== phases:");
        for (name, outcome) in &self.done {
            match outcome {
                Outcome::Passed => eprintln!("  passed   {name}"),
                Outcome::Failed(why) => eprintln!("  FAILED   {name}: {why}"),
                Outcome::Skipped(why) => eprintln!("  SKIPPED  {name}: {why}"),
            }
        }
        let not_passed: Vec<String> = self
            .done
            .iter()
            .filter_map(|(name, outcome)| match outcome {
                Outcome::Passed => None,
                Outcome::Failed(why) => Some(format!("`{name}` failed: {why}")),
                Outcome::Skipped(why) => Some(format!("`{name}` skipped: {why}")),
            })
            .collect();
        assert!(
            not_passed.is_empty(),
            "{} of {} phases did not pass:\n{}",
            not_passed.len(),
            self.done.len(),
            not_passed.join("\n")
        );
    }

    fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.done.iter().find(|(n, _)| *n == name).map(|(_, o)| o)
    }
}

/// A panic's message, first line only: the panic hook has printed all of it already.
fn first_line(panic: &(dyn Any + Send)) -> String {
    let message = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s,
        (None, Some(s)) => s.as_str(),
        (None, None) => "(a panic without a message)",
    };
    message.lines().next().unwrap_or_default().to_string()
}

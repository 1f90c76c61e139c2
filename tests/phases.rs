//! The phase runner of the end-to-end tests (tests/common/phases.rs), without a cluster:
//! a failed phase is named with its message and diagnosed, the phases that need it are
//! skipped, the others still run, and the test fails listing them.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

#[path = "common/phases.rs"]
mod phases;
use phases::Phases;

/// Runs `phases` to `finish`; the message it failed with, if it did.
fn finish_message(phases: impl FnOnce()) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(phases)) {
        Ok(()) => None,
        Err(panic) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(not a String)".into()),
        ),
    }
}

#[test]
fn a_failed_phase_is_diagnosed_its_dependents_skipped_and_the_others_run() {
    let diagnosed = Cell::new(0);
    let mut ran = Vec::new();
    let message = finish_message(|| {
        let mut phases = Phases::new(|| diagnosed.set(diagnosed.get() + 1));
        phases.run("up", &[], || ran.push("up"));
        phases.run("broken", &["up"], || panic!("on purpose\nmore lines"));
        phases.run("after broken", &["up", "broken"], || {
            ran.push("after broken")
        });
        phases.run("after that", &["after broken"], || ran.push("after that"));
        phases.run("independent", &["up"], || ran.push("independent"));
        phases.finish();
    })
    .expect("finish fails the test");
    assert_eq!(ran, ["up", "independent"]);
    assert_eq!(diagnosed.get(), 1, "diagnosed once, for the failed phase");
    assert_eq!(
        message,
        "3 of 5 phases did not pass:\n\
         `broken` failed: on purpose\n\
         `after broken` skipped: needs `broken`, which failed\n\
         `after that` skipped: needs `after broken`, which was skipped"
    );
}

#[test]
fn passing_phases_finish_without_diagnostics() {
    let diagnosed = Cell::new(0);
    let message = finish_message(|| {
        let mut phases = Phases::new(|| diagnosed.set(diagnosed.get() + 1));
        phases.run("up", &[], || {});
        phases.run("down", &["up"], || {});
        phases.finish();
    });
    assert_eq!(message, None);
    assert_eq!(diagnosed.get(), 0);
}

#[test]
fn a_phase_needing_one_that_has_not_run_is_a_mistake_in_the_test() {
    let message = finish_message(|| {
        let mut phases = Phases::new(|| {});
        phases.run("down", &["up"], || {});
    });
    assert_eq!(
        message.as_deref(),
        Some("phase \"down\" needs \"up\", which has not run before it")
    );
}

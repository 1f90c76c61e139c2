//! Fault injection for the crash-safety tests: `KINIT_CRASH_AT=<point>` kills kinit at
//! the named point, the way a power cut or `kill -9` would, so a test can run the same
//! command again and check that it finishes.
//!
//! Only debug builds (the binary `cargo test` runs) look at the variable; in a release
//! build [`point`] does nothing, so no environment can make an installed kinit stop half
//! way.

/// The variable naming the point to die at.
pub const VARIABLE: &str = "KINIT_CRASH_AT";

/// Dies with SIGKILL when `KINIT_CRASH_AT` names `name`: no destructor, no buffered
/// write, no lock release runs, as after a real crash.
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    if std::env::var_os(VARIABLE).is_some_and(|v| v == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught or ignored; abort in case it could not be sent.
        std::process::abort();
    }
}

/// Release builds never crash on purpose.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}

//! Waiting with a time limit, and the one way a wait that ran out is reported: what was
//! awaited, for how long, and the last thing seen. [`until`] polls what has nothing to
//! watch (a health endpoint, `/readyz`); waits on Kubernetes objects watch them instead
//! (in the `kubernetes` module) and tell what they see to a [`Seen`].
//!
//! A limit is on standing still, not on the whole wait: each change in what a wait sees
//! (an error giving way to another, a pod going from pulling to starting) starts its limit
//! again, up to [`PROGRESS_CAP`] limits in all. A slow host (a small cloud VM, a laptop on
//! battery, a guest under emulation) takes minutes where a fast one takes seconds, and is
//! not a failure while it gets somewhere; a real stall still ends at the limit.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::time::Instant;

/// How often [`until`] asks again. What it asks are cheap local checks (a health endpoint,
/// one DNS query), and each half poll interval is, on average, time `kinit up` waits after
/// the thing is already there. Polling every tenth of a second rather than every half took
/// 0.5 s off a cold `kinit up` and 2 s off a warm one on the 2-core test VM (issue 14).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// However it keeps changing, a wait ends after this many of its limits.
pub const PROGRESS_CAP: u32 = 5;

/// The last state a wait saw that kept it waiting (for the error when it runs out), and
/// when that last changed.
#[derive(Debug)]
pub struct Seen(Mutex<State>);

#[derive(Debug)]
struct State {
    last: Option<String>,
    changed: Instant,
}

impl Default for Seen {
    fn default() -> Self {
        Self(Mutex::new(State {
            last: None,
            changed: Instant::now(),
        }))
    }
}

impl Seen {
    pub fn set(&self, state: impl Into<String>) {
        self.update(Some(state.into()));
    }

    pub fn clear(&self) {
        self.update(None);
    }

    fn update(&self, last: Option<String>) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if s.last != last {
            s.last = last;
            s.changed = Instant::now();
        }
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
            .clone()
    }

    fn changed(&self) -> Instant {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .changed
    }
}

/// Runs `wait` until it has seen no change for `limit` (or for [`PROGRESS_CAP`] limits in
/// all), giving it a [`Seen`] to tell what keeps it waiting. When it gives up, the error
/// says `what` was awaited, for how long, and the last state seen; an error of `wait`
/// itself is returned as it is.
pub async fn within<T>(
    what: &str,
    limit: Duration,
    wait: impl AsyncFnOnce(&Seen) -> Result<T>,
) -> Result<T> {
    let seen = Seen::default();
    let start = Instant::now();
    let cap = start + limit * PROGRESS_CAP;
    let wait = wait(&seen);
    let mut wait = std::pin::pin!(wait);
    loop {
        let deadline = (seen.changed() + limit).min(cap);
        if let Ok(result) = tokio::time::timeout_at(deadline, &mut wait).await {
            return result;
        }
        let now = Instant::now();
        if now < cap && seen.changed() + limit > now {
            continue; // it changed while the timer ran
        }
        let total = (now - start).as_secs();
        let last = match seen.get() {
            Some(last) => format!(" (last check: {last})"),
            None => String::new(),
        };
        let limit = limit.as_secs();
        return Err(if now >= cap {
            anyhow!("{what} within {total}s, though it kept changing{last}")
        } else if total <= limit {
            anyhow!("{what} within {limit}s{last}")
        } else {
            anyhow!("{what}: nothing changed for {limit}s after {total}s of waiting{last}")
        });
    }
}

/// Asks `check` every tenth of a second until it answers `Ok(true)`, or its answers have
/// not changed for `timeout` (see [`within`]). An error of `check` is not fatal (what it
/// asks may not answer yet): a new error is progress, and the error of a wait that runs
/// out quotes it when it was the last answer.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    within(what, timeout, async |seen| {
        // With ten checks a second, a component's start would repeat the same line dozens
        // of times under -v: log an error only when it differs from the one before.
        let mut logged = None;
        loop {
            match check().await {
                Ok(true) => return Ok(()),
                Ok(false) => seen.clear(),
                Err(e) => {
                    let e = format!("{e:#}");
                    if logged.as_ref() != Some(&e) {
                        tracing::debug!("still waiting ({what}?): {e}");
                        logged = Some(e.clone());
                    }
                    seen.set(e);
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_runs_out_says_what_it_awaited_and_the_last_check() {
        let mut calls = 0;
        let err = until("the thing did not come", Duration::from_secs(3), || {
            calls += 1;
            async move { Err::<bool, _>(anyhow!("refused")) }
        })
        .await
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the thing did not come within 3s (last check: refused)"
        );
        // Ten checks a second, the first at once.
        assert!((30..=31).contains(&calls), "{calls}");

        // A check that answers "not yet" leaves nothing to quote, not an older error.
        let mut first = true;
        let quiet = until(
            "the other thing did not come",
            Duration::from_secs(1),
            || {
                let answer = if first {
                    Err(anyhow!("refused"))
                } else {
                    Ok(false)
                };
                first = false;
                async move { answer }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            format!("{quiet:#}"),
            "the other thing did not come within 1s"
        );
        let ok = until("never shown", Duration::from_secs(3), || async { Ok(true) }).await;
        assert!(ok.is_ok());
    }

    /// A slow start that gets somewhere outlasts the limit; a stall after it does not.
    #[tokio::test(start_paused = true)]
    async fn a_change_starts_the_limit_again_and_a_stall_still_ends_the_wait() {
        let start = Instant::now();
        // A new answer every 2 s for 8 s (each within the 3 s limit), then the same one.
        let err = until(
            "the slow thing did not come",
            Duration::from_secs(3),
            || {
                let phase = (start.elapsed().as_secs() / 2).min(4);
                async move { Err::<bool, _>(anyhow!("phase {phase}")) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the slow thing did not come: nothing changed for 3s after 11s of waiting \
             (last check: phase 4)"
        );
        // It would have come at 10 s: the wait is still there.
        let done = until("the slow thing", Duration::from_secs(3), || {
            let elapsed = start.elapsed().as_secs();
            async move {
                match elapsed {
                    ..20 => Err(anyhow!("second {elapsed}")),
                    _ => Ok(true),
                }
            }
        })
        .await;
        assert!(done.is_ok(), "{done:?}");

        // Changing forever ends at PROGRESS_CAP limits.
        let begun = Instant::now();
        let mut calls = 0;
        let endless = until("the restless thing", Duration::from_secs(2), || {
            calls += 1;
            let n = calls;
            async move { Err::<bool, _>(anyhow!("attempt {n}")) }
        })
        .await
        .unwrap_err();
        assert_eq!(
            begun.elapsed(),
            Duration::from_secs(2 * PROGRESS_CAP as u64)
        );
        assert!(
            format!("{endless:#}")
                .starts_with("the restless thing within 10s, though it kept changing"),
            "{endless:#}"
        );
    }

    /// Twenty failed checks with two different errors make two log lines, not twenty.
    #[tokio::test(start_paused = true)]
    async fn a_repeated_error_is_logged_once() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut calls = 0;
        until("the thing", Duration::from_secs(10), || {
            calls += 1;
            let answer = match calls {
                1..=10 => Err(anyhow!("connection refused")),
                11..=20 => Err(anyhow!("not ready yet")),
                _ => Ok(true),
            };
            async move { answer }
        })
        .await
        .unwrap();
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.matches("still waiting").count(), 2, "{logged}");
        assert!(logged.contains("connection refused") && logged.contains("not ready yet"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_wait_is_not_dressed_as_a_timeout() {
        let err = within("unused", Duration::from_secs(5), async |seen| {
            seen.set("half way");
            Err::<(), _>(anyhow!("the Job failed"))
        })
        .await
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "the Job failed");
    }
}

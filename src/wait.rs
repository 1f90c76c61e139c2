//! Waiting with a time limit, and the one way a wait that ran out is reported: what was
//! awaited, for how long, and the last thing seen. [`until`] polls what has nothing to
//! watch (a health endpoint, `/readyz`); waits on Kubernetes objects watch them instead
//! (in the `kubernetes` module) and tell what they see to a [`Seen`].

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Result, anyhow};

/// How often [`until`] asks again. What it asks are cheap local checks (a health endpoint,
/// one DNS query), and each half poll interval is, on average, time `kinit up` waits after
/// the thing is already there. Polling every tenth of a second rather than every half took
/// 0.5 s off a cold `kinit up` and 2 s off a warm one on the 2-core test VM (issue 14).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The last state a wait saw that kept it waiting: for the error when it runs out.
#[derive(Debug, Default)]
pub struct Seen(Mutex<Option<String>>);

impl Seen {
    pub fn set(&self, state: impl Into<String>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(state.into());
    }

    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Runs `wait` for at most `timeout`, giving it a [`Seen`] to tell what keeps it waiting.
/// When time runs out, the error says `what` was awaited and the last state seen; an
/// error of `wait` itself is returned as it is.
pub async fn within<T>(
    what: &str,
    timeout: Duration,
    wait: impl AsyncFnOnce(&Seen) -> Result<T>,
) -> Result<T> {
    let seen = Seen::default();
    match tokio::time::timeout(timeout, wait(&seen)).await {
        Ok(result) => result,
        Err(_) => Err(match seen.get() {
            Some(last) => anyhow!("{what} within {}s (last check: {last})", timeout.as_secs()),
            None => anyhow!("{what} within {}s", timeout.as_secs()),
        }),
    }
}

/// Asks `check` every tenth of a second until it answers `Ok(true)` or `timeout` passes. An
/// error of `check` is not fatal (what it asks may not answer yet): the error of a wait
/// that runs out quotes it when it was the last answer.
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
            let n = calls;
            async move { Err::<bool, _>(anyhow!("refused #{n}")) }
        })
        .await
        .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("the thing did not come within 3s (last check: refused #{calls})")
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

//! What the user sees while kinit works: one line per step with a spinner and its time,
//! like kind, and progress bars for pulls. Log lines are printed through the same
//! [`MultiProgress`] so they never tear a spinner apart.

use std::future::Future;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

fn multi() -> &'static MultiProgress {
    static MULTI: OnceLock<MultiProgress> = OnceLock::new();
    MULTI.get_or_init(MultiProgress::new)
}

/// Removes any spinner so a final message starts on a clean line.
pub fn clear() {
    let _ = multi().clear();
}

/// Prints a line to stderr without disturbing active spinners.
pub fn println(line: &str) {
    multi().suspend(|| {
        let _ = writeln!(std::io::stderr(), "{line}");
    });
}

/// A progress bar counting bytes, e.g. for an image pull.
pub fn bytes_bar(message: &str) -> ProgressBar {
    let bar = multi().add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template("   {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar
}

/// What a step found or did, with a short detail for its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Looked at the host and changed nothing (preflight checks).
    Checked(String),
    /// Changed something.
    Done(String),
    /// Found its work already done.
    AlreadyDone(String),
}

/// Runs steps one after the other, printing each with its outcome and time.
pub struct Steps {
    started: Instant,
    changed: bool,
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Steps {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            changed: false,
        }
    }

    pub async fn run(
        &mut self,
        title: &str,
        step: impl Future<Output = Result<Outcome>>,
    ) -> Result<()> {
        let spinner = multi().add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template(" {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(title.to_string());
        spinner.enable_steady_tick(Duration::from_millis(100));
        let start = Instant::now();
        let result = step.await;
        spinner.finish_and_clear();
        multi().remove(&spinner);
        let took = format_duration(start.elapsed());
        match &result {
            Ok(Outcome::Checked(detail)) => println(&format!(" ✓ {title}: {detail}  {took}")),
            Ok(Outcome::Done(detail)) => {
                self.changed = true;
                println(&format!(" ✓ {title}: {detail}  {took}"));
            }
            Ok(Outcome::AlreadyDone(detail)) => {
                println(&format!(" ✓ {title}: {detail} (already done)  {took}"))
            }
            Err(_) => println(&format!(" ✗ {title}  {took}")),
        }
        result.map(|_| ())
    }

    /// Whether any step changed something.
    pub fn changed(&self) -> bool {
        self.changed
    }

    pub fn elapsed(&self) -> String {
        format_duration(self.started.elapsed())
    }
}

pub fn format_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A failed write to standard output.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {0}")]
pub struct StdoutError(#[source] std::io::Error);

impl StdoutError {
    /// The reader went away (`kinit images list | head`).
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes to standard output. Unlike `print!`, a reader that went away is an error the
/// caller returns rather than a panic; [`crate::report`] ends the command quietly then.
pub fn out(args: std::fmt::Arguments, newline: bool) -> Result<(), StdoutError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).map_err(StdoutError)?;
    if newline {
        stdout.write_all(b"\n").map_err(StdoutError)?;
    }
    stdout.flush().map_err(StdoutError)
}

/// `println!` through [`out`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::progress::out(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::progress::out(format_args!($($arg)*), true)
    };
}

/// `print!` through [`out`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::progress::out(format_args!($($arg)*), false)
    };
}

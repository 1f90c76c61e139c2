//! `--log-file`: the proxy's whole output (banner, log lines, a panic's message) in a file
//! of bounded size. Once it grows past `--log-max-size` it becomes `PATH.1`, replacing the
//! previous one, and a fresh file starts: a proxy left running for months in the
//! background keeps at most two files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

/// How often the size is checked: a stat per second costs nothing, and a second of log
/// lines (refusals are summarised, tunnels logged only with -v) is a small overshoot.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The default bound of one file.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;

pub struct LogFile {
    path: PathBuf,
    old: PathBuf,
    max: u64,
}

impl LogFile {
    /// Opens `path` for appending and makes it this process's stdout and stderr, so even
    /// output that bypasses the logger lands there.
    pub fn open(path: &Path, max: u64) -> Result<LogFile> {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        let log = LogFile {
            path: path.to_path_buf(),
            old: PathBuf::from(old),
            max,
        };
        log.redirect()?;
        Ok(log)
    }

    fn redirect(&self) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        // Buffered output belongs to the file it was written for.
        let _ = std::io::stdout().flush();
        nix::unistd::dup2_stdout(&file)
            .and_then(|()| nix::unistd::dup2_stderr(&file))
            .with_context(|| format!("cannot send the output to {}", self.path.display()))
    }

    /// Moves the file aside and starts a new one when it has grown past the bound; true
    /// when it did.
    pub fn rotate_if_full(&self) -> Result<bool> {
        let size = nix::sys::stat::fstat(std::io::stderr())
            .with_context(|| format!("cannot read the size of {}", self.path.display()))?
            .st_size;
        if u64::try_from(size).unwrap_or(0) < self.max {
            return Ok(false);
        }
        std::fs::rename(&self.path, &self.old).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.path.display(),
                self.old.display()
            )
        })?;
        self.redirect()?;
        Ok(true)
    }

    /// Checks the size every second, for the life of the process.
    pub async fn keep_rotating(self) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match self.rotate_if_full() {
                Ok(rotated) => {
                    failing = false;
                    if rotated {
                        info!("earlier lines are in {}", self.old.display());
                    }
                }
                Err(e) => {
                    // Said once, not every second.
                    if !failing {
                        warn!("{e:#}; the log keeps growing");
                    }
                    failing = true;
                }
            }
        }
    }
}

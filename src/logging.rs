//! Logging via `tracing`: warnings and kinit's info lines by default, `-v` for debug
//! details, `-vv` for everything; `RUST_LOG` overrides.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

pub fn init(verbose: u8) {
    // fast-socks5 reports each misbehaving SOCKS client as an error (kinit logs those
    // itself, at debug level) and logs passwords at debug level: keep both out.
    let default = match verbose {
        0 => "warn,kinit=info,fast_socks5=off,kube_client=off,kube_runtime=off",
        1 => "warn,kinit=debug,fast_socks5=off",
        _ => "debug,kinit=trace,fast_socks5=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ProgressWriter)
        .with_target(verbose > 1)
        .without_time()
        // Colour codes only for a terminal, not in logs and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Writes log lines through the progress display so spinners stay intact.
struct ProgressWriter;

impl<'a> MakeWriter<'a> for ProgressWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::new())
    }
}

/// Buffers one event and prints it whole when dropped.
struct LineWriter(Vec<u8>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let line = text.trim_end_matches('\n');
        if !line.is_empty() {
            crate::progress::println(line);
        }
    }
}

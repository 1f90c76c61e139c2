//! The `kinit` command: parse flags, set up logging, run, and print any error for humans.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    kinit::tls::install_crypto_provider();
    let cli = kinit::cli::Cli::parse();
    kinit::logging::init(cli.verbose);
    // Joining another mount namespace needs a single-threaded process: before the runtime.
    if matches!(cli.command, kinit::cli::Command::Boot)
        && let Err(err) = kinit::host::enter_host_mount_namespace()
    {
        return kinit::report(&err);
    }
    let runtime = match runtime_for(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            return kinit::report(
                &anyhow::Error::new(err).context("cannot start the async runtime"),
            );
        }
    };
    match runtime.block_on(kinit::commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => kinit::report(&err),
    }
}

/// `kinit socks` waits on sockets and moves tunnel bytes with splice(2) in the kernel: one
/// thread serves it best. On the multi-threaded runtime each client's connection took 10
/// context switches and 5.6 futex calls (worker threads waking each other) against 5.5
/// and none here, and its set-up latency was 50 µs slower at the median, 110 µs at p99
/// (`scripts/bench.sh`). Every other command keeps the multi-threaded runtime.
fn runtime_for(command: &kinit::cli::Command) -> tokio::runtime::Builder {
    match command {
        kinit::cli::Command::Socks(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
}

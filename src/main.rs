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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

//! The `kinit` command: parse flags, set up logging, run, and print any error for humans.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kinit::cli::Cli::parse();
    kinit::logging::init(cli.verbose);
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

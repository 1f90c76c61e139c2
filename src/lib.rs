//! kinit: one command to a real single-host Kubernetes cluster on Docker.
//!
//! `kinit up` is an ordered list of idempotent steps (see [`steps`]) and `kinit down` its
//! counterpart ([`teardown`]); everything that talks to Docker sits in [`docker`],
//! everything that talks to the Kubernetes API in [`kubernetes`], everything that writes
//! files in [`fs`], what kinit changes on the host outside its state directory in [`host`]
//! and [`cgroup`], the PKI in [`pki`] and kubeconfig files in [`kubeconfig`]; waits with a
//! time limit go through [`wait`]; the `kinit socks` proxy is [`socks`]. The CLI
//! ([`cli`], [`commands`]) only parses flags and calls into these.

pub mod addons;
pub mod bundle;
pub mod cgroup;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod components;
pub mod config;
pub mod crash;
pub mod docker;
pub mod download;
pub mod examples;
pub mod fs;
pub mod health;
pub mod host;
pub mod join;
pub mod kubeconfig;
pub mod kubernetes;
pub mod layout;
pub mod logging;
pub mod manifests;
pub mod net;
pub mod node_image;
pub mod pki;
pub mod progress;
pub mod release;
pub mod runtime_proxy;
pub mod service_lb;
pub mod socks;
pub mod steps;
pub mod teardown;
pub mod tls;
pub mod versions;
pub mod wait;

use std::process::ExitCode;

/// Prints an error chain on one line, the way every kinit failure reaches the user. A
/// closed standard output (`kinit images list | head`) is the reader having had enough,
/// as for any Unix tool: no message, and success.
pub fn report(err: &anyhow::Error) -> ExitCode {
    progress::clear();
    if err.chain().any(|e| {
        e.downcast_ref::<progress::StdoutError>()
            .is_some_and(progress::StdoutError::is_closed_pipe)
    }) {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

//! `kinit certs --out DIR`: the whole PKI and kubeconfigs, and nothing else.

use anyhow::Result;

use crate::cli::CertsArgs;
use crate::cluster::Settings;
use crate::{fs, pki};

pub fn run(args: &CertsArgs) -> Result<()> {
    let settings = Settings::from_args(&args.cluster)?;
    fs::check_writable(&args.out)?;
    let report = pki::ensure(&args.out, &settings)?;
    println!(
        "Certificates for {} ({}) in {}: {report}.",
        settings.hostname,
        settings.node_ip,
        args.out.display()
    );
    Ok(())
}

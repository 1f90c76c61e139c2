//! The exceptions to the LAN guard (KINIT-PREROUTING, made by the node container's
//! entrypoint): the other nodes' addresses and pod ranges, which may send to this host's
//! pods. kinit-boot keeps them equal to what the cluster's Nodes say
//! (src/commands/boot.rs). They are RETURN rules at the top of KINIT-PREROUTING itself,
//! tagged with [`COMMENT`]: a RETURN in a chain of their own would return into the guard's
//! drops.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;

pub const CHAIN: &str = "KINIT-PREROUTING";
pub const COMMENT: &str = "kinit: another node";

/// The tagged sources among `iptables -S` lines of the chain.
pub fn sources_in(listing: &str) -> BTreeSet<IpNet> {
    listing
        .lines()
        .filter(|l| l.starts_with(&format!("-A {CHAIN} ")) && l.contains(&format!("\"{COMMENT}\"")))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "-s")?;
            words.next()?.parse().ok()
        })
        .collect()
}

/// The `iptables-restore --noflush` input that turns `current` into `wanted`, in one
/// commit; None when they are the same.
pub fn restore_input(current: &BTreeSet<IpNet>, wanted: &BTreeSet<IpNet>) -> Option<String> {
    if current == wanted {
        return None;
    }
    let rule = |source: &IpNet| format!("-s {source} -m comment --comment \"{COMMENT}\" -j RETURN");
    let mut text = String::from("*mangle\n");
    for gone in current.difference(wanted) {
        text.push_str(&format!("-D {CHAIN} {}\n", rule(gone)));
    }
    for new in wanted.difference(current) {
        text.push_str(&format!("-I {CHAIN} 1 {}\n", rule(new)));
    }
    text.push_str("COMMIT\n");
    Some(text)
}

/// Makes the tagged rules exactly one RETURN per IPv4 source. IPv6 sources are left out:
/// the guard's pod range is IPv4. Returns whether anything changed.
pub fn sync(sources: &[IpNet]) -> Result<bool> {
    let wanted: BTreeSet<IpNet> = sources
        .iter()
        .copied()
        .filter(|s| matches!(s, IpNet::V4(_)))
        .collect();
    let listing = Command::new("iptables")
        .args(["-w", "-t", "mangle", "-S", CHAIN])
        .output()
        .context("cannot run iptables")?;
    if !listing.status.success() {
        bail!(
            "cannot list {CHAIN}: {}",
            String::from_utf8_lossy(&listing.stderr).trim()
        );
    }
    let current = sources_in(&String::from_utf8_lossy(&listing.stdout));
    let Some(input) = restore_input(&current, &wanted) else {
        return Ok(false);
    };
    let mut child = Command::new("iptables-restore")
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run iptables-restore")?;
    child
        .stdin
        .take()
        .context("iptables-restore has no stdin")?
        .write_all(input.as_bytes())
        .context("cannot write to iptables-restore")?;
    let out = child
        .wait_with_output()
        .context("iptables-restore did not finish")?;
    if !out.status.success() {
        bail!(
            "iptables-restore failed on {CHAIN}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<IpNet> {
        items.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn only_the_tagged_rules_are_ours() {
        let listing = "-N KINIT-PREROUTING\n\
            -A KINIT-PREROUTING -s 172.31.0.11/32 -m comment --comment \"kinit: another node\" -j RETURN\n\
            -A KINIT-PREROUTING -s 10.0.0.9/32 -j RETURN\n\
            -A KINIT-PREROUTING ! -i cni0 -d 10.244.0.0/16 -j DROP\n";
        assert_eq!(sources_in(listing), set(&["172.31.0.11/32"]));
    }

    #[test]
    fn the_difference_goes_in_one_commit_ahead_of_the_drops() {
        let current = set(&["172.31.0.11/32", "10.244.1.0/24"]);
        assert_eq!(restore_input(&current, &current), None);
        let wanted = set(&["172.31.0.12/32", "10.244.1.0/24"]);
        assert_eq!(
            restore_input(&current, &wanted).unwrap(),
            "*mangle\n\
             -D KINIT-PREROUTING -s 172.31.0.11/32 -m comment --comment \"kinit: another node\" -j RETURN\n\
             -I KINIT-PREROUTING 1 -s 172.31.0.12/32 -m comment --comment \"kinit: another node\" -j RETURN\n\
             COMMIT\n"
        );
    }
}

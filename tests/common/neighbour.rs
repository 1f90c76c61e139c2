//! A network namespace standing in for another machine on the host's network (the
//! machine hosting a Vagrant box): it reaches the host over a veth pair and routes the
//! pod and Service ranges through it.

use std::process::Output;

use super::{run, run_ok};

/// A network namespace on a veth pair stands in for a neighbour that routes the pod and
/// Service ranges through this host; removed when dropped.
pub struct Neighbour;

pub const NS: &str = "kinit-lan";
pub const HOST_SIDE: &str = "198.51.100.1";

impl Neighbour {
    pub fn new() -> Self {
        let _ = run(&["ip", "netns", "delete", NS]);
        let _ = run(&["ip", "link", "delete", "kinit-lan0"]);
        run_ok(&["ip", "netns", "add", NS]);
        let neighbour = Neighbour;
        run_ok(&[
            "ip",
            "link",
            "add",
            "kinit-lan0",
            "type",
            "veth",
            "peer",
            "name",
            "kinit-lan1",
        ]);
        run_ok(&["ip", "link", "set", "kinit-lan1", "netns", NS]);
        run_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_SIDE}/30"),
            "dev",
            "kinit-lan0",
        ]);
        run_ok(&["ip", "link", "set", "kinit-lan0", "up"]);
        for args in [
            vec!["addr", "add", "198.51.100.2/30", "dev", "kinit-lan1"],
            vec!["link", "set", "kinit-lan1", "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "10.244.0.0/16", "via", HOST_SIDE],
            vec!["route", "add", "10.96.0.0/12", "via", HOST_SIDE],
        ] {
            let mut full = vec!["ip", "netns", "exec", NS, "ip"];
            full.extend(args);
            run_ok(&full);
        }
        neighbour
    }

    /// Routes `ip` (the node's address) through the host too.
    pub fn route_to(&self, ip: &str) {
        run_ok(&[
            "ip", "netns", "exec", NS, "ip", "route", "add", ip, "via", HOST_SIDE,
        ]);
    }

    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", NS, program];
        full.extend(args);
        run(&full)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "delete", NS]);
        let _ = run(&["ip", "link", "delete", "kinit-lan0"]);
    }
}

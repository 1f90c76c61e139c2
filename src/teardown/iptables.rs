//! kinit's rules and chains in the host's iptables, told apart from every other tool's and
//! deleted by specification.
//!
//! The host's firewall is shared with Docker, other CNI networks, other clusters and the
//! administrator, so nothing is chosen by a name prefix alone:
//! - per-pod rules carry the CNI network's name in their comment (`name: "kinit" id: ...`,
//!   `dnat name: "kinit" ...`), and the per-pod chains they jump to are named from a hash
//!   of that network and the container;
//! - kinit's own chain is [`KINIT_CHAINS`];
//! - kube-proxy's, the kubelet's and kube-router's chains have fixed names or a fixed
//!   prefix and a hash ([`is_kube_chain`]), and kube-router's pod egress rule matches its
//!   own ipset ([`is_kube_router_rule`]); they are taken only when the caller established
//!   that kinit's cluster made them;
//! - portmap's chains are shared by every CNI network that maps ports, and are taken only
//!   when no other network has a port mapped.
//!
//! Everything is read from one `iptables-save` and removed in one `iptables-restore
//! --noflush` per table, which holds the xtables lock and commits the table atomically.
//! Rules go by their specification (`-D chain <spec>`), never by number, so a rule another
//! tool inserts meanwhile cannot shift what is deleted; if one of ours changed meanwhile
//! the commit fails as a whole and the round is repeated from a fresh listing.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::components::master::NETWORK;
use crate::fs;

/// The chains kinit's node container makes: one in FORWARD so the pod bridge gets
/// through Docker's DROP, one in mangle PREROUTING that drops traffic for the pod and
/// Service ranges arriving from outside (but from the other nodes), and one in INPUT that
/// keeps kube-router's BGP admin port to this host.
pub const KINIT_CHAINS: [&str; 3] = ["KINIT-FORWARD", "KINIT-PREROUTING", "KINIT-INPUT"];

/// portmap's chains, shared by every CNI network on the host that maps a port.
const PORTMAP_CHAINS: [&str; 3] = [
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// The chains kube-proxy (iptables mode), the kubelet and kube-router's firewall create
/// under fixed names; kube-proxy's are the list `kube-proxy --cleanup` works from, with
/// those of older releases.
const KUBE_FIXED_CHAINS: [&str; 19] = [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-MARK-MASQ",
    "KUBE-MARK-DROP",
    "KUBE-FORWARD",
    "KUBE-PROXY-FIREWALL",
    "KUBE-FIREWALL",
    "KUBE-PROXY-CANARY",
    "KUBE-KUBELET-CANARY",
    "KUBE-IPTABLES-HINT",
    "KUBE-LOAD-BALANCER",
    "KUBE-NODE-PORT",
    "KUBE-ROUTER-INPUT",
    "KUBE-ROUTER-FORWARD",
    "KUBE-ROUTER-OUTPUT",
    "KUBE-NWPLCY-DEFAULT",
    "KUBE-NWPLCY-COMMON",
];

/// kube-proxy's per-Service and per-endpoint chains and kube-router's per-pod and
/// per-policy ones: a prefix and 16 characters of a base32 hash.
const KUBE_HASHED_PREFIXES: [&str; 8] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
    "KUBE-XLB-",
    "KUBE-POD-FW-",
    "KUBE-NWPLCY-",
];

/// The ipsets kube-router's pod egress masquerade matches (in nat POSTROUTING, with no
/// comment and no chain of its own).
const KUBE_ROUTER_SETS: [&str; 2] = ["kube-router-pod-subnets", "kube-router-node-ips"];

/// What to take out of the host's iptables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Also kinit's own chain and portmap's shared chains, not only the per-pod ones.
    pub purge: bool,
    /// Also kube-proxy's, the kubelet's and kube-router's chains and rules: the caller
    /// established that kinit's cluster made them.
    pub kube: bool,
}

/// One rule as `iptables-save` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    chain: String,
    /// The rule's specification: everything after `-A <chain> `.
    spec: String,
    /// The chain it jumps or goes to (`-j`, `-g`), if any.
    target: Option<String>,
    comment: Option<String>,
}

/// One table of an `iptables-save` listing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    name: String,
    /// User-defined chains (built-in ones have a policy and cannot be deleted).
    chains: Vec<String>,
    rules: Vec<Rule>,
}

/// The deletions for one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub table: String,
    /// Rules in chains that stay, as `chain spec`.
    pub rules: Vec<String>,
    /// Chains flushed, then deleted.
    pub chains: Vec<String>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.chains.is_empty()
    }
}

/// What was removed from one iptables family.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub rules: usize,
    pub chains: usize,
}

/// Splits an `iptables-save` line into words: words are separated by spaces, and a word
/// with spaces or quotes is in double quotes with `\"` and `\\` escaped.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return words;
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            word.push(escaped);
                        }
                    }
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// Parses an `iptables-save` listing of any number of tables.
fn parse(save: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut current: Option<Table> = None;
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = Some(Table {
                name: name.trim().to_string(),
                ..Default::default()
            });
        } else if line.trim() == "COMMIT" {
            tables.extend(current.take());
        } else if let Some(table) = current.as_mut() {
            if let Some(decl) = line.strip_prefix(':') {
                let mut parts = decl.split_whitespace();
                if let (Some(chain), Some("-")) = (parts.next(), parts.next()) {
                    table.chains.push(chain.to_string());
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let Some((chain, spec)) = rest.split_once(' ') else {
                    continue;
                };
                // Walked in order, so a comment reading "-j X" stays a comment.
                let (mut target, mut comment) = (None, None);
                let mut w = words(spec).into_iter();
                while let Some(word) = w.next() {
                    match word.as_str() {
                        "-j" | "--jump" | "-g" | "--goto" if target.is_none() => target = w.next(),
                        "--comment" => comment = w.next(),
                        _ => {}
                    }
                }
                table.rules.push(Rule {
                    chain: chain.to_string(),
                    spec: spec.to_string(),
                    target,
                    comment,
                });
            }
        }
    }
    tables
}

/// Whether a chain is one kube-proxy or the kubelet makes. A chain another tool named
/// `KUBE-something` is not.
pub fn is_kube_chain(chain: &str) -> bool {
    KUBE_FIXED_CHAINS.contains(&chain)
        || KUBE_HASHED_PREFIXES.iter().any(|prefix| {
            chain.strip_prefix(prefix).is_some_and(|hash| {
                hash.len() == 16
                    && hash
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
            })
        })
}

/// The comments of the ACCEPT rules kube-router's router puts in FORWARD (its
/// `enableForwarding`), with no chain of their own.
const KUBE_ROUTER_FORWARD_COMMENTS: [&str; 4] = [
    "allow outbound node port traffic on node interface with which node ip is associated",
    "allow inbound traffic to pods",
    "allow outbound traffic from pods",
    "allow local traffic to pods",
];

/// Whether kube-router wrote this rule in a built-in chain: its pod egress masquerade
/// (matching only kube-router's sets), or one of its FORWARD accepts.
fn is_kube_router_rule(rule: &Rule) -> bool {
    if rule.target.as_deref() == Some("ACCEPT")
        && rule
            .comment
            .as_deref()
            .is_some_and(|c| KUBE_ROUTER_FORWARD_COMMENTS.contains(&c))
    {
        return true;
    }
    let words = words(&rule.spec);
    let sets: Vec<&str> = words
        .windows(2)
        .filter(|w| w[0] == "--match-set")
        .map(|w| w[1].as_str())
        .collect();
    rule.target.as_deref() == Some("MASQUERADE")
        && !sets.is_empty()
        && sets.iter().all(|s| KUBE_ROUTER_SETS.contains(s))
}

/// Whether the CNI plugins wrote this rule for a pod of kinit's network: the bridge
/// plugin's masquerade rules and portmap's DNAT rules name the network in their comment.
fn is_kinit_pod_rule(rule: &Rule) -> bool {
    let tag = format!("name: \"{NETWORK}\" id: \"");
    rule.comment.as_deref().is_some_and(|c| {
        c.strip_prefix("dnat ")
            .or_else(|| c.strip_prefix("snat "))
            .unwrap_or(c)
            .starts_with(&tag)
    })
}

/// What to delete from one table under `scope`.
fn plan(table: &Table, scope: Scope) -> Plan {
    let user_chain = |c: &str| table.chains.iter().any(|t| t == c);
    let mut owned: BTreeSet<String> = BTreeSet::new();
    for rule in table.rules.iter().filter(|r| is_kinit_pod_rule(r)) {
        // The chain a pod's rule jumps to is named from kinit's network and the pod.
        if let Some(target) = &rule.target
            && target.starts_with("CNI-")
            && !PORTMAP_CHAINS.contains(&target.as_str())
            && user_chain(target)
        {
            owned.insert(target.clone());
        }
    }
    for chain in &table.chains {
        let ours = (scope.purge && KINIT_CHAINS.contains(&chain.as_str()))
            || (scope.kube && is_kube_chain(chain));
        if ours {
            owned.insert(chain.clone());
        }
    }
    // portmap makes its chains again on its next use, so they may go once no other
    // network has a port mapped in them.
    let portmap_only_ours = table
        .rules
        .iter()
        .filter(|r| r.chain == PORTMAP_CHAINS[0])
        .all(is_kinit_pod_rule);
    if scope.purge && portmap_only_ours {
        owned.extend(
            PORTMAP_CHAINS
                .iter()
                .filter(|c| user_chain(c))
                .map(|c| c.to_string()),
        );
    }

    // A rule outside the chains being deleted goes when it is a pod rule of kinit's, or a
    // hook in a built-in chain into one of ours. Any other rule that still jumps into a
    // chain keeps that chain (and what it jumps to) alive: it is not ours to cut.
    let deleted = |rule: &Rule, owned: &BTreeSet<String>| {
        owned.contains(&rule.chain)
            || is_kinit_pod_rule(rule)
            || (scope.kube && !user_chain(&rule.chain) && is_kube_router_rule(rule))
            || (!user_chain(&rule.chain) && rule.target.as_ref().is_some_and(|t| owned.contains(t)))
    };
    loop {
        let kept_targets: BTreeSet<String> = table
            .rules
            .iter()
            .filter(|r| !deleted(r, &owned))
            .filter_map(|r| r.target.clone())
            .collect();
        let before = owned.len();
        owned.retain(|c| !kept_targets.contains(c));
        if owned.len() == before {
            break;
        }
    }
    Plan {
        table: table.name.clone(),
        rules: table
            .rules
            .iter()
            .filter(|r| !owned.contains(&r.chain) && deleted(r, &owned))
            .map(|r| format!("{} {}", r.chain, r.spec))
            .collect(),
        chains: owned.into_iter().collect(),
    }
}

/// The `iptables-restore --noflush` input carrying out `plans`.
fn restore_input(plans: &[Plan]) -> String {
    let mut text = String::new();
    for plan in plans.iter().filter(|p| !p.is_empty()) {
        text.push_str(&format!("*{}\n", plan.table));
        for rule in &plan.rules {
            text.push_str(&format!("-D {rule}\n"));
        }
        for chain in &plan.chains {
            text.push_str(&format!("-F {chain}\n"));
        }
        for chain in &plan.chains {
            text.push_str(&format!("-X {chain}\n"));
        }
        text.push_str("COMMIT\n");
    }
    text
}

/// Rounds before giving up when other tools keep changing the same rules.
const ATTEMPTS: usize = 5;

/// Removes what `scope` selects from one family's tables, with the host's `<cmd>-save` and
/// `<cmd>-restore` (`cmd` is `iptables` or `ip6tables`). `Ok(None)` when the host lacks
/// the tools.
pub fn clean(cmd: &str, scope: Scope) -> Result<Option<Removed>> {
    let (Some(save), Some(restore)) = (
        fs::system_tool(&format!("{cmd}-save")),
        fs::system_tool(&format!("{cmd}-restore")),
    ) else {
        return Ok(None);
    };
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let listing = Command::new(&save)
            .env("PATH", fs::SYSTEM_PATH)
            .output()
            .with_context(|| format!("cannot run {}", save.display()))?;
        if !listing.status.success() {
            bail!(
                "{} failed: {}",
                save.display(),
                String::from_utf8_lossy(&listing.stderr).trim()
            );
        }
        let tables = parse(&String::from_utf8_lossy(&listing.stdout));
        let plans: Vec<Plan> = tables.iter().map(|t| plan(t, scope)).collect();
        let removed = Removed {
            rules: plans.iter().map(|p| p.rules.len()).sum(),
            chains: plans.iter().map(|p| p.chains.len()).sum(),
        };
        if removed == Removed::default() {
            return Ok(Some(removed));
        }
        let mut child = Command::new(&restore)
            .env("PATH", fs::SYSTEM_PATH)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", restore.display()))?;
        child
            .stdin
            .take()
            .context("no pipe to iptables-restore")?
            .write_all(restore_input(&plans).as_bytes())
            .with_context(|| format!("cannot write to {}", restore.display()))?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("cannot run {}", restore.display()))?;
        if out.status.success() {
            return Ok(Some(removed));
        }
        last_error = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    bail!(
        "cannot remove kinit's {cmd} rules: another tool kept changing them ({ATTEMPTS} attempts); last error: {last_error}"
    )
}

#[cfg(test)]
mod tests;

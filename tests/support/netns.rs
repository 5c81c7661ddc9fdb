//! Linux network namespaces for the fault suite (`tests/faults.rs`): each node in a namespace
//! of its own, joined by a veth pair to one bridge in the root namespace, where the test
//! process stays and reaches every node through the bridge (its address there is the one
//! clients come from). Faults are nftables rules inside a node's namespace: drops to and from
//! chosen addresses (partitions) and random drops (packet loss).
//!
//! Names carry the test process's pid (`pf<pid>-<k>-n<id>`, bridge `pf<pid>b<k>`, veth
//! `pf<pid>v<k>n<id>`), so a run finds and removes what a killed earlier run left behind (its
//! pid is gone) and never touches anything else. A [`Net`] removes its namespaces (and with
//! them their nft tables and veths) and its bridge when it drops, panics included; the nodes
//! die with the test process (parent-death signal), so nothing outlives it.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); [`Net::unavailable`] says what is
//! missing so the suite can skip. `tc netem` is not used: the kernel this suite was written on
//! has no `sch_netem`, so loss is an nft rule and delay a userspace proxy
//! (`tests/faults/jitter.rs`).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The table every fault rule lives in, inside a node's namespace.
const TABLE: &str = "parley_fault";

/// Port every node listens on inside its namespace.
pub const NODE_PORT: u16 = 7000;

/// One node's namespace.
#[derive(Clone, Debug)]
pub struct NsNode {
    pub ns: String,
    pub ip: String,
    veth: String,
}

pub struct Net {
    prefix: String,
    bridge: String,
    /// `10.a.b`: the bridge is `.1`, node `id` is `.(10 + id)`.
    subnet: String,
    pub nodes: BTreeMap<u64, NsNode>,
}

/// Runs a command; `Err` with its stderr when it fails.
fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn must(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in a name made by this module (`pf<pid>...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let digits: String = name.strip_prefix("pf")?.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Net {
    /// Why the suite cannot run here, or `None` when it can: root, `ip netns` that works, `nft`.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root".into());
        }
        let probe = format!("pf{}-probe", std::process::id());
        if let Err(e) = run(&["ip", "netns", "add", &probe]) {
            return Some(format!("ip netns does not work: {e}"));
        }
        let nft = run(&["ip", "netns", "exec", &probe, "nft", "list", "ruleset"]);
        let _ = run(&["ip", "netns", "del", &probe]);
        nft.err().map(|e| format!("nft does not work in a namespace: {e}"))
    }

    /// Removes namespaces and links that an earlier run (a pid that is gone) left behind.
    pub fn remove_stale() {
        let ours = std::process::id();
        let stale = |name: &str| owner_pid(name).is_some_and(|pid| pid != ours && !pid_alive(pid));
        for line in run(&["ip", "netns", "list"]).unwrap_or_default().lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if stale(name) {
                eprintln!("faults: removing stale namespace {name}");
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
        for line in run(&["ip", "-o", "link", "show"]).unwrap_or_default().lines() {
            // "7: pf123b0: <...>" or "9: pf123v0n1@if8: <...>"
            let name = line.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("");
            if stale(name) {
                eprintln!("faults: removing stale link {name}");
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }

    /// A bridge and one namespace per id, every node reachable from the root namespace.
    pub fn create(ids: &[u64]) -> Net {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Net::remove_stale();
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(k < 100, "too many nets in one run");
        // 10.200-249.k: per process and per net, away from the usual 10.0/16 of containers.
        let subnet = format!("10.{}.{k}", 200 + pid % 50);
        let mut net =
            Net { prefix: format!("pf{pid}-{k}"), bridge: format!("pf{pid}b{k}"), subnet, nodes: BTreeMap::new() };
        let _ = run(&["ip", "link", "del", &net.bridge]);
        must(&["ip", "link", "add", &net.bridge, "type", "bridge"]);
        must(&["ip", "addr", "add", &format!("{}/24", net.host_ip()), "dev", &net.bridge]);
        must(&["ip", "link", "set", &net.bridge, "up"]);
        for id in ids {
            net.add_node(*id);
        }
        net
    }

    /// The root namespace's address on the bridge: where the test's clients come from.
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// Adds node `id`'s namespace (for nodes that join later).
    pub fn add_node(&mut self, id: u64) -> NsNode {
        assert!((1..=9).contains(&id), "node ids 1..=9 only (interface names are short)");
        let pid = std::process::id();
        let k = self.prefix.rsplit('-').next().unwrap_or("0").to_string();
        let node = NsNode {
            ns: format!("{}-n{id}", self.prefix),
            ip: format!("{}.{}", self.subnet, 10 + id),
            veth: format!("pf{pid}v{k}n{id}"),
        };
        let _ = run(&["ip", "netns", "del", &node.ns]);
        must(&["ip", "netns", "add", &node.ns]);
        // Known from here on, so that a failure below still removes it on drop.
        self.nodes.insert(id, node.clone());
        let inner = format!("{}c", node.veth);
        must(&["ip", "link", "add", &node.veth, "type", "veth", "peer", "name", &inner]);
        must(&["ip", "link", "set", &node.veth, "master", &self.bridge, "up"]);
        must(&["ip", "link", "set", &inner, "netns", &node.ns]);
        let ns = node.ns.as_str();
        must(&["ip", "-n", ns, "link", "set", &inner, "name", "eth0"]);
        must(&["ip", "-n", ns, "addr", "add", &format!("{}/24", node.ip), "dev", "eth0"]);
        must(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        // The fault table, empty: input and output chains that accept by default.
        let nft = format!(
            "add table inet {TABLE}; \
             add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}; \
             add chain inet {TABLE} output {{ type filter hook output priority 0; policy accept; }}"
        );
        must(&["ip", "netns", "exec", ns, "nft", &nft]);
        node
    }

    pub fn ns(&self, id: u64) -> &str {
        &self.nodes[&id].ns
    }

    pub fn ip(&self, id: u64) -> String {
        self.nodes[&id].ip.clone()
    }

    /// Node `id`'s listen address.
    pub fn addr(&self, id: u64) -> String {
        format!("{}:{NODE_PORT}", self.ip(id))
    }

    /// The command prefix that runs a program in node `id`'s namespace (`ip netns exec` execs
    /// it: the child's pid is the program's, so signals reach it).
    pub fn exec_prefix(&self, id: u64) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(id).to_string()]
    }

    fn nft(&self, id: u64, rule: &str) {
        must(&["ip", "netns", "exec", self.ns(id), "nft", rule]);
    }

    /// Drops every packet between node `id` and each of `ips` (both ways, in `id`'s namespace).
    pub fn cut(&self, id: u64, ips: &[String]) {
        if ips.is_empty() {
            return;
        }
        let set = ips.join(", ");
        self.nft(id, &format!("add rule inet {TABLE} input ip saddr {{ {set} }} drop"));
        self.nft(id, &format!("add rule inet {TABLE} output ip daddr {{ {set} }} drop"));
    }

    /// Node `id` loses `percent`% of its packets at random: every packet it receives, and every
    /// packet it sends to the root namespace (clients), so each packet on any path is dropped
    /// once with that probability.
    pub fn loss(&self, id: u64, percent: u32) {
        self.nft(id, &format!("add rule inet {TABLE} input numgen random mod 100 < {percent} drop"));
        self.nft(
            id,
            &format!("add rule inet {TABLE} output ip daddr {} numgen random mod 100 < {percent} drop", self.host_ip()),
        );
    }

    /// Removes every fault rule of node `id`.
    pub fn heal(&self, id: u64) {
        self.nft(id, &format!("flush table inet {TABLE}"));
    }

    pub fn heal_all(&self) {
        for id in self.nodes.keys() {
            self.heal(*id);
        }
    }

    /// The rules in force in node `id`'s namespace (for failure messages).
    pub fn rules(&self, id: u64) -> String {
        run(&["ip", "netns", "exec", self.ns(id), "nft", "list", "table", "inet", TABLE]).unwrap_or_else(|e| e)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for node in self.nodes.values() {
            if let Err(e) = run(&["ip", "netns", "del", &node.ns]) {
                eprintln!("faults: {e}");
            }
            // Deleting the namespace deletes the veth pair; this is for a half-made node.
            let _ = run(&["ip", "link", "del", &node.veth]);
        }
        if let Err(e) = run(&["ip", "link", "del", &self.bridge]) {
            eprintln!("faults: {e}");
        }
    }
}

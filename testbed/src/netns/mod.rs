//! Network namespaces for the testbed's netns mode: every host is a namespace of its own, wired to
//! one Linux bridge that lives in a "net" namespace the testbed also creates. Nothing at all is
//! configured in the root namespace (no address, no link, no route), so parallel clusters and the
//! machine's own network never see each other.
//!
//! ```text
//!   root namespace: the test process, with no address or link added
//!
//!   kvstb<N>-net   bridge kvsbr<N> 10.77.N.254/24 ── the test's clients dial from here
//!     ├─ p-coord ══ veth ══ eth0 10.77.N.1   kvstb<N>-coord   kvs-coordinator
//!     ├─ p-a     ══ veth ══ eth0 10.77.N.11  kvstb<N>-a       kvs-agent, engines (127.0.0.1), sshd
//!     ├─ p-b     ══ veth ══ eth0 10.77.N.12  kvstb<N>-b       …
//!     └─ p-c     ══ veth ══ eth0 10.77.N.13  kvstb<N>-c       …
//! ```
//!
//! N is the cluster's address slot ([`crate::slot`]), so the names of parallel clusters differ.
//! Every veth is created directly between two of our namespaces (`ip -n NET link add … peer …
//! netns HOST`), so it never exists in the root namespace either.
//!
//! How the test reaches the services: the test's Rust clients (admin gRPC, redis over TLS) dial
//! from the net namespace with sockets created there ([`dial`]: a short-lived thread enters the
//! namespace with `setns`, creates and connects the socket, and hands it back; a socket stays in the
//! namespace it was created in, whichever thread later uses it). Command-line clients (redis-cli,
//! ssh, kvs) run under `ip netns exec`. Certificates and URLs therefore stay exactly what the
//! coordinator and agents issue: no proxy and no name rewriting.
//!
//! Faults: cutting a host off sets its bridge port (`p-<host>`, on the switch side) down, which
//! silently drops every packet, as a dead link would; healing sets it up again. Killing a host kills
//! every process in its namespace (`ip netns pids`). Teardown kills every process in each namespace
//! by PID, then deletes the namespaces (their veths go with them). At start, leftovers of a crashed
//! earlier run with the `kvstb` prefix are swept, but only for slots no living process holds.

pub mod dial;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::process;
use crate::slot::Slot;

/// Prefix of every namespace the testbed creates (`kvstb<slot>-<member>`).
pub const PREFIX: &str = "kvstb";
/// First two octets of the private /24 used inside the namespaces: 10.77.<slot>.0/24.
const SUBNET: (u8, u8) = (10, 77);
/// Last octet of the bridge's own address in the net namespace (the test's vantage point).
const BRIDGE_OCTET: u8 = 254;
/// Where `ip netns add` mounts namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Why netns mode cannot run here, or `Ok` if it can (root, `ip`, a working `ip netns`).
pub fn available() -> std::result::Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not running as root".into());
    }
    if ip_binary().is_none() {
        return Err("`ip` (iproute2) not found".into());
    }
    ip(&["netns", "list"]).map_err(|err| format!("`ip netns list` fails: {err:#}"))?;
    Ok(())
}

/// The `ip` program (a full path when found, for `ip netns exec` launches).
pub fn ip_program() -> PathBuf {
    ip_binary().unwrap_or_else(|| PathBuf::from("ip"))
}

fn ip_binary() -> Option<PathBuf> {
    crate::binaries::find_in_path("ip").or_else(|| {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    })
}

/// Runs `ip ARGS…`; Ok(stdout) if it exited 0, else an error with its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    let binary = ip_binary().context("`ip` (iproute2) not found")?;
    let output = Command::new(&binary)
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} exited {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One namespace the testbed created, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `/run/netns/<name>`: what `setns` opens.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// PIDs of every process in the namespace (`ip netns pids`), never this test process.
    pub fn pids(&self) -> Vec<u32> {
        let me = std::process::id();
        ip(&["netns", "pids", &self.name])
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .filter(|&p| p != me)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// SIGKILL to every process in the namespace, by PID, until none is left (bounded rounds:
    /// a process may fork while we kill). Returns how many were killed.
    pub fn kill_all(&self) -> usize {
        let mut killed = 0;
        for _ in 0..5 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for &pid in &pids {
                process::signal(pid, Signal::SIGKILL);
            }
            killed += pids.len();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        killed
    }

    /// Kills what runs inside, then deletes the namespace (its veth ends go with it).
    fn destroy(&self) {
        self.kill_all();
        if let Err(err) = ip(&["netns", "delete", &self.name]) {
            tracing::warn!(netns = %self.name, "deleting the namespace: {err:#}");
        }
    }
}

/// A member of the network: a namespace with one veth into the bridge.
#[derive(Debug)]
struct Member {
    label: String,
    netns: Netns,
    /// The veth end in the net namespace, enslaved to the bridge: the "switch port".
    port: String,
    address: Ipv4Addr,
}

/// ARP resolution retried every 100 ms instead of the kernel's 1 s on `device` in namespace `ns`.
/// A cut is a switch port down; while it lasts, a peer's neighbour entry goes unresolved, and
/// after the heal the kernel sends its next ARP probe only at its retransmit timer, up to 1 s
/// later (measured: a TCP connect from the healed host took 0.5–1.0 s with the default, 4 ms
/// with this). That second is the network's own recovery, the same for every product on it; the
/// tests time KVS's (decision 0007: a fence lifts within a second of the heal).
fn fast_neighbour_retries(ns: &str, device: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/neigh/{device}/retrans_time_ms");
    ip(&[
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 100 > {path}"),
    ])?;
    Ok(())
}

/// The namespaces of one cluster and the bridge between them; everything is deleted on drop.
#[derive(Debug)]
pub struct Network {
    slot: u8,
    /// Holds the bridge; also where the test's clients dial from.
    net: Netns,
    members: Vec<Member>,
    torn_down: bool,
}

impl Network {
    /// Sweeps leftovers, then creates the net namespace with its bridge `kvsbr<slot>`.
    pub fn create(slot: &Slot) -> Result<Network> {
        sweep_leftovers(slot.index);
        let network = Network {
            slot: slot.index,
            net: Netns {
                name: format!("{PREFIX}{}-net", slot.index),
            },
            members: Vec::new(),
            torn_down: false,
        };
        // From here on a failure drops `network`, which deletes whatever was created.
        let (net, bridge) = (network.net.name.clone(), network.bridge());
        ip(&["netns", "add", &net])?;
        ip(&["-n", &net, "link", "set", "lo", "up"])?;
        ip(&["-n", &net, "link", "add", &bridge, "type", "bridge"])?;
        let cidr = format!("{}/24", network.address(BRIDGE_OCTET));
        ip(&["-n", &net, "addr", "add", &cidr, "dev", &bridge])?;
        ip(&["-n", &net, "link", "set", &bridge, "up"])?;
        fast_neighbour_retries(&net, &bridge)?;
        tracing::info!(netns = %net, bridge, subnet = %format!("{}/24", network.address(0)), "network created");
        Ok(network)
    }

    fn bridge(&self) -> String {
        format!("kvsbr{}", self.slot)
    }

    /// 10.77.<slot>.<last>.
    pub fn address(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET.0, SUBNET.1, self.slot, last)
    }

    /// The namespace the test's clients dial from (it holds the bridge).
    pub fn client(&self) -> &Netns {
        &self.net
    }

    /// Creates namespace `kvstb<slot>-<label>` with `eth0` = 10.77.<slot>.<last>/24 plugged into
    /// the bridge, and loopback up (engines listen on 127.0.0.1 there).
    pub fn add_member(&mut self, label: &str, last: u8) -> Result<Netns> {
        let netns = Netns {
            name: format!("{PREFIX}{}-{label}", self.slot),
        };
        let port = format!("p-{label}");
        let address = self.address(last);
        ip(&["netns", "add", &netns.name])?;
        self.members.push(Member {
            label: label.to_string(),
            netns: netns.clone(),
            port: port.clone(),
            address,
        });
        let (net, ns, bridge) = (&self.net.name, &netns.name, self.bridge());
        ip(&[
            "-n", net, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["-n", net, "link", "set", &port, "master", &bridge])?;
        ip(&["-n", net, "link", "set", &port, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let cidr = format!("{address}/24");
        ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        fast_neighbour_retries(ns, "eth0")?;
        tracing::info!(netns = %ns, %address, port, "namespace attached to the bridge");
        Ok(netns)
    }

    fn member(&self, label: &str) -> Result<&Member> {
        self.members
            .iter()
            .find(|m| m.label == label)
            .with_context(|| format!("no namespace member {label}"))
    }

    /// The namespace of member `label`.
    pub fn netns(&self, label: &str) -> Result<&Netns> {
        Ok(&self.member(label)?.netns)
    }

    /// The address of member `label`.
    pub fn member_address(&self, label: &str) -> Result<Ipv4Addr> {
        Ok(self.member(label)?.address)
    }

    /// Sets member `label`'s switch port down (cut off: packets are dropped, nothing is reset) or
    /// up (healed).
    pub fn set_link(&self, label: &str, up: bool) -> Result<()> {
        let member = self.member(label)?;
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.net.name, "link", "set", &member.port, state])?;
        tracing::info!(member = label, port = %member.port, state, "switch port set");
        Ok(())
    }

    /// Kills every process in every namespace, then deletes them all (idempotent).
    pub fn teardown(&mut self) {
        if std::mem::replace(&mut self.torn_down, true) {
            return;
        }
        for member in &self.members {
            member.netns.destroy();
        }
        self.net.destroy();
        tracing::info!(slot = self.slot, "network deleted");
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The testbed namespaces that exist now, as (name, slot).
fn existing() -> Vec<(String, u8)> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let rest = name.strip_prefix(PREFIX)?;
            let slot = rest.split('-').next()?.parse().ok()?;
            Some((name.to_string(), slot))
        })
        .collect()
}

/// Deletes leftover `kvstb*` namespaces of `own` slot (we hold its claim) and of every other slot
/// that no living process holds (claimed here for the duration of the sweep, so no cluster can
/// start on it meanwhile). Namespaces of running clusters are never touched.
pub fn sweep_leftovers(own: u8) {
    let mut found = existing();
    found.sort_by_key(|(_, slot)| *slot);
    let mut claim: Option<Slot> = None;
    for (name, slot) in found {
        if slot != own && claim.as_ref().is_none_or(|c| c.index != slot) {
            claim = match Slot::try_claim(slot) {
                Ok(Some(claimed)) => Some(claimed),
                _ => None,
            };
            if claim.is_none() {
                continue; // a living cluster holds that slot
            }
        }
        tracing::warn!(netns = %name, "deleting a leftover testbed namespace");
        Netns { name }.destroy();
    }
}

//! Preflight: can this node run knet? Each check is one line; a failed one says what to do.
//!
//! Kernel link types are tested for real by creating them in a network namespace made for the
//! probe and discarded with it (see [`crate::netns`]); the host's own namespace is only read.
//! Optional features (`dummy`, `wireguard`, IPVS, SCTP) are reported as warnings, never errors.

use std::fmt;

use knet_core::config::ClusterConfig;
use knet_core::paths::Paths;

mod cni;
mod kernel;
mod mountinfo;
mod vxlan;

pub use cni::check_cni_conf_dir;
pub use kernel::{check_bpf, check_cgroup2, check_root, probe_in_throwaway_netns};
pub use mountinfo::cgroup2_mount;
pub use vxlan::{KNET_LINK_PREFIX, check_vxlan_port, is_knet_link};

/// What a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckId {
    /// Running as root.
    Root,
    /// Network namespaces can be created.
    Netns,
    /// veth pairs.
    Veth,
    /// Linux bridges.
    Bridge,
    /// VXLAN links.
    Vxlan,
    /// nf_tables through the `nft` binary.
    NfTables,
    /// BTF and the bpf() syscall.
    Bpf,
    /// A mounted cgroup v2 hierarchy.
    Cgroup2,
    /// dummy links (optional).
    Dummy,
    /// WireGuard links (optional).
    Wireguard,
    /// IPVS (optional).
    Ipvs,
    /// SCTP sockets (optional).
    Sctp,
    /// No other CNI's config in the CNI conf dir.
    CniConfDir,
    /// The VXLAN port is free (or knet's own).
    VxlanPort,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Passed.
    Ok,
    /// An optional feature is missing; knet runs without it.
    Warning,
    /// A requirement is not met; bootstrap stops.
    Error,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub id: CheckId,
    /// How it came out.
    pub severity: Severity,
    /// What was found, or what to do.
    pub message: String,
}

/// All checks, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

/// Runs every check for a node with these paths and this cluster config.
pub fn preflight(paths: &Paths, config: &ClusterConfig) -> Report {
    let mut checks = vec![check_root()];
    checks.extend(probe_in_throwaway_netns());
    checks.push(check_bpf());
    checks.push(check_cgroup2());
    checks.push(check_cni_conf_dir(&paths.cni_conf_dir));
    checks.push(check_vxlan_port(config.network.vxlan_port));
    let report = Report { checks };
    for c in &report.checks {
        tracing::debug!(check = %c.id, severity = ?c.severity, message = %c.message, "preflight");
    }
    report
}

// === impl CheckId ===

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckId::Root => "root",
            CheckId::Netns => "netns",
            CheckId::Veth => "veth",
            CheckId::Bridge => "bridge",
            CheckId::Vxlan => "vxlan",
            CheckId::NfTables => "nf_tables",
            CheckId::Bpf => "bpf",
            CheckId::Cgroup2 => "cgroup2",
            CheckId::Dummy => "dummy",
            CheckId::Wireguard => "wireguard",
            CheckId::Ipvs => "ipvs",
            CheckId::Sctp => "sctp",
            CheckId::CniConfDir => "cni-conf-dir",
            CheckId::VxlanPort => "vxlan-port",
        })
    }
}

// === impl Check ===

impl Check {
    pub(crate) fn ok(id: CheckId, message: impl Into<String>) -> Check {
        Check {
            id,
            severity: Severity::Ok,
            message: message.into(),
        }
    }

    pub(crate) fn warning(id: CheckId, message: impl Into<String>) -> Check {
        Check {
            id,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    pub(crate) fn error(id: CheckId, message: impl Into<String>) -> Check {
        Check {
            id,
            severity: Severity::Error,
            message: message.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{tag}: {}: {}", self.id, self.message)
    }
}

// === impl Report ===

impl Report {
    /// Whether no check is an error.
    pub fn passed(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The failed checks.
    pub fn errors(&self) -> impl Iterator<Item = &Check> {
        self.with(Severity::Error)
    }

    /// The optional features found missing.
    pub fn warnings(&self) -> impl Iterator<Item = &Check> {
        self.with(Severity::Warning)
    }

    /// The result of one check, if it ran.
    pub fn get(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// One indented line per failed check.
    pub fn error_lines(&self) -> String {
        self.errors()
            .map(|c| format!("  - {}: {}", c.id, c.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn with(&self, severity: Severity) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.severity == severity)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |s| self.with(s).count();
        let (ok, warn, err) = (
            count(Severity::Ok),
            count(Severity::Warning),
            count(Severity::Error),
        );
        if err == 0 {
            write!(f, "preflight passed ({ok} ok, {warn} warnings)")?;
        } else {
            write!(f, "preflight failed ({err} errors, {warn} warnings)")?;
        }
        for c in self.checks.iter().filter(|c| c.severity != Severity::Ok) {
            write!(f, "\n  {c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_warnings_and_errors_one_line_each() {
        let r = Report {
            checks: vec![
                Check::ok(CheckId::Root, "running as root"),
                Check::warning(CheckId::Sctp, "SCTP sockets unavailable"),
                Check::error(
                    CheckId::NfTables,
                    "`nft` is not installed: install nftables",
                ),
            ],
        };
        assert!(!r.passed());
        assert_eq!(r.warnings().count(), 1);
        assert_eq!(
            r.to_string(),
            "preflight failed (1 errors, 1 warnings)\n  warning: sctp: SCTP sockets unavailable\n  error: nf_tables: `nft` is not installed: install nftables"
        );
        assert_eq!(
            r.error_lines(),
            "  - nf_tables: `nft` is not installed: install nftables"
        );
        assert_eq!(r.get(CheckId::Root).map(|c| c.severity), Some(Severity::Ok));
        assert!(r.get(CheckId::Bpf).is_none());
    }
}

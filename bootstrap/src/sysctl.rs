//! The sysctls knet's features need, set in the calling thread's network namespace.
//!
//! `net.*` sysctls are per network namespace and `/proc/sys/net` resolves them for the calling
//! thread, so a caller that runs this on a thread inside a node's namespace changes only that
//! namespace.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::BootstrapError;

/// Whether a missing sysctl is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlWant {
    /// Must exist and be settable.
    Required,
    /// Set only if the kernel has it (IPv6 may be off, conntrack may be a module not loaded).
    IfPresent,
}

/// Every sysctl bootstrap sets: key, value, whether it must exist, and why.
pub const SYSCTLS: &[(&str, &str, SysctlWant, &str)] = &[
    (
        "net.ipv4.ip_forward",
        "1",
        SysctlWant::Required,
        "route pod traffic",
    ),
    (
        "net.ipv6.conf.all.forwarding",
        "1",
        SysctlWant::IfPresent,
        "route IPv6 pod traffic",
    ),
    (
        "net.ipv4.conf.all.rp_filter",
        "2",
        SysctlWant::Required,
        "loose reverse-path filtering: service and tunnel traffic arrives asymmetrically",
    ),
    (
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "86400",
        SysctlWant::IfPresent,
        "keep idle long-lived connections through services for a day",
    ),
    (
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        "3600",
        SysctlWant::IfPresent,
        "drop half-closed connections after an hour",
    ),
];

/// What happened to one sysctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlChange {
    /// Dotted key.
    pub key: String,
    /// Wanted value.
    pub value: String,
    /// What was done.
    pub outcome: SysctlOutcome,
}

/// What was done to one sysctl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlOutcome {
    /// Written; it was `previous` before.
    Set {
        /// The value before.
        previous: String,
    },
    /// It already had the value.
    AlreadySet,
    /// The kernel has no such sysctl (only for [`SysctlWant::IfPresent`]).
    Absent,
}

/// Sets every sysctl in [`SYSCTLS`] under `/proc/sys`, reporting each to `report`.
pub fn apply_sysctls(
    report: &mut dyn FnMut(SysctlChange),
) -> Result<Vec<SysctlChange>, BootstrapError> {
    apply_sysctls_at(Path::new("/proc/sys"), report)
}

pub(crate) fn apply_sysctls_at(
    root: &Path,
    report: &mut dyn FnMut(SysctlChange),
) -> Result<Vec<SysctlChange>, BootstrapError> {
    let mut done = Vec::new();
    for (key, value, want, why) in SYSCTLS {
        let outcome = set_one(root, key, value, *want)?;
        tracing::info!(key, value, ?outcome, why, "sysctl");
        let change = SysctlChange {
            key: (*key).to_owned(),
            value: (*value).to_owned(),
            outcome,
        };
        report(change.clone());
        done.push(change);
    }
    Ok(done)
}

fn set_one(
    root: &Path,
    key: &str,
    value: &str,
    want: SysctlWant,
) -> Result<SysctlOutcome, BootstrapError> {
    let path = sysctl_path(root, key);
    let err = |e: io::Error| BootstrapError::Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => {
                "the kernel has no such sysctl (is the feature compiled in?)".to_owned()
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                format!("{e}: run as root, with /proc/sys writable (not in a restricted container)")
            }
            _ => e.to_string(),
        },
    };
    let previous = match std::fs::read_to_string(&path) {
        Ok(v) => v.trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound && want == SysctlWant::IfPresent => {
            return Ok(SysctlOutcome::Absent);
        }
        Err(e) => return Err(err(e)),
    };
    if previous == value {
        return Ok(SysctlOutcome::AlreadySet);
    }
    std::fs::write(&path, value).map_err(err)?;
    Ok(SysctlOutcome::Set { previous })
}

/// `net.ipv4.ip_forward` → `<root>/net/ipv4/ip_forward`.
pub(crate) fn sysctl_path(root: &Path, key: &str) -> PathBuf {
    key.split('.')
        .fold(root.to_path_buf(), |p, part| p.join(part))
}

impl fmt::Display for SysctlWant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SysctlWant::Required => "required",
            SysctlWant::IfPresent => "if present",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_keys() {
        assert_eq!(
            sysctl_path(Path::new("/proc/sys"), "net.ipv4.conf.all.rp_filter"),
            PathBuf::from("/proc/sys/net/ipv4/conf/all/rp_filter")
        );
    }

    #[test]
    fn sets_skips_and_fails_on_a_fake_tree() {
        let root = tempfile::tempdir().expect("tempdir");
        let put = |key: &str, v: &str| {
            let p = sysctl_path(root.path(), key);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, v).expect("write");
        };
        // Required ones missing: error naming the key.
        let err = apply_sysctls_at(root.path(), &mut |_| {}).expect_err("missing required");
        assert!(err.to_string().contains("net.ipv4.ip_forward"), "{err}");
        put("net.ipv4.ip_forward", "0\n");
        put("net.ipv4.conf.all.rp_filter", "2\n");
        let mut seen = Vec::new();
        let done = apply_sysctls_at(root.path(), &mut |c| seen.push(c)).expect("apply");
        assert_eq!(done, seen);
        assert_eq!(
            done[0].outcome,
            SysctlOutcome::Set {
                previous: "0".into()
            }
        );
        assert_eq!(done[1].outcome, SysctlOutcome::Absent);
        assert_eq!(done[2].outcome, SysctlOutcome::AlreadySet);
        let fwd = std::fs::read_to_string(sysctl_path(root.path(), "net.ipv4.ip_forward"));
        assert_eq!(fwd.expect("read"), "1");
        // Second run: nothing to do.
        let again = apply_sysctls_at(root.path(), &mut |_| {}).expect("apply again");
        assert_eq!(again[0].outcome, SysctlOutcome::AlreadySet);
    }
}

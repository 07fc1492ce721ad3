//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH`, validated per command.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{CniError, Code};

/// A CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment.
    Check,
    /// Whether the plugin can serve ADD.
    Status,
    /// Garbage-collect stale attachments.
    Gc,
    /// Report supported versions.
    Version,
}

/// The CNI environment of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniEnv {
    /// `CNI_CONTAINERID` (empty for STATUS/GC/VERSION).
    #[serde(default)]
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL).
    #[serde(default)]
    pub netns: String,
    /// `CNI_IFNAME`.
    #[serde(default)]
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs.
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// `CNI_PATH`.
    #[serde(default)]
    pub path: String,
}

// === impl Command ===

impl Command {
    /// The path segment of the daemon API, e.g. `add`.
    pub fn as_path(self) -> &'static str {
        match self {
            Command::Add => "add",
            Command::Del => "del",
            Command::Check => "check",
            Command::Status => "status",
            Command::Gc => "gc",
            Command::Version => "version",
        }
    }
}

impl FromStr for Command {
    type Err = CniError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ADD" => Ok(Command::Add),
            "DEL" => Ok(Command::Del),
            "CHECK" => Ok(Command::Check),
            "STATUS" => Ok(Command::Status),
            "GC" => Ok(Command::Gc),
            "VERSION" => Ok(Command::Version),
            other => Err(CniError::new(
                Code::INVALID_ENV,
                format!("unknown CNI_COMMAND {other:?}"),
            )
            .details("expected one of ADD, DEL, CHECK, STATUS, GC, VERSION")),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_path().to_uppercase())
    }
}

// === impl CniEnv ===

impl CniEnv {
    /// Reads and validates the environment for `cmd` through `get` (`std::env::var` in the
    /// plugin, a map in tests).
    pub fn from_lookup(
        cmd: Command,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<CniEnv, CniError> {
        let var = |k: &str| get(k).unwrap_or_default();
        let env = CniEnv {
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: parse_args(&var("CNI_ARGS"))?,
            path: var("CNI_PATH"),
        };
        let (need_id, need_netns, need_if) = match cmd {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Status | Command::Gc | Command::Version => (false, false, false),
        };
        if need_id {
            validate_container_id(&env.container_id)?;
        }
        if need_netns && env.netns.is_empty() {
            return Err(missing("CNI_NETNS", cmd));
        }
        if need_if {
            validate_ifname(&env.ifname)?;
        }
        Ok(env)
    }

    /// The value of a `CNI_ARGS` key, e.g. `K8S_POD_NAME`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn missing(var: &str, cmd: Command) -> CniError {
    CniError::new(Code::INVALID_ENV, format!("{var} is required for {cmd}"))
}

fn parse_args(s: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut out = Vec::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                Code::INVALID_ENV,
                format!("CNI_ARGS entry {pair:?} is not KEY=VALUE"),
            ));
        };
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The container id rule of libcni: starts alphanumeric, then `[A-Za-z0-9_.-]`.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    if id.is_empty() {
        return Err(CniError::new(
            Code::INVALID_ENV,
            "CNI_CONTAINERID is required",
        ));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(CniError::new(
            Code::INVALID_ENV,
            format!("invalid characters in CNI_CONTAINERID {id:?}"),
        ));
    }
    Ok(())
}

/// The interface name rule of the kernel and libcni: 1-15 bytes, no `/`, `:` or whitespace.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(CniError::new(
            Code::INVALID_ENV,
            format!("CNI_IFNAME {name:?} is not a valid interface name"),
        )
        .details("1-15 characters, no '/', ':' or whitespace"));
    }
    Ok(())
}

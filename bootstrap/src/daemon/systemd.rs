//! Systemd mode: `/etc/systemd/system/knet.service` and `systemctl enable --now knet`.
//!
//! Inside the snap (`SNAP_NAME` set) the snap's own `daemon` service is enabled instead of
//! writing a unit: snapd owns that unit file, so the bootstrap's path flags reach the daemon
//! through a drop-in of `KNET_*` environment variables (the CLI reads every flag from one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use knet_core::paths::{Paths, env};

use super::{DaemonState, SYSTEMD_UNIT_NAME};
use crate::command;
use crate::{BootstrapError, fsutil};

/// Where the unit goes.
pub(crate) const UNIT_PATH: &str = "/etc/systemd/system/knet.service";
/// How long one `systemctl` call may take.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(90);

/// The unit file text for `<knet> <args...>`.
pub fn systemd_unit(knet: &Path, args: &[String]) -> String {
    let exec: Vec<String> = std::iter::once(knet.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| quote_exec(&a))
        .collect();
    format!(
        "# Written by `knet bootstrap`; `knet reset` removes it.
[Unit]
Description=knet node networking daemon
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={}
Restart=always
RestartSec=2
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
",
        exec.join(" ")
    )
}

/// The drop-in for the snap's daemon service: the bootstrap's flags as environment variables.
pub fn snap_dropin(paths: &Paths, node_name: &str, kubeconfig: Option<&Path>) -> String {
    let mut vars = vec![
        (env::STATE_DIR, paths.state_dir.display().to_string()),
        (env::RUN_DIR, paths.run_dir.display().to_string()),
        (env::CNI_CONF_DIR, paths.cni_conf_dir.display().to_string()),
        (env::CNI_BIN_DIR, paths.cni_bin_dir.display().to_string()),
        (env::NODE_NAME, node_name.to_owned()),
    ];
    if let Some(k) = kubeconfig {
        vars.push((env::KUBECONFIG, k.display().to_string()));
    }
    let mut text =
        "# Written by `knet bootstrap`; `knet reset` removes it.\n[Service]\n".to_owned();
    for (k, v) in vars {
        text.push_str(&format!("Environment={}\n", quote_env(&format!("{k}={v}"))));
    }
    text
}

/// The `NAME=value` assignments of a drop-in's `Environment=` lines, as [`snap_dropin`] writes
/// them (one quoted or bare word per line): the inverse of its quoting.
pub fn parse_dropin_environment(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="))
        .filter_map(|word| {
            let word = unquote(word.trim()).replace("%%", "%");
            let (k, v) = word.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The snap's instance name (`SNAP_INSTANCE_NAME`, which differs from `SNAP_NAME` for parallel
/// installs and names the units), if we run inside a snap.
fn snap_instance() -> Option<String> {
    std::env::var("SNAP_INSTANCE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("SNAP_NAME").ok().filter(|s| !s.is_empty()))
}

/// The drop-in's path for the snap instance `snap`.
fn dropin_path(snap: &str) -> PathBuf {
    PathBuf::from(format!(
        "/etc/systemd/system/snap.{snap}.daemon.service.d/10-knet-bootstrap.conf"
    ))
}

/// Inside the snap: the `KNET_*` assignments bootstrap wrote into the daemon service's drop-in
/// (`None` outside a snap, or when there is no drop-in: the node was not bootstrapped through
/// the snap service). The snap's remove hook resets the paths found here.
pub fn snap_dropin_environment() -> Result<Option<Vec<(String, String)>>, BootstrapError> {
    let Some(snap) = snap_instance() else {
        return Ok(None);
    };
    let path = dropin_path(&snap);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(parse_dropin_environment(&text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BootstrapError::io("read", path, e)),
    }
}

/// Writes (if changed), enables and starts the unit; restarts it when the unit changed.
pub(super) fn start(
    knet: &Path,
    args: &[String],
    dropin: &str,
) -> Result<DaemonState, BootstrapError> {
    if let Some(snap) = snap_instance() {
        let unit = format!("snap.{snap}.daemon.service");
        return enable(&dropin_path(&snap), dropin, &unit);
    }
    enable(
        Path::new(UNIT_PATH),
        &systemd_unit(knet, args),
        SYSTEMD_UNIT_NAME,
    )
}

fn enable(path: &Path, text: &str, unit: &str) -> Result<DaemonState, BootstrapError> {
    let existed = path.exists();
    let changed = !fsutil::same_content(path, text.as_bytes());
    if changed {
        fsutil::write_atomic(path, text.as_bytes(), 0o644)?;
        systemctl(&["daemon-reload"])?;
    }
    systemctl(&["enable", "--now", unit])?;
    if changed && existed {
        systemctl(&["restart", unit])?;
    }
    Ok(DaemonState::Systemd {
        unit: unit.to_owned(),
        changed,
    })
}

/// Disables and stops this node's daemon service and removes what bootstrap wrote for it;
/// returns the file removed. Outside a snap: the unit, but only if it is this node's (its
/// ExecStart names this state dir), so on a machine with several nodes resetting one leaves the
/// host's unit alone. Inside the snap: snapd owns the service's unit, so it is only disabled and
/// stopped (best effort: in the remove hook snapd has done that already) and bootstrap's drop-in
/// removed, with its directory when nothing else is in it.
pub(crate) fn stop_systemd_unit(paths: &Paths) -> Result<Option<PathBuf>, BootstrapError> {
    if let Some(snap) = snap_instance() {
        if super::systemd_running() {
            let unit = format!("snap.{snap}.daemon.service");
            if let Err(error) = systemctl(&["disable", "--now", &unit]) {
                tracing::warn!(%error, unit, "cannot stop the snap's daemon service");
            }
        }
        let path = dropin_path(&snap);
        let removed = fsutil::remove_if_exists(&path)?;
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
        if removed && super::systemd_running() {
            systemctl(&["daemon-reload"])?;
        }
        return Ok(removed.then_some(path));
    }
    let path = Path::new(UNIT_PATH);
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let flag = format!(
        " --state-dir {} ",
        quote_exec(&paths.state_dir.display().to_string())
    );
    let ours = text
        .lines()
        .any(|l| l.starts_with("ExecStart=") && l.contains(&flag));
    if !ours {
        return Ok(None);
    }
    if super::systemd_running() {
        systemctl(&["disable", "--now", SYSTEMD_UNIT_NAME])?;
    }
    fsutil::remove_if_exists(path)?;
    if super::systemd_running() {
        systemctl(&["daemon-reload"])?;
    }
    Ok(Some(path.to_path_buf()))
}

fn systemctl(args: &[&str]) -> Result<(), BootstrapError> {
    let mut argv = vec!["systemctl"];
    argv.extend_from_slice(args);
    let result = command::run(&argv, SYSTEMCTL_TIMEOUT);
    match &result {
        Ok(o) if o.success => Ok(()),
        _ => Err(BootstrapError::Command {
            command: argv.join(" "),
            reason: command::describe(&result),
        }),
    }
}

/// Quotes a word of an `ExecStart=` line. systemd splits the line on whitespace, honours
/// `"..."` with C-style backslash escapes, resolves `%` specifiers and substitutes `$VAR` and
/// `${VAR}` (systemd.service(5), "Command lines"): so `%` is written `%%`, `$` is written `$$`,
/// and a word with whitespace, quotes or backslashes is double-quoted.
fn quote_exec(word: &str) -> String {
    quote_word(&word.replace('%', "%%").replace('$', "$$"))
}

/// Quotes the `NAME=value` word of an `Environment=` line. Its value is unquoted like an
/// `ExecStart=` word and `%` specifiers are resolved, but no variable substitution happens (`$`
/// "has no special meaning", systemd.exec(5)): `%` is written `%%`, `$` stays as it is.
fn quote_env(assignment: &str) -> String {
    quote_word(&assignment.replace('%', "%%"))
}

fn quote_word(escaped: &str) -> String {
    if escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped.to_owned()
    }
}

/// Undoes [`quote_word`]: a `"..."` word loses its quotes and backslash escapes; a bare word is
/// returned as it is.
fn unquote(word: &str) -> String {
    let Some(inner) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) else {
        return word.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_daemon_with_the_same_flags_and_restarts_always() {
        let args: Vec<String> = [
            "daemon",
            "--state-dir",
            "/var/lib/knet",
            "--node-name",
            "n 1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let unit = systemd_unit(Path::new("/usr/local/bin/knet"), &args);
        assert!(unit.contains(
            "\nExecStart=/usr/local/bin/knet daemon --state-dir /var/lib/knet --node-name \"n 1\"\n"
        ), "{unit}");
        assert!(unit.contains("\nRestart=always\n"));
        assert!(unit.contains("\nWantedBy=multi-user.target\n"));
    }

    #[test]
    fn snap_dropin_carries_every_flag_as_environment() {
        let paths = Paths {
            state_dir: "/var/lib/knet".into(),
            run_dir: "/run/knet".into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
        };
        let text = snap_dropin(&paths, "node 1", Some(Path::new("/etc/k.conf")));
        assert_eq!(
            text,
            "# Written by `knet bootstrap`; `knet reset` removes it.\n[Service]\n\
             Environment=KNET_STATE_DIR=/var/lib/knet\n\
             Environment=KNET_RUN_DIR=/run/knet\n\
             Environment=KNET_CNI_CONF_DIR=/etc/cni/net.d\n\
             Environment=KNET_CNI_BIN_DIR=/opt/cni/bin\n\
             Environment=\"KNET_NODE_NAME=node 1\"\n\
             Environment=KNET_KUBECONFIG=/etc/k.conf\n"
        );
    }

    #[test]
    fn exec_words_double_percent_and_dollar() {
        assert_eq!(quote_exec("plain"), "plain");
        assert_eq!(quote_exec("a b"), "\"a b\"");
        assert_eq!(quote_exec("50%"), "50%%");
        assert_eq!(quote_exec("$HOME"), "$$HOME");
        assert_eq!(quote_exec("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(quote_exec("a\\b"), "\"a\\\\b\"");
        assert_eq!(quote_exec(""), "\"\"");
    }

    #[test]
    fn environment_values_keep_dollar_and_double_percent() {
        // systemd.exec(5): no variable expansion in Environment=, "$" has no special meaning;
        // specifiers are resolved, so "%" must be "%%".
        assert_eq!(
            quote_env("KNET_STATE_DIR=/srv/$node"),
            "KNET_STATE_DIR=/srv/$node"
        );
        assert_eq!(quote_env("KNET_NODE_NAME=50%"), "KNET_NODE_NAME=50%%");
        assert_eq!(quote_env("KNET_NODE_NAME=a $b"), "\"KNET_NODE_NAME=a $b\"");
        let paths = Paths {
            state_dir: "/srv/knet$1".into(),
            run_dir: "/run/knet".into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
        };
        let text = snap_dropin(&paths, "n1", None);
        assert!(
            text.contains("\nEnvironment=KNET_STATE_DIR=/srv/knet$1\n"),
            "{text}"
        );
    }

    #[test]
    fn dropin_environment_round_trips() {
        let paths = Paths {
            state_dir: "/srv/knet $1/100%".into(),
            run_dir: "/run/kn\"et".into(),
            cni_conf_dir: "/etc/cni/net\\d".into(),
            cni_bin_dir: "/opt/cni/bin".into(),
        };
        let text = snap_dropin(&paths, "node 1", Some(Path::new("/etc/k.conf")));
        let vars = parse_dropin_environment(&text);
        let want: Vec<(String, String)> = [
            (env::STATE_DIR, "/srv/knet $1/100%"),
            (env::RUN_DIR, "/run/kn\"et"),
            (env::CNI_CONF_DIR, "/etc/cni/net\\d"),
            (env::CNI_BIN_DIR, "/opt/cni/bin"),
            (env::NODE_NAME, "node 1"),
            (env::KUBECONFIG, "/etc/k.conf"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(vars, want);
        assert!(parse_dropin_environment("[Service]\nRestart=always\n").is_empty());
    }
}

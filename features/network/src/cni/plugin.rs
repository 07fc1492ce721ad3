//! The plugin process: read the environment and stdin, answer VERSION itself, forward every
//! other command to the node daemon, and print the result or error on stdout.
//!
//! When the daemon cannot be reached, ADD fails with "try again later" (11), STATUS reports
//! "not available" (50), and DEL deletes the pod's veth locally and succeeds, so a pod can always
//! be torn down.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{CniEnv, CniError, Code, Command, NetConf, Version, version_info};
use crate::kernel::{Netlink, host_veth_name, unwire_pod};
use crate::wire::{CniErrorBody, CniRequest, api_path};

/// How long the plugin waits for the daemon (ADD includes kernel work and a store flush).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(60);

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginOutput {
    /// The JSON on stdout (empty for DEL/CHECK/GC/STATUS success).
    pub stdout: String,
    /// The exit code.
    pub exit: i32,
}

/// The plugin's entry point: `knet` calls it when `CNI_COMMAND` is set, whatever name the binary
/// is installed under. Returns the process exit code.
pub fn cni_main() -> i32 {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let out = match (read, rt) {
        (Err(e), _) => error_output(
            &CniError::new(
                Code::IO_FAILURE,
                "cannot read the network configuration from stdin",
            )
            .details(e.to_string()),
            knet_core::cni_conf::CNI_VERSION,
        ),
        (_, Err(e)) => error_output(
            &CniError::new(Code::INTERNAL, "cannot start the plugin runtime")
                .details(e.to_string()),
            knet_core::cni_conf::CNI_VERSION,
        ),
        (Ok(_), Ok(rt)) => rt.block_on(run_plugin(
            &std::env::var("CNI_COMMAND").unwrap_or_default(),
            |k| std::env::var(k).ok(),
            &stdin,
        )),
    };
    let mut stdout = std::io::stdout().lock();
    if !out.stdout.is_empty() {
        let _ = writeln!(stdout, "{}", out.stdout);
    }
    let _ = stdout.flush();
    out.exit
}

/// One plugin invocation, without touching the process's stdin/stdout: `command` is
/// `CNI_COMMAND`, `env` looks up the other variables, `stdin` is the configuration.
pub async fn run_plugin(
    command: &str,
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> PluginOutput {
    let version = NetConf::peek_version(stdin);
    match dispatch(command, env, stdin).await {
        Ok(Some(v)) => PluginOutput {
            stdout: v.to_string(),
            exit: 0,
        },
        Ok(None) => PluginOutput {
            stdout: String::new(),
            exit: 0,
        },
        Err(e) => error_output(&e, &version),
    }
}

fn error_output(e: &CniError, version: &str) -> PluginOutput {
    PluginOutput {
        stdout: e.to_json(version).to_string(),
        exit: 1,
    }
}

async fn dispatch(
    command: &str,
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Result<Option<Value>, CniError> {
    let cmd: Command = command.parse()?;
    if cmd == Command::Version {
        return Ok(Some(version_info()));
    }
    let conf = NetConf::parse(stdin)?;
    check_version_allows(cmd, conf.version)?;
    let env = CniEnv::from_lookup(cmd, env)?;
    let config: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(Code::DECODING_FAILURE, "the configuration is not JSON")
            .details(e.to_string())
    })?;
    let request = CniRequest {
        command: cmd,
        env: env.clone(),
        config,
    };
    let body = serde_json::to_vec(&request).map_err(|e| {
        CniError::new(Code::INTERNAL, "cannot encode the request").details(e.to_string())
    })?;
    let client = knet_api::Client::new(&conf.socket).with_timeout(DAEMON_TIMEOUT);
    let answer = client.call("POST", &api_path(cmd), body).await;
    match answer {
        Ok((status, body)) if (200..300).contains(&status) => {
            if body.is_empty() || cmd != Command::Add {
                return Ok(None);
            }
            serde_json::from_slice(&body).map(Some).map_err(|e| {
                CniError::new(Code::INTERNAL, "the knet daemon sent a malformed result")
                    .details(e.to_string())
            })
        }
        Ok((status, body)) => {
            if let Ok(err) = serde_json::from_slice::<CniErrorBody>(&body) {
                return Err(err.into());
            }
            // Not a CNI answer: the daemon's router said the feature is off, or similar.
            let message = serde_json::from_slice::<knet_api::ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            unreachable_daemon(
                cmd,
                &env,
                format!("the knet network feature is not serving on this node (HTTP {status})"),
                message,
            )
            .await
        }
        Err(e) => {
            unreachable_daemon(
                cmd,
                &env,
                "the knet daemon is not running on this node, or does not answer".to_owned(),
                e.to_string(),
            )
            .await
        }
    }
}

/// What each command does when the daemon cannot serve it.
async fn unreachable_daemon(
    cmd: Command,
    env: &CniEnv,
    msg: String,
    details: String,
) -> Result<Option<Value>, CniError> {
    match cmd {
        Command::Del => {
            local_del(env).await;
            Ok(None)
        }
        Command::Status => Err(CniError::new(Code::NOT_AVAILABLE, msg).details(details)),
        _ => Err(CniError::new(
            Code::TRY_AGAIN_LATER,
            format!(
                "{msg}; start it (knet daemon) or enable the network feature (knet enable network)"
            ),
        )
        .details(details)),
    }
}

/// DEL without the daemon: delete the pod's veth (host end by its derived name, and any veth of
/// that name left in the pod). Addresses stay allocated until the daemon's next start, which
/// releases allocations whose veth is gone.
async fn local_del(env: &CniEnv) {
    let host_if = host_veth_name(&env.container_id, &env.ifname);
    let netns = (!env.netns.is_empty()).then(|| Path::new(&env.netns));
    match Netlink::open(None).await {
        Ok(node) => {
            if let Err(error) = unwire_pod(&node, &host_if, netns, &env.ifname).await {
                tracing::warn!(%error, "local DEL could not remove the pod's interfaces");
            }
        }
        Err(error) => tracing::warn!(%error, "local DEL could not open netlink"),
    }
}

/// CHECK needs 0.4.0; STATUS and GC need 1.1.0.
pub(crate) fn check_version_allows(cmd: Command, v: Version) -> Result<(), CniError> {
    let needed = match cmd {
        Command::Check => Version::V0_4_0,
        Command::Status | Command::Gc => Version::V1_1_0,
        _ => return Ok(()),
    };
    if v < needed {
        return Err(CniError::new(
            Code::INCOMPATIBLE_VERSION,
            format!("config version {v} does not allow {cmd}"),
        )
        .details(format!("{cmd} needs cniVersion {needed} or later")));
    }
    Ok(())
}

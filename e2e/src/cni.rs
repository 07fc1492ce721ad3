//! Running a CNI plugin chain exactly as a container runtime does (libcni):
//! the first `.conf`/`.conflist`/`.json` file in the conf dir (sorted), each
//! plugin exec'd from `CNI_PATH` with the CNI environment and its network
//! config on stdin, ADD in order with `prevResult` chaining, DEL in reverse
//! order with the cached ADD result. Plugins run inside the node's network
//! namespace, as they would under a runtime on that node.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::netns;

/// One plugin may run this long.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A network configuration list as found in a conf dir.
#[derive(Debug, Clone)]
pub struct ConfList {
    /// File it came from.
    pub file: PathBuf,
    /// The list (`.conf` files are wrapped into a one-plugin list).
    pub list: Value,
}

/// Who and where a CNI call is for.
#[derive(Debug, Clone)]
pub struct CniRuntime {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// Path for `CNI_NETNS`.
    pub netns_path: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// Extra `CNI_ARGS` pairs (K8S_POD_NAMESPACE and friends).
    pub args: Vec<(String, String)>,
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Namespace the plugins run in (the node's).
    pub run_in_netns: String,
}

// === impl ConfList ===

impl ConfList {
    /// The configuration a runtime would pick from `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(None);
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "conflist" | "json")
                )
            })
            .collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
                tracing::warn!(file = %file.display(), "ignoring unparsable CNI config");
                continue;
            };
            if v.get("plugins").is_none() {
                // A single-plugin .conf: wrap it like libcni does.
                v = json!({
                    "cniVersion": v.get("cniVersion").cloned().unwrap_or(json!("0.2.0")),
                    "name": v.get("name").cloned().unwrap_or(json!("")),
                    "plugins": [v],
                });
            }
            return Ok(Some(Self { file, list: v }));
        }
        Ok(None)
    }

    fn plugins(&self) -> Result<Vec<Value>> {
        let plugins = self
            .list
            .get("plugins")
            .and_then(Value::as_array)
            .context("conflist has no plugins")?;
        let version = self
            .list
            .get("cniVersion")
            .cloned()
            .unwrap_or(json!("1.0.0"));
        let name = self.list.get("name").cloned().unwrap_or(json!(""));
        Ok(plugins
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(o) = p.as_object_mut() {
                    o.insert("cniVersion".into(), version.clone());
                    o.insert("name".into(), name.clone());
                }
                p
            })
            .collect())
    }

    /// Runs ADD through the chain and returns the final result.
    pub async fn add(&self, rt: &CniRuntime) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for mut plugin in self.plugins()? {
            if let (Some(p), Some(o)) = (&prev, plugin.as_object_mut()) {
                o.insert("prevResult".into(), p.clone());
            }
            let out = invoke(rt, "ADD", &plugin).await?;
            prev = Some(out);
        }
        let result = prev.context("empty plugin chain")?;
        let ips = result
            .get("ips")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if ips == 0 {
            bail!("CNI ADD result has no IPs: {result}");
        }
        Ok(result)
    }

    /// Runs DEL through the chain in reverse; every plugin is called even if
    /// one fails, and the first error is returned.
    pub async fn del(&self, rt: &CniRuntime, cached: Option<&Value>) -> Result<()> {
        let mut first_err = None;
        for mut plugin in self.plugins()?.into_iter().rev() {
            if let (Some(p), Some(o)) = (cached, plugin.as_object_mut()) {
                o.insert("prevResult".into(), p.clone());
            }
            if let Err(e) = invoke(rt, "DEL", &plugin).await {
                tracing::warn!(error = %e, "CNI DEL failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// IP addresses (without prefix length) in a CNI result.
pub fn result_ips(result: &Value) -> Vec<String> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str())
        .filter_map(|a| a.split('/').next())
        .map(str::to_owned)
        .collect()
}

async fn invoke(rt: &CniRuntime, command: &str, conf: &Value) -> Result<Value> {
    let ty = conf
        .get("type")
        .and_then(Value::as_str)
        .context("plugin without type")?;
    let bin = rt
        .bin_dirs
        .iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .with_context(|| format!("CNI plugin {ty} not found in {:?}", rt.bin_dirs))?;
    let cni_path = std::env::join_paths(&rt.bin_dirs)?;
    let mut args = vec!["IgnoreUnknown=true".to_owned()];
    args.extend(rt.args.iter().map(|(k, v)| format!("{k}={v}")));
    let argv = netns::exec_argv(&rt.run_in_netns, &[bin.as_os_str()]);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &rt.container_id)
        .env("CNI_NETNS", &rt.netns_path)
        .env("CNI_IFNAME", &rt.ifname)
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning CNI plugin {ty}"))?;
    let input = serde_json::to_vec(conf)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).await?;
    }
    let out = tokio::time::timeout(PLUGIN_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("CNI {command} {ty} timed out"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    tracing::debug!(plugin = ty, command, status = %out.status, stdout = %stdout.trim(), "cni plugin ran");
    if !out.status.success() {
        bail!(
            "CNI {command} {ty} failed ({}): {} {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if command == "DEL" || stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout)
        .with_context(|| format!("CNI {command} {ty} printed invalid JSON: {stdout}"))
}

/// The reference conflist for a node: bridge + host-local on the node's pod
/// CIDR, no masquerade and no default route (only lab prefixes are routed).
pub fn reference_conflist(pod_cidr: &str, ipam_dir: &Path, routes: &[&str]) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": crate::config::REFERENCE_CNI_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": routes.iter().map(|r| json!({"dst": r})).collect::<Vec<_>>(),
            }
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_conf_is_wrapped_and_first_file_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("20-b.conf"),
            r#"{"cniVersion":"1.0.0","name":"b","type":"bridge"}"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("00-ignored.txt"), "nope").expect("write");
        let c = ConfList::load(dir.path()).expect("load").expect("found");
        assert_eq!(c.list["name"], "a");
        let p = c.plugins().expect("plugins");
        assert_eq!(p[0]["type"], "ptp");
        assert_eq!(p[0]["cniVersion"], "0.4.0");
    }

    #[test]
    fn ips_are_extracted_without_prefix() {
        let r = json!({"ips":[{"address":"10.1.0.5/24"},{"address":"fd00::5/64"}]});
        assert_eq!(result_ips(&r), vec!["10.1.0.5", "fd00::5"]);
    }
}

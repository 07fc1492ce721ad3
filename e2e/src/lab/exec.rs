//! Running commands inside lab namespaces, and the probes tests use most
//! (curl, dig, TCP connect).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use tokio::process::Command;

use super::Lab;
use crate::kubelet::pod_netns_name;
use crate::netns;
use crate::process::{self, ExecOutput};
use crate::sweep::LAB_ENV;

// === impl Lab ===

impl Lab {
    /// Runs `argv` inside network namespace `netns` (killed after `timeout`).
    /// The process is tagged as the lab's, so teardown finds strays.
    pub async fn exec_in(
        &self,
        netns_name: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        if !netns::exists(netns_name) {
            bail!("network namespace {netns_name} does not exist");
        }
        let full = netns::exec_argv(netns_name, argv);
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..])
            .env(LAB_ENV, self.id())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        process::run_command(cmd, timeout).await
    }

    /// Runs `argv` inside node `node`'s namespace.
    pub async fn exec_node(
        &self,
        node: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let ns = self.node(node)?.netns;
        self.exec_in(&ns, argv, timeout).await
    }

    /// The network namespace of pod `ns/name` (which must be running here).
    pub async fn pod_netns(&self, ns: &str, name: &str) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client(), ns);
        let pod = pods
            .get(name)
            .await
            .with_context(|| format!("getting pod {ns}/{name}"))?;
        let uid = pod.uid().context("pod without uid")?;
        let spec = pod.spec.as_ref().context("pod without spec")?;
        if spec.host_network == Some(true) {
            return Ok(self
                .node(spec.node_name.as_deref().context("pod not bound")?)?
                .netns);
        }
        let netns_name = pod_netns_name(&self.prefix, &uid);
        if !netns::exists(&netns_name) {
            bail!("pod {ns}/{name} has no sandbox (yet?)");
        }
        Ok(netns_name)
    }

    /// Runs `argv` inside pod `ns/name`'s namespace; it sees the pod's
    /// resolv.conf and hosts files.
    pub async fn exec_pod(
        &self,
        ns: &str,
        name: &str,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let netns_name = self.pod_netns(ns, name).await?;
        self.exec_in(&netns_name, argv, timeout).await
    }

    /// What container `container` of pod `ns/name` has printed so far
    /// (stdout and stderr; gone once the pod is deleted).
    pub async fn pod_logs(&self, ns: &str, name: &str, container: &str) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client(), ns);
        let uid = pods.get(name).await?.uid().context("pod without uid")?;
        let path = self
            .dir
            .join("pods")
            .join(uid)
            .join(format!("{container}.log"));
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// `curl` from inside `netns_name`; returns the body, failing on a
    /// connection error or an HTTP status >= 400.
    pub async fn curl(&self, netns_name: &str, url: &str, timeout: Duration) -> Result<String> {
        let max = timeout.as_secs().max(1).to_string();
        let out = self
            .exec_in(
                netns_name,
                &["curl", "-sS", "--fail", "--max-time", &max, url],
                timeout + Duration::from_secs(2),
            )
            .await?
            .ok()
            .with_context(|| format!("curl {url} from {netns_name}"))?;
        Ok(out.stdout)
    }

    /// `curl` from inside pod `ns/name`.
    pub async fn curl_from_pod(
        &self,
        ns: &str,
        name: &str,
        url: &str,
        timeout: Duration,
    ) -> Result<String> {
        let netns_name = self.pod_netns(ns, name).await?;
        self.curl(&netns_name, url, timeout).await
    }

    /// `dig +short` for `name` (record type `qtype`) from inside pod
    /// `ns/name`, using the pod's resolv.conf (search list applies).
    pub async fn dig_from_pod(
        &self,
        ns: &str,
        pod: &str,
        name: &str,
        qtype: &str,
    ) -> Result<Vec<String>> {
        let out = self
            .exec_pod(
                ns,
                pod,
                &[
                    "dig", "+short", "+search", "+time=2", "+tries=1", name, qtype,
                ],
                Duration::from_secs(10),
            )
            .await?
            .ok()?;
        Ok(out
            .stdout
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Whether a TCP connection to `host:port` succeeds from `netns_name`.
    pub async fn tcp_connect(
        &self,
        netns_name: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<bool> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let target = format!(
            "TCP:{host}:{port},connect-timeout={}",
            timeout.as_secs().max(1)
        );
        let out = self
            .exec_in(
                netns_name,
                &["socat", "-u", "OPEN:/dev/null", &target],
                timeout + Duration::from_secs(2),
            )
            .await?;
        Ok(out.success())
    }
}

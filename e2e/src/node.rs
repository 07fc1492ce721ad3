//! Lab nodes: a network namespace on an underlay segment plus a Node object
//! kept alive like a kubelet would (Ready condition, Lease in
//! kube-node-lease renewed every few seconds).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::config::{CGROUP_ROOT, K8S_VERSION, Segment};
use crate::netns;

/// Heartbeat period for the Lease. Node status is refreshed every
/// [`STATUS_EVERY`] beats (about 5 min, like the kubelet's report frequency).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Beats between Node status refreshes.
pub const STATUS_EVERY: u64 = 60;

/// A lab node and where its things live.
#[derive(Debug, Clone)]
pub struct LabNode {
    /// Node name.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Underlay segment.
    pub segment: Segment,
    /// Underlay IPv4 address (eth0).
    pub ipv4: Ipv4Addr,
    /// Underlay IPv6 address (eth0).
    pub ipv6: Ipv6Addr,
    /// Pod CIDR from nodeipam, once assigned.
    pub pod_cidr: Option<String>,
    /// When the node was created (its conditions' lastTransitionTime).
    pub since: Time,
    /// The node's directory in the lab run dir.
    pub dir: PathBuf,
    /// Kubeconfig for processes running in the node (via the forwarder).
    pub kubeconfig: PathBuf,
    /// knet `--state-dir`.
    pub state_dir: PathBuf,
    /// knet `--run-dir`.
    pub run_dir: PathBuf,
    /// CNI conf dir (`--cni-conf-dir`).
    pub cni_conf_dir: PathBuf,
    /// CNI bin dir (`--cni-bin-dir`), searched before the reference plugins.
    pub cni_bin_dir: PathBuf,
    /// cgroup v2 directory holding the node's pods (lab-made).
    pub cgroup: PathBuf,
}

// === impl LabNode ===

impl LabNode {
    /// Describes node `name` of lab `prefix`, host number `host` on `segment`.
    pub fn new(prefix: &str, lab_dir: &Path, name: &str, segment: Segment, host: u8) -> Self {
        let dir = lab_dir.join("nodes").join(name);
        Self {
            name: name.to_owned(),
            netns: format!("{prefix}{name}"),
            segment,
            ipv4: segment.v4(host),
            ipv6: segment.v6(host),
            pod_cidr: None,
            since: Time(Timestamp::now()),
            kubeconfig: dir.join("kubeconfig"),
            state_dir: dir.join("state"),
            run_dir: dir.join("run"),
            cni_conf_dir: dir.join("cni/net.d"),
            cni_bin_dir: dir.join("cni/bin"),
            cgroup: Path::new(CGROUP_ROOT)
                .join(prefix.trim_end_matches('-'))
                .join(name),
            dir,
        }
    }

    /// `CNI_PATH` for the node: its own bin dir, then the reference plugins.
    pub fn cni_path(&self) -> Vec<PathBuf> {
        vec![
            self.cni_bin_dir.clone(),
            "/usr/lib/cni".into(),
            "/opt/cni/bin".into(),
        ]
    }

    /// Creates directories, the cgroup and the namespace wired to the
    /// underlay bridge of its segment (veth `v<host>` in the underlay).
    pub async fn create(&self, underlay: &str, host: u8) -> Result<()> {
        for d in [
            &self.state_dir,
            &self.run_dir,
            &self.cni_conf_dir,
            &self.cni_bin_dir,
        ] {
            std::fs::create_dir_all(d)?;
        }
        if let Err(error) = std::fs::create_dir_all(&self.cgroup) {
            tracing::warn!(%error, cgroup = %self.cgroup.display(), "no cgroup v2 for node");
        }
        netns::add(&self.netns).await?;
        let veth = format!("v{}{host}", self.segment.tag());
        let bridge = format!("br-{}", self.segment.tag());
        netns::ip(
            underlay,
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.netns,
            ],
        )
        .await?;
        netns::ip(underlay, &["link", "set", &veth, "master", &bridge, "up"]).await?;
        let n = &self.netns;
        netns::ip(
            n,
            &["addr", "add", &format!("{}/24", self.ipv4), "dev", "eth0"],
        )
        .await?;
        netns::ip(
            n,
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", self.ipv6),
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .await?;
        netns::ip(n, &["link", "set", "eth0", "up"]).await?;
        // The other segment is reached through the underlay router; nothing
        // else is routed (no default route: nothing leaves the machine).
        let other = match self.segment {
            Segment::A => Segment::B,
            Segment::B => Segment::A,
        };
        let gw4 = self.segment.gateway_v4().to_string();
        let gw6 = self.segment.gateway_v6().to_string();
        netns::ip(n, &["route", "add", &other.cidr_v4(), "via", &gw4]).await?;
        netns::ip(n, &["-6", "route", "add", &other.cidr_v6(), "via", &gw6]).await?;
        netns::sysctl(n, "net.ipv4.ip_forward", "1").await?;
        netns::sysctl(n, "net.ipv6.conf.all.forwarding", "1").await?;
        Ok(())
    }

    /// Creates (or refreshes) the Node object with addresses, capacity and a
    /// Ready condition, and its Lease.
    pub async fn register(&self, client: &Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "knet.dev/lab-segment": self.segment.tag(),
                },
            },
        }))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating node {}", self.name)),
        }
        self.patch_status(client).await?;
        self.renew_lease(client).await?;
        // The apiserver taints new nodes not-ready; nodelifecycle lifts it
        // within seconds, but a kubelet-reported Ready node needn't wait.
        let node = nodes.get(&self.name).await?;
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        let kept: Vec<_> = taints
            .iter()
            .filter(|t| t.key != "node.kubernetes.io/not-ready")
            .collect();
        if kept.len() != taints.len() {
            let patch = json!({"spec": {"taints": kept}});
            nodes
                .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    /// Writes the node's status (addresses, capacity, conditions, info).
    pub async fn patch_status(&self, client: &Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let now = serde_json::to_value(Time(Timestamp::now()))?;
        let since = serde_json::to_value(&self.since)?;
        let cond = |t: &str, s: &str, reason: &str| {
            json!({"type": t, "status": s, "reason": reason, "message": "knet lab node",
                   "lastHeartbeatTime": now, "lastTransitionTime": since})
        };
        let resources =
            json!({"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
        let status = json!({"status": {
            "addresses": [
                {"type": "InternalIP", "address": self.ipv4.to_string()},
                {"type": "InternalIP", "address": self.ipv6.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                cond("Ready", "True", "KubeletReady"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "nodeInfo": {
                "machineID": self.name, "systemUUID": self.name, "bootID": "knet-lab",
                "kernelVersion": kernel_version(), "osImage": "knet lab", "containerRuntimeVersion": "knetlab://0.1.0",
                "kubeletVersion": K8S_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }});
        nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .with_context(|| format!("patching status of node {}", self.name))?;
        Ok(())
    }

    /// Creates or renews the node's Lease.
    pub async fn renew_lease(&self, client: &Client) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name},
            "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                     "renewTime": MicroTime(Timestamp::now())},
        });
        leases
            .patch(
                &self.name,
                &PatchParams::apply("knet-lab").force(),
                &Patch::Apply(&lease),
            )
            .await
            .with_context(|| format!("renewing lease of node {}", self.name))?;
        Ok(())
    }

    /// Waits until nodeipam has given the node a pod CIDR and returns it.
    pub async fn wait_pod_cidr(&self, client: &Client, timeout: Duration) -> Result<String> {
        let nodes: Api<Node> = Api::all(client.clone());
        crate::process::wait_for(
            &format!("a pod CIDR for node {}", self.name),
            timeout,
            Duration::from_millis(200),
            || {
                let nodes = nodes.clone();
                async move { Ok(nodes.get(&self.name).await?.spec.and_then(|s| s.pod_cidr)) }
            },
        )
        .await
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

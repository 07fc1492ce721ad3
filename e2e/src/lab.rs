//! [`Lab`]: one control plane, an underlay, nodes, the kubelet emulation and
//! (optionally) knet on every node, torn down on drop.

mod exec;
mod knet;
mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::bins::Bins;
use crate::config::{CniMode, LabOptions, NodeSpec, POD_CIDR, SERVICE_CIDR, Segment, lab_prefix};
use crate::control_plane::{self, ControlPlane};
use crate::kubelet::{Kubelet, KubeletCtx};
use crate::node::{HEARTBEAT, LabNode, STATUS_EVERY};
use crate::process::{PidRecord, wait_for};
use crate::sweep::{self, OWNER_FILE};
use crate::{cni, forwarder, netns};

/// Name of the state file `knet-lab status/env` read.
pub const STATE_FILE: &str = "lab.json";

/// How long nodeipam may take to give a node its pod CIDR.
const CIDR_TIMEOUT: Duration = Duration::from_secs(60);

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    opts: LabOptions,
    prefix: String,
    dir: PathBuf,
    bins: Bins,
    cp: ControlPlane,
    client: Client,
    underlay: String,
    nodes: Arc<RwLock<BTreeMap<String, LabNode>>>,
    hosts: Mutex<HashMap<Segment, u8>>,
    kubelet: Option<Kubelet>,
    knet: Mutex<HashMap<String, tokio::process::Child>>,
    knet_bin: Mutex<Option<PathBuf>>,
    startup: Duration,
    guard: Guard,
}

/// Tears a lab down when dropped, including a lab that failed to start.
struct Guard {
    run_root: PathBuf,
    id: String,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

// === impl Lab ===

impl Lab {
    /// Starts a lab: sweeps stale labs, starts the control plane, the
    /// underlay and the nodes, registers them, and starts the kubelet.
    pub async fn start(opts: LabOptions) -> Result<Self> {
        let t0 = Instant::now();
        preflight(&opts)?;
        let bins = Bins::locate()?;
        for id in sweep::sweep_stale(&opts.run_root) {
            tracing::info!(id, "swept stale lab");
        }
        let dir = opts.run_root.join(&opts.id);
        if let Some(owner) = sweep::live_owner(&dir) {
            bail!("lab {} is already running (pid {})", opts.id, owner.pid);
        }
        let _ = std::fs::remove_dir_all(&dir);
        // The run dir appears with its owner file already inside (rename is
        // atomic), so a concurrent sweep never sees an ownerless new lab.
        let me = i32::try_from(std::process::id())?;
        let tmp = opts.run_root.join(format!(".new-{}-{me}", opts.id));
        std::fs::create_dir_all(tmp.join("pids"))
            .with_context(|| format!("creating {}", tmp.display()))?;
        PidRecord::of(me, "")?.write(&tmp.join(OWNER_FILE))?;
        std::fs::rename(&tmp, &dir).with_context(|| format!("creating {}", dir.display()))?;
        let guard = Guard {
            run_root: opts.run_root.clone(),
            id: opts.id.clone(),
            tasks: Mutex::default(),
        };
        let prefix = lab_prefix(&opts.id);
        let underlay = format!("{prefix}underlay");

        create_underlay(&underlay).await?;
        let gw: IpAddr = Segment::A.gateway_v4().into();
        let cp = ControlPlane::start_with(
            &dir,
            &bins,
            gw,
            &[Segment::A.gateway_v6().into()],
            opts.dual_stack,
        )
        .await?;
        let client = control_plane::admin_client(&cp.admin_kubeconfig).await?;
        for listen in [
            SocketAddr::new(gw, cp.api_port),
            SocketAddr::new(Segment::A.gateway_v6().into(), cp.api_port),
        ] {
            let task = forwarder::start(
                &underlay,
                listen,
                SocketAddr::from(([127, 0, 0, 1], cp.api_port)),
            )?;
            guard.push(task);
        }
        let nodes: Arc<RwLock<BTreeMap<String, LabNode>>> = Arc::default();
        let mut lab = Self {
            prefix: prefix.clone(),
            dir: dir.clone(),
            bins,
            cp,
            client,
            underlay,
            nodes: nodes.clone(),
            hosts: Mutex::default(),
            kubelet: None,
            knet: Mutex::default(),
            knet_bin: Mutex::default(),
            startup: Duration::ZERO,
            guard,
            opts: opts.clone(),
        };
        let specs = opts.nodes.clone();
        futures::future::try_join_all(specs.iter().map(|s| lab.add_node(s.clone()))).await?;
        let ctx = KubeletCtx {
            lab_id: opts.id.clone(),
            prefix,
            dir,
            client: lab.client.clone(),
            agnhost: lab.bins.get("agnhost"),
            cni: opts.cni,
            nodes: nodes.clone(),
        };
        lab.kubelet = Some(Kubelet::start(Arc::new(ctx)));
        lab.guard
            .push(tokio::spawn(heartbeat(lab.client.clone(), nodes)));
        if opts.knet {
            for spec in &specs {
                lab.bootstrap_knet(&spec.name, None)
                    .await?
                    .ok()
                    .with_context(|| format!("knet bootstrap on {}", spec.name))?;
                if !lab.knet_running(&spec.name) {
                    lab.start_knet_daemon(&spec.name).await?;
                }
            }
        }
        lab.startup = t0.elapsed();
        lab.write_state()?;
        tracing::info!(id = %opts.id, startup = ?lab.startup, "lab ready");
        Ok(lab)
    }

    /// The lab id.
    pub fn id(&self) -> &str {
        &self.opts.id
    }

    /// The lab's run dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An admin client (usable from any runtime while the lab's runs).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Admin kubeconfig for the host namespace.
    pub fn kubeconfig(&self) -> &Path {
        &self.cp.admin_kubeconfig
    }

    /// Apiserver port (on 127.0.0.1 and on the forwarder address).
    pub fn api_port(&self) -> u16 {
        self.cp.api_port
    }

    /// The API URL for processes inside nodes and pods.
    pub fn node_api_url(&self) -> String {
        format!("https://{}:{}", Segment::A.gateway_v4(), self.cp.api_port)
    }

    /// Time `start` took, and the control plane's share of it.
    pub fn startup(&self) -> (Duration, Duration) {
        (self.startup, self.cp.startup)
    }

    /// The underlay namespace (router between segments, forwarder host).
    pub fn underlay_netns(&self) -> &str {
        &self.underlay
    }

    /// The lab's binaries.
    pub fn bins(&self) -> &Bins {
        &self.bins
    }

    /// The CNI mode.
    pub fn cni_mode(&self) -> CniMode {
        self.opts.cni
    }

    /// One node by name.
    pub fn node(&self, name: &str) -> Result<LabNode> {
        self.nodes
            .read()
            .map_err(|_| anyhow::anyhow!("node table poisoned"))?
            .get(name)
            .cloned()
            .with_context(|| format!("no lab node {name}"))
    }

    /// All nodes.
    pub fn nodes(&self) -> Vec<LabNode> {
        self.nodes
            .read()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates a node: namespace on its segment, Node object and Lease, pod
    /// CIDR from nodeipam, CNI config (reference mode) and routes.
    pub async fn add_node(&self, spec: NodeSpec) -> Result<LabNode> {
        validate_node_name(&spec.name)?;
        let host = {
            let mut hosts = self.hosts.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let h = hosts.entry(spec.segment).or_insert(10);
            *h = h.checked_add(1).context("too many nodes on one segment")?;
            *h
        };
        if self
            .nodes
            .read()
            .map(|n| n.contains_key(&spec.name))
            .unwrap_or(false)
        {
            bail!("node {} already exists", spec.name);
        }
        let mut node = LabNode::new(&self.prefix, &self.dir, &spec.name, spec.segment, host);
        node.create(&self.underlay, host).await?;
        control_plane::write_kubeconfig(&node.kubeconfig, &self.node_api_url(), &self.cp.pki)?;
        node.register(&self.client).await?;
        let cidr = node.wait_pod_cidr(&self.client, CIDR_TIMEOUT).await?;
        node.pod_cidr = Some(cidr.clone());
        if self.opts.cni == CniMode::Reference {
            let conf = cni::reference_conflist(
                &cidr,
                &node.dir.join("cni-ipam"),
                &[POD_CIDR, SERVICE_CIDR, "172.31.250.0/23"],
            );
            std::fs::write(
                node.cni_conf_dir.join("10-knetlab.conflist"),
                serde_json::to_vec_pretty(&conf)?,
            )?;
        }
        self.nodes
            .write()
            .map_err(|_| anyhow::anyhow!("node table poisoned"))?
            .insert(node.name.clone(), node.clone());
        routes::sync(self).await?;
        tracing::info!(node = %node.name, ip = %node.ipv4, pod_cidr = %cidr, "node ready");
        Ok(node)
    }

    /// Creates a namespace and waits for its default ServiceAccount (pods
    /// are refused until it exists).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        match nss.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("creating namespace"),
        }
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        wait_for(
            "the namespace's default ServiceAccount",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await
    }

    /// Applies multi-document YAML (see [`crate::apply::apply_yaml`]).
    pub async fn apply_yaml(
        &self,
        yaml: &str,
        default_ns: &str,
    ) -> Result<Vec<kube::api::DynamicObject>> {
        crate::apply::apply_yaml(&self.client, yaml, default_ns).await
    }

    /// Waits until the pod is Ready and returns it.
    pub async fn wait_pod_ready(&self, ns: &str, name: &str, timeout: Duration) -> Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        wait_for(
            &format!("pod {ns}/{name} to be ready"),
            timeout,
            Duration::from_millis(200),
            || {
                let pods = pods.clone();
                async move {
                    let pod = pods.get(name).await?;
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    Ok(ready.then_some(pod))
                }
            },
        )
        .await
    }

    /// Writes `lab.json` for `knet-lab status` and `env`.
    fn write_state(&self) -> Result<()> {
        let nodes: Vec<_> = self
            .nodes()
            .iter()
            .map(|n| {
                json!({"name": n.name, "netns": n.netns, "ipv4": n.ipv4, "ipv6": n.ipv6, "podCIDR": n.pod_cidr,
                       "kubeconfig": n.kubeconfig, "stateDir": n.state_dir, "runDir": n.run_dir,
                       "cniConfDir": n.cni_conf_dir, "cniBinDir": n.cni_bin_dir, "cgroup": n.cgroup})
            })
            .collect();
        let state = json!({
            "id": self.opts.id, "pid": std::process::id(), "kubeconfig": self.cp.admin_kubeconfig,
            "apiPort": self.cp.api_port, "nodeApiUrl": self.node_api_url(), "underlayNetns": self.underlay,
            "startupMs": self.startup.as_millis(), "controlPlaneStartupMs": self.cp.startup.as_millis(),
            "cni": format!("{:?}", self.opts.cni), "knet": self.opts.knet, "nodes": nodes,
        });
        std::fs::write(
            self.dir.join(STATE_FILE),
            serde_json::to_vec_pretty(&state)?,
        )?;
        Ok(())
    }

    /// Tears the lab down now (also done on drop).
    pub fn teardown(&mut self) {
        if let Some(k) = self.kubelet.take() {
            k.abort();
        }
        self.guard.teardown();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("id", &self.opts.id)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

// === impl Guard ===

impl Guard {
    fn push(&self, task: JoinHandle<()>) {
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
    }

    fn teardown(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
        sweep::teardown(&self.run_root, &self.id);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.run_root.join(&self.id).exists() {
            self.teardown();
        }
    }
}

fn preflight(opts: &LabOptions) -> Result<()> {
    if opts.id.is_empty()
        || opts.id.len() > 12
        || !opts
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        bail!("lab id {:?} must be 1-12 characters of [a-z0-9]", opts.id);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab needs root (network namespaces, veths, cgroups)");
    }
    for tool in [
        "ip", "openssl", "setpriv", "unshare", "curl", "socat", "nft",
    ] {
        if which(tool).is_none() {
            bail!("the lab needs `{tool}` on PATH");
        }
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn validate_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name != "underlay"
        && !name.starts_with("pod-");
    if !ok {
        bail!("invalid lab node name {name:?} (lowercase DNS label, not `underlay` or `pod-*`)");
    }
    Ok(())
}

/// The underlay namespace: one bridge per segment, routing between them.
async fn create_underlay(name: &str) -> Result<()> {
    netns::add(name).await?;
    netns::sysctl(name, "net.ipv4.ip_forward", "1").await?;
    netns::sysctl(name, "net.ipv6.conf.all.forwarding", "1").await?;
    for seg in [Segment::A, Segment::B] {
        let br = format!("br-{}", seg.tag());
        netns::ip(name, &["link", "add", &br, "type", "bridge"]).await?;
        netns::ip(
            name,
            &[
                "addr",
                "add",
                &format!("{}/24", seg.gateway_v4()),
                "dev",
                &br,
            ],
        )
        .await?;
        netns::ip(
            name,
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", seg.gateway_v6()),
                "dev",
                &br,
                "nodad",
            ],
        )
        .await?;
        netns::ip(name, &["link", "set", &br, "up"]).await?;
    }
    Ok(())
}

/// Renews every node's Lease each beat and refreshes Node status now and then.
async fn heartbeat(client: Client, nodes: Arc<RwLock<BTreeMap<String, LabNode>>>) {
    let mut beat: u64 = 0;
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        beat += 1;
        let list: Vec<LabNode> = nodes
            .read()
            .map(|n| n.values().cloned().collect())
            .unwrap_or_default();
        for n in list {
            if let Err(error) = n.renew_lease(&client).await {
                tracing::warn!(node = %n.name, error = format!("{error:#}"), "lease renewal failed");
            }
            if beat.is_multiple_of(STATUS_EVERY)
                && let Err(error) = n.patch_status(&client).await
            {
                tracing::warn!(node = %n.name, error = format!("{error:#}"), "node status update failed");
            }
        }
    }
}

//! The real control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, all in the host network namespace on 127.0.0.1 with free
//! ports (so several labs can run side by side). Nodes reach the apiserver
//! through the lab's forwarder on the underlay router address, which is also
//! the advertised address behind the `kubernetes` Service.

use std::ffi::OsString;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use tokio::process::Child;

use crate::bins::Bins;
use crate::certs::Pki;
use crate::config::{
    API_SERVICE_IP, NODE_CIDR_MASK, NODE_CIDR_MASK_V6, POD_CIDR, POD_CIDR_V6, SERVICE_CIDR,
    SERVICE_CIDR_V6,
};
use crate::process::{self, wait_for};

/// How long the apiserver may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Controllers the lab runs in kube-controller-manager.
const CONTROLLERS: &str = "endpointslice,endpoint,endpointslicemirroring,nodeipam,nodelifecycle,namespace,serviceaccount,\
serviceaccount-token,garbagecollector,root-ca-cert-publisher,deployment,replicaset,daemonset,podgc,\
clusterrole-aggregation";

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// Apiserver port on 127.0.0.1 (and on the forwarder address).
    pub api_port: u16,
    /// etcd client port on 127.0.0.1.
    pub etcd_port: u16,
    /// The lab's PKI.
    pub pki: Pki,
    /// Admin kubeconfig for use from the host namespace.
    pub admin_kubeconfig: PathBuf,
    /// How long startup took.
    pub startup: Duration,
    children: Vec<Child>,
}

// === impl ControlPlane ===

impl ControlPlane {
    /// Starts etcd, apiserver, controller-manager and scheduler under `dir`,
    /// advertising `advertise` (reachable from nodes via the forwarder).
    /// Returns once the apiserver is ready and the controller-manager has
    /// created the `default` ServiceAccount.
    pub async fn start(
        dir: &Path,
        bins: &Bins,
        advertise: IpAddr,
        extra_sans: &[IpAddr],
    ) -> Result<Self> {
        Self::start_with(dir, bins, advertise, extra_sans, false).await
    }

    /// [`ControlPlane::start`], dual-stack when `dual_stack` (IPv4 + IPv6
    /// cluster and service CIDRs, so nodes get both pod CIDR families).
    pub async fn start_with(
        dir: &Path,
        bins: &Bins,
        advertise: IpAddr,
        extra_sans: &[IpAddr],
        dual_stack: bool,
    ) -> Result<Self> {
        // `--node-cidr-mask-size` is refused in a dual-stack cluster: per family there.
        let (cluster_cidr, service_cidr, mask_flags) = if dual_stack {
            (
                format!("{POD_CIDR},{POD_CIDR_V6}"),
                format!("{SERVICE_CIDR},{SERVICE_CIDR_V6}"),
                vec![
                    format!("--node-cidr-mask-size-ipv4={NODE_CIDR_MASK}"),
                    format!("--node-cidr-mask-size-ipv6={NODE_CIDR_MASK_V6}"),
                ],
            )
        } else {
            (
                POD_CIDR.to_owned(),
                SERVICE_CIDR.to_owned(),
                vec![format!("--node-cidr-mask-size={NODE_CIDR_MASK}")],
            )
        };
        let t0 = Instant::now();
        let mut sans: Vec<String> = [
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP:127.0.0.1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        sans.push(format!("IP:{API_SERVICE_IP}"));
        sans.push(format!("IP:{advertise}"));
        sans.extend(extra_sans.iter().map(|ip| format!("IP:{ip}")));
        let pki = Pki::generate(&dir.join("pki"), &sans).await?;
        let (etcd_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let pids = dir.join("pids");
        let logs = dir.join("logs");
        let mut children = Vec::new();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd: Vec<OsString> = vec![
            bins.get("etcd").into(),
            "--name=lab".into(),
            format!("--data-dir={}", dir.join("etcd").display()).into(),
            format!("--listen-client-urls={etcd_url}").into(),
            format!("--advertise-client-urls={etcd_url}").into(),
            format!("--listen-peer-urls={peer_url}").into(),
            format!("--initial-advertise-peer-urls={peer_url}").into(),
            format!("--initial-cluster=lab={peer_url}").into(),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        children.push(spawn(etcd, &logs, &pids, "etcd").await?);

        let p = |p: &Path| p.display().to_string();
        let apiserver: Vec<OsString> = [
            p(&bins.get("kube-apiserver")),
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--advertise-address={advertise}"),
            format!("--tls-cert-file={}", p(&pki.apiserver_crt)),
            format!("--tls-private-key-file={}", p(&pki.apiserver_key)),
            format!("--client-ca-file={}", p(&pki.ca_crt)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            format!("--service-cluster-ip-range={service_cidr}"),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            "--enable-priority-and-fairness=false".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", p(&dir.join("pki/apiserver-certs"))),
            "--v=1".into(),
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        children.push(spawn(apiserver, &logs, &pids, "kube-apiserver").await?);

        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(
            &admin_kubeconfig,
            &format!("https://127.0.0.1:{api_port}"),
            &pki,
        )?;
        let kc = p(&admin_kubeconfig);
        let mut kcm: Vec<OsString> = [
            p(&bins.get("kube-controller-manager")),
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            format!("--controllers={CONTROLLERS}"),
            format!("--service-account-private-key-file={}", p(&pki.sa_key)),
            format!("--root-ca-file={}", p(&pki.ca_crt)),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={cluster_cidr}"),
            format!("--service-cluster-ip-range={service_cidr}"),
            "--use-service-account-credentials=false".into(),
            "--v=1".into(),
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        kcm.extend(mask_flags.into_iter().map(Into::into));
        let sched: Vec<OsString> = [
            p(&bins.get("kube-scheduler")),
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--v=1".into(),
        ]
        .into_iter()
        .map(Into::into)
        .collect();

        let client = admin_client(&admin_kubeconfig).await?;
        wait_ready(&client).await?;
        tracing::info!(elapsed = ?t0.elapsed(), port = api_port, "apiserver ready");
        children.push(spawn(kcm, &logs, &pids, "kube-controller-manager").await?);
        children.push(spawn(sched, &logs, &pids, "kube-scheduler").await?);
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_for(
            "the default ServiceAccount (controller-manager running)",
            READY_TIMEOUT,
            Duration::from_millis(200),
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await?;
        let startup = t0.elapsed();
        tracing::info!(?startup, "control plane ready");
        Ok(Self {
            api_port,
            etcd_port,
            pki,
            admin_kubeconfig,
            startup,
            children,
        })
    }

    /// Whether every control-plane process is still running.
    pub fn check_alive(&mut self) -> Result<()> {
        for c in &mut self.children {
            if let Some(status) = c.try_wait()? {
                anyhow::bail!("control-plane process {:?} exited: {status}", c.id());
            }
        }
        Ok(())
    }
}

async fn spawn(argv: Vec<OsString>, logs: &Path, pids: &Path, name: &str) -> Result<Child> {
    // Tagged like every lab process; the lab id is the run dir's name.
    let id = pids
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (child, _) = process::spawn_daemon(
        argv,
        logs.join(format!("{name}.log")),
        pids.join(format!("cp-{name}.pid")),
        name.to_owned(),
        vec![(crate::sweep::LAB_ENV.to_owned(), id)],
    )
    .await?;
    Ok(child)
}

async fn wait_ready(client: &Client) -> Result<()> {
    wait_for(
        "apiserver /readyz",
        READY_TIMEOUT,
        Duration::from_millis(200),
        || async {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            let text = client.request_text(req).await?;
            Ok((text.trim() == "ok").then_some(()))
        },
    )
    .await
}

/// A client for the admin kubeconfig at `path`.
pub async fn admin_client(path: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// Writes an admin kubeconfig for `server`.
pub fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: knet-lab\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt}\n    \
         client-key: {key}\ncontexts:\n- name: knet-lab\n  context:\n    cluster: knet-lab\n    user: admin\n\
         current-context: knet-lab\n",
        ca = pki.ca_crt.display(),
        crt = pki.admin_crt.display(),
        key = pki.admin_key.display(),
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A currently free TCP port on 127.0.0.1.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

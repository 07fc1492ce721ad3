//! The lab (knet-e2e): a real etcd + kube-apiserver + controller-manager, and nodes that are
//! network namespaces with their own kubeconfig and directories. Tests that need the Kubernetes
//! API or the real `knet daemon` run here; the daemon only ever runs inside a lab node's
//! namespace, never in the host's.

use std::future::Future;
use std::time::Duration;

use knet_bootstrap::{BootstrapOptions, ClusterApi, DaemonStart, SocketLbChoice};
use knet_core::paths::Paths;
use knet_e2e::{CniMode, Lab, LabNode, LabOptions};

/// A fresh lab with `nodes` nodes (`node-1`...) whose pods would use the CNI config knet
/// installs. Lab ids are at most 12 characters: `test` is a short tag.
pub async fn start(test: &str, nodes: usize) -> Lab {
    let id = format!("b{test}{}", std::process::id() % 100_000);
    let mut opts = LabOptions::new(&id, nodes);
    opts.cni = CniMode::ConfDir;
    Lab::start(opts)
        .await
        .expect("the lab must start (root, and `make deps` for its control plane)")
}

/// A lab node.
pub fn node(lab: &Lab, name: &str) -> LabNode {
    lab.node(name).expect("lab node")
}

/// The node's knet directories, as the lab laid them out.
pub fn paths(n: &LabNode) -> Paths {
    Paths {
        state_dir: n.state_dir.clone(),
        run_dir: n.run_dir.clone(),
        cni_conf_dir: n.cni_conf_dir.clone(),
        cni_bin_dir: n.cni_bin_dir.clone(),
    }
}

/// Bootstrap options for lab node `n`: its paths, name and kubeconfig, the real knet binary,
/// a detached daemon, a 90 s readiness wait and socket load balancing on the node's lab-made
/// cgroup.
pub fn options(n: &LabNode) -> BootstrapOptions {
    let mut o = BootstrapOptions::new(paths(n), n.name.clone());
    o.socket_lb = SocketLbChoice::Cgroup(n.cgroup.clone());
    o.kubeconfig = Some(n.kubeconfig.clone());
    o.knet_binary = super::knet_binary();
    o.start_daemon = DaemonStart::Detached;
    o.ready_timeout = Duration::from_secs(90);
    o
}

/// The lab's API from the host, through the admin kubeconfig the lab wrote.
pub async fn admin_api(lab: &Lab) -> ClusterApi {
    ClusterApi::from_kubeconfig(Some(lab.kubeconfig()))
        .await
        .expect("client from the lab's admin kubeconfig")
}

/// Runs `f` on a thread inside node `n`'s network namespace, on a runtime of its own (so
/// sysctls, kernel probes and the daemon bootstrap spawns land in the node). The caller's
/// runtime keeps running the lab meanwhile: call this from a multi-threaded test runtime.
pub async fn in_node<T, F, Fut>(n: &LabNode, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let ns = knet_e2e::netns::path(&n.netns);
    tokio::task::spawn_blocking(move || {
        knet_bootstrap::netns::in_netns(&ns, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f())
        })
    })
    .await
    .expect("the node thread panicked")
    .expect("entering the node's network namespace")
}

/// Hands the daemon `pid` (started on node `n` by the test) to the lab, whose teardown stops
/// it even if the test fails before its own reset does.
pub fn adopt_daemon(lab: &Lab, n: &LabNode, pid: u32) {
    let pid = i32::try_from(pid).expect("pid");
    knet_e2e::process::PidRecord::of(pid, "knet")
        .expect("daemon alive")
        .write(
            &lab.dir()
                .join("pids")
                .join(format!("knet-bootstrap-test-{}.pid", n.name)),
        )
        .expect("write pid record");
}

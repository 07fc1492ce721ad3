//! The lab's kubelet: watches Pods bound to lab nodes and runs each one as a
//! network namespace set up through the node's CNI chain, with the pod's
//! containers as processes inside it. It writes pod status (IPs, readiness
//! from readinessProbes, container states) and finishes graceful deletion.
//!
//! One task per pod owns its lifecycle; deletion (a deletionTimestamp, or
//! the object vanishing) cancels it and the task cleans up: processes (by
//! pid file), CNI DEL, the namespace, then the API object (grace period 0).

mod pod;
mod probe;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::CniMode;
use crate::node::LabNode;

pub use pod::pod_netns_name;

/// What the kubelet needs from the lab.
pub struct KubeletCtx {
    /// Lab id (tags processes).
    pub lab_id: String,
    /// `knetlab-<id>-`.
    pub prefix: String,
    /// Lab run dir.
    pub dir: PathBuf,
    /// Admin client.
    pub client: Client,
    /// The agnhost binary (for images named *agnhost*).
    pub agnhost: PathBuf,
    /// CNI mode.
    pub cni: CniMode,
    /// The lab's nodes, by name.
    pub nodes: Arc<RwLock<BTreeMap<String, LabNode>>>,
}

impl std::fmt::Debug for KubeletCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletCtx")
            .field("lab_id", &self.lab_id)
            .finish_non_exhaustive()
    }
}

/// Pods the kubelet runs, and uids whose lifecycle is over (never restarted,
/// even when a stale list still shows them).
#[derive(Default)]
struct Pods {
    running: HashMap<String, PodEntry>,
    finished: HashSet<String>,
}

struct PodEntry {
    cancel: CancellationToken,
    delete_from_api: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// The running kubelet; dropping it does not stop pods (teardown does).
pub struct Kubelet {
    pods: Arc<Mutex<Pods>>,
    task: JoinHandle<()>,
}

// === impl Kubelet ===

impl Kubelet {
    /// Starts watching pods.
    pub fn start(ctx: Arc<KubeletCtx>) -> Self {
        let pods: Arc<Mutex<Pods>> = Arc::default();
        let task = tokio::spawn(watch(ctx, pods.clone()));
        Self { pods, task }
    }

    /// Stops the watch and cancels every pod task (without cleanup: the
    /// lab's teardown removes what they leave).
    pub fn abort(&self) {
        self.task.abort();
        if let Ok(mut pods) = self.pods.lock() {
            for (_, e) in pods.running.drain() {
                e.task.abort();
            }
        }
    }
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet").finish_non_exhaustive()
    }
}

async fn watch(ctx: Arc<KubeletCtx>, pods: Arc<Mutex<Pods>>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Pods bound to a node before the lab finished adding it produce no
    // further events: a periodic relist picks them up.
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            ev = stream.try_next() => match ev {
                Ok(Some(Event::Apply(pod) | Event::InitApply(pod))) => on_pod(&ctx, &pods, pod),
                Ok(Some(Event::Delete(pod))) => on_gone(&pods, &pod),
                Ok(Some(Event::Init | Event::InitDone)) => {}
                Ok(None) => return,
                Err(error) => tracing::warn!(%error, "pod watch error"),
            },
            _ = resync.tick() => relist(&ctx, &pods).await,
        }
    }
}

/// Relists the Pods bound to each lab node, one node at a time, as a real kubelet lists its own
/// (`spec.nodeName=<node>`, which the API server answers from an index): a cluster holding
/// many Pods on other nodes (the DNS benchmark's 50k) costs the lab nothing per relist.
async fn relist(ctx: &Arc<KubeletCtx>, pods: &Arc<Mutex<Pods>>) {
    let names: Vec<String> = ctx
        .nodes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    for name in names {
        let params = ListParams::default().fields(&format!("spec.nodeName={name}"));
        match api.list(&params).await {
            Ok(list) => list.items.into_iter().for_each(|p| on_pod(ctx, pods, p)),
            Err(error) => tracing::warn!(%error, node = name, "pod resync failed"),
        }
    }
}

/// How often the kubelet relists pods.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(5);

fn on_pod(ctx: &Arc<KubeletCtx>, pods: &Arc<Mutex<Pods>>, pod: Pod) {
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let Some(node) = ctx
        .nodes
        .read()
        .ok()
        .and_then(|n| n.get(&node_name).cloned())
    else {
        return;
    };
    let Some(uid) = pod.uid() else { return };
    let Ok(mut guard) = pods.lock() else { return };
    if guard.finished.contains(&uid) {
        return;
    }
    let map = &mut guard.running;
    if pod.metadata.deletion_timestamp.is_some() {
        match map.get(&uid) {
            Some(e) => {
                e.delete_from_api.store(true, Ordering::SeqCst);
                e.cancel.cancel();
            }
            None => {
                // Never started here (or the lab restarted): clean up and finish.
                let entry = spawn_pod(ctx, pods, pod, node, true);
                entry.cancel.cancel();
                map.insert(uid, entry);
            }
        }
        return;
    }
    if map.contains_key(&uid) {
        return;
    }
    // Pods that already finished are left alone.
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    tracing::info!(pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()), node = %node.name, "starting pod");
    let entry = spawn_pod(ctx, pods, pod, node, false);
    map.insert(uid, entry);
}

fn on_gone(pods: &Arc<Mutex<Pods>>, pod: &Pod) {
    let Some(uid) = pod.uid() else { return };
    if let Ok(map) = pods.lock()
        && let Some(e) = map.running.get(&uid)
    {
        e.cancel.cancel();
    }
}

fn spawn_pod(
    ctx: &Arc<KubeletCtx>,
    pods: &Arc<Mutex<Pods>>,
    pod: Pod,
    node: LabNode,
    delete: bool,
) -> PodEntry {
    let cancel = CancellationToken::new();
    let delete_from_api = Arc::new(AtomicBool::new(delete));
    let uid = pod.uid().unwrap_or_default();
    let task = tokio::spawn({
        let (ctx, pods, cancel, delete_from_api) = (
            ctx.clone(),
            pods.clone(),
            cancel.clone(),
            delete_from_api.clone(),
        );
        async move {
            pod::lifecycle(ctx, pod, node, cancel, delete_from_api).await;
            if let Ok(mut map) = pods.lock() {
                map.running.remove(&uid);
                map.finished.insert(uid);
            }
        }
    });
    PodEntry {
        cancel,
        delete_from_api,
        task,
    }
}

//! One pod's lifecycle: sandbox (netns + CNI ADD + resolv.conf), container
//! processes, readiness, restarts, and cleanup on deletion.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::status::{ContainerRun, PodView, render};
use super::{KubeletCtx, probe};
use crate::cni::{self, CniRuntime, ConfList};
use crate::config::{API_SERVICE_IP, CLUSTER_DNS, CLUSTER_DOMAIN, CniMode};
use crate::netns;
use crate::node::LabNode;
use crate::process::{self, PidRecord};
use crate::sweep::LAB_ENV;

/// How long a pod may wait for a CNI config to appear in ConfDir mode.
const CNI_CONF_WAIT: Duration = Duration::from_secs(600);
/// Longest grace period the lab honours when stopping containers.
const MAX_GRACE: Duration = Duration::from_secs(10);

/// The network namespace of the pod with `uid` in lab `prefix`.
pub fn pod_netns_name(prefix: &str, uid: &str) -> String {
    format!("{prefix}pod-{uid}")
}

struct Sandbox {
    ns: String,
    name: String,
    uid: String,
    netns: String,
    dir: PathBuf,
    node: LabNode,
    /// `spec.hostNetwork`: runs in the node's namespace, no CNI.
    host_network: bool,
}

/// Runs the pod until cancelled, then cleans up and (if asked) deletes it.
pub async fn lifecycle(
    ctx: Arc<KubeletCtx>,
    pod: Pod,
    node: LabNode,
    cancel: CancellationToken,
    delete_from_api: Arc<AtomicBool>,
) {
    let uid = pod.uid().unwrap_or_default();
    let sb = Sandbox {
        ns: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        host_network: pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false),
        netns: pod_netns_name(&ctx.prefix, &uid),
        dir: ctx.dir.join("pods").join(&uid),
        uid,
        node,
    };
    let sb = if sb.host_network {
        Sandbox {
            netns: sb.node.netns.clone(),
            ..sb
        }
    } else {
        sb
    };
    let key = format!("{}/{}", sb.ns, sb.name);
    tokio::select! {
        r = run(&ctx, &pod, &sb) => {
            if let Err(error) = r {
                tracing::warn!(pod = %key, error = format!("{error:#}"), "pod failed to run");
                let msg = json!({"status": {"reason": "LabError", "message": format!("{error:#}")}});
                let _ = pods(&ctx, &sb.ns).patch_status(&sb.name, &PatchParams::default(), &Patch::Merge(&msg)).await;
            }
            cancel.cancelled().await;
        }
        () = cancel.cancelled() => {}
    }
    tracing::info!(pod = %key, "stopping pod");
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .map_or(MAX_GRACE, |g| {
            Duration::from_secs(u64::try_from(g).unwrap_or(0)).min(MAX_GRACE)
        });
    if let Err(error) = cleanup(&sb, grace).await {
        tracing::warn!(pod = %key, error = format!("{error:#}"), "pod cleanup incomplete");
    }
    if delete_from_api.load(Ordering::SeqCst) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(sb.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods(&ctx, &sb.ns).delete(&sb.name, &dp).await {
            Ok(_) => tracing::info!(pod = %key, "pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(error) => tracing::warn!(pod = %key, %error, "final pod delete failed"),
        }
    }
}

fn pods(ctx: &KubeletCtx, ns: &str) -> Api<Pod> {
    Api::namespaced(ctx.client.clone(), ns)
}

async fn run(ctx: &Arc<KubeletCtx>, pod: &Pod, sb: &Sandbox) -> Result<()> {
    let spec = pod.spec.clone().context("pod without spec")?;
    let ips = setup_sandbox(ctx, sb).await?;
    let start = Time(Timestamp::now());
    let (tx, mut rx) = mpsc::channel::<(usize, Option<i32>)>(16);
    let mut runs: Vec<ContainerRun> = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let mut run = ContainerRun::new(c.clone());
        start_container(ctx, sb, &ips, i, &mut run, &tx).await?;
        runs.push(run);
    }
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let view = PodView {
        ips: ips.clone(),
        host_ips: vec![sb.node.ipv4.to_string(), sb.node.ipv6.to_string()],
        start_time: start,
        restart_policy: restart_policy.clone(),
    };
    let mut last: Option<Value> = None;
    let mut ready_since = Time(Timestamp::now());
    let mut was_ready = false;
    loop {
        let ready = runs.iter().all(|r| r.ready);
        if ready != was_ready {
            was_ready = ready;
            ready_since = Time(Timestamp::now());
        }
        let status = render(&view, &runs, &ready_since);
        if last.as_ref() != Some(&status) {
            pods(ctx, &sb.ns)
                .patch_status(&sb.name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .context("writing pod status")?;
            last = Some(status);
        }
        let next_probe = runs.iter().filter_map(ContainerRun::next_due).min();
        let wait = next_probe.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            Some((i, code)) = rx.recv() => {
                let Some(run) = runs.get_mut(i) else { continue };
                let pid = run.pid();
                run.exited(code);
                tracing::info!(pod = %sb.name, container = %run.spec.name, ?pid, ?code, "container exited");
                if run.should_restart(&restart_policy) {
                    tokio::time::sleep(run.backoff()).await;
                    run.restarts += 1;
                    start_container(ctx, sb, &ips, i, run, &tx).await?;
                }
            }
            () = tokio::time::sleep(wait) => {
                for run in runs.iter_mut().filter(|r| r.next_due().is_some_and(|t| t <= Instant::now())) {
                    let ok = match run.spec.readiness_probe.clone() {
                        Some(p) => probe::run(&p, &run.spec, &ips, &sb.node.netns, &sb.netns).await,
                        None => true,
                    };
                    run.probed(ok);
                }
            }
        }
    }
}

/// Creates the namespace, runs CNI ADD and writes resolv.conf/hosts.
async fn setup_sandbox(ctx: &KubeletCtx, sb: &Sandbox) -> Result<Vec<String>> {
    std::fs::create_dir_all(&sb.dir)?;
    if sb.host_network {
        return Ok(vec![sb.node.ipv4.to_string(), sb.node.ipv6.to_string()]);
    }
    if !netns::exists(&sb.netns) {
        netns::add(&sb.netns).await?;
    }
    let conf = wait_conflist(ctx, &sb.node).await?;
    let result = conf.add(&cni_runtime(sb)).await.context("CNI ADD")?;
    std::fs::write(
        sb.dir.join("cni.json"),
        serde_json::to_vec(&json!({"conf": conf.list, "result": result}))?,
    )?;
    let ips = cni::result_ips(&result);
    tracing::info!(pod = %sb.name, ?ips, "pod network ready");
    let etc = PathBuf::from("/etc/netns").join(&sb.netns);
    std::fs::create_dir_all(&etc)?;
    std::fs::write(
        etc.join("resolv.conf"),
        format!(
            "search {ns}.svc.{d} svc.{d} {d}\nnameserver {CLUSTER_DNS}\noptions ndots:5\n",
            ns = sb.ns,
            d = CLUSTER_DOMAIN
        ),
    )?;
    let first = ips.first().cloned().unwrap_or_default();
    std::fs::write(
        etc.join("hosts"),
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{first}\t{}\n",
            sb.name
        ),
    )?;
    Ok(ips)
}

async fn wait_conflist(ctx: &KubeletCtx, node: &LabNode) -> Result<ConfList> {
    let deadline = Instant::now() + CNI_CONF_WAIT;
    loop {
        if let Some(c) = ConfList::load(&node.cni_conf_dir)? {
            return Ok(c);
        }
        if ctx.cni == CniMode::Reference {
            bail!("no reference CNI config on node {} yet", node.name);
        }
        if Instant::now() > deadline {
            bail!("no CNI config appeared in {}", node.cni_conf_dir.display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn cni_runtime(sb: &Sandbox) -> CniRuntime {
    CniRuntime {
        container_id: sb.uid.clone(),
        netns_path: netns::path(&sb.netns),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), sb.ns.clone()),
            ("K8S_POD_NAME".into(), sb.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), sb.uid.clone()),
            ("K8S_POD_UID".into(), sb.uid.clone()),
        ],
        bin_dirs: sb.node.cni_path(),
        run_in_netns: sb.node.netns.clone(),
    }
}

/// The command a container runs: agnhost images run the agnhost binary
/// (entrypoint `/agnhost`, default args `pause`), others their command.
pub fn container_argv(c: &Container, agnhost: &std::path::Path) -> Result<Vec<OsString>> {
    let image = c.image.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let command = c.command.clone().unwrap_or_default();
    let mut argv: Vec<OsString> = Vec::new();
    if image.contains("agnhost") {
        if command.is_empty() {
            argv.push(agnhost.into());
            if args.is_empty() {
                argv.push("pause".into());
            }
        } else {
            for (i, a) in command.iter().enumerate() {
                let is_agnhost =
                    i == 0 && matches!(a.as_str(), "/agnhost" | "agnhost" | "/agnhost-2");
                argv.push(if is_agnhost { agnhost.into() } else { a.into() });
            }
        }
    } else {
        argv.extend(command.iter().map(OsString::from));
    }
    argv.extend(args.iter().map(OsString::from));
    if argv.is_empty() {
        bail!(
            "container {} has no command (only agnhost images have a default)",
            c.name
        );
    }
    Ok(argv)
}

async fn start_container(
    ctx: &KubeletCtx,
    sb: &Sandbox,
    ips: &[String],
    idx: usize,
    run: &mut ContainerRun,
    tx: &mpsc::Sender<(usize, Option<i32>)>,
) -> Result<()> {
    let c = &run.spec;
    let cmd = container_argv(c, &ctx.agnhost)?;
    // Enter the pod's netns, get a UTS namespace with the pod's hostname,
    // join the node's cgroup, then exec the command (same pid throughout).
    let script = r#"echo $$ > "$1/cgroup.procs" 2>/dev/null; echo "$2" > /proc/sys/kernel/hostname; shift 2; exec "$@""#;
    let mut inner: Vec<OsString> = vec![
        "unshare".into(),
        "--uts".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        script.into(),
        "knetlab-pod".into(),
        sb.node.cgroup.clone().into(),
        if sb.host_network {
            &sb.node.name
        } else {
            &sb.name
        }
        .chars()
        .take(63)
        .collect::<String>()
        .into(),
    ];
    inner.extend(cmd);
    let argv = netns::exec_argv(&sb.netns, &inner);
    let marker = format!("KNETLAB_POD={}", sb.uid);
    let mut env = vec![
        (LAB_ENV.to_owned(), ctx.lab_id.clone()),
        ("KNETLAB_POD".to_owned(), sb.uid.clone()),
        (
            "KUBERNETES_SERVICE_HOST".to_owned(),
            API_SERVICE_IP.to_owned(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_owned(), "443".to_owned()),
        ("HOSTNAME".to_owned(), sb.name.clone()),
    ];
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(src)) => match src.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                Some("metadata.name") => sb.name.clone(),
                Some("metadata.namespace") => sb.ns.clone(),
                Some("metadata.uid") => sb.uid.clone(),
                Some("spec.nodeName") => sb.node.name.clone(),
                Some("status.podIP") => ips.first().cloned().unwrap_or_default(),
                Some("status.hostIP") => sb.node.ipv4.to_string(),
                _ => continue,
            },
            (None, None) => String::new(),
        };
        env.push((e.name.clone(), value));
    }
    let log = sb.dir.join(format!("{}.log", c.name));
    let pid_file = ctx
        .dir
        .join("pids")
        .join(format!("pod-{}-{}.pid", sb.uid, c.name));
    let (mut child, rec) = process::spawn_daemon(argv, log, pid_file, marker, env).await?;
    tracing::info!(pod = %sb.name, container = %c.name, pid = rec.pid, "container started");
    run.started(rec);
    let tx = tx.clone();
    tokio::spawn(async move {
        let code = child.wait().await.ok().and_then(|s| s.code());
        let _ = tx.send((idx, code)).await;
    });
    Ok(())
}

/// Stops containers, runs CNI DEL, deletes the namespace and its /etc/netns.
async fn cleanup(sb: &Sandbox, grace: Duration) -> Result<()> {
    let pid_dir = sb
        .dir
        .parent()
        .and_then(|p| p.parent())
        .map(|d| d.join("pids"));
    if let Some(pid_dir) = pid_dir {
        let prefix = format!("pod-{}-", sb.uid);
        let files: Vec<PathBuf> = std::fs::read_dir(&pid_dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                    })
                    .collect()
            })
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            for f in files {
                if let Ok(rec) = PidRecord::read(&f) {
                    rec.stop(grace);
                }
                let _ = std::fs::remove_file(&f);
            }
        })
        .await?;
    }
    let mut result = Ok(());
    if sb.host_network {
        let _ = std::fs::remove_dir_all(&sb.dir);
        return result;
    }
    if netns::exists(&sb.netns) {
        let cached: Option<Value> = std::fs::read(sb.dir.join("cni.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        let conf = match &cached {
            Some(c) => Some(ConfList {
                file: PathBuf::new(),
                list: c["conf"].clone(),
            }),
            None => ConfList::load(&sb.node.cni_conf_dir)?,
        };
        if let Some(conf) = conf {
            result = conf
                .del(&cni_runtime(sb), cached.as_ref().map(|c| &c["result"]))
                .await;
        }
    }
    netns::del_sync(&sb.netns)?;
    let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&sb.netns));
    let _ = std::fs::remove_dir_all(&sb.dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr(image: &str, command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            command: command.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            args: args.map(|c| c.iter().map(|s| (*s).to_owned()).collect()),
            ..Container::default()
        }
    }

    #[test]
    fn agnhost_images_run_the_agnhost_binary() {
        let a = std::path::Path::new("/bin/agnhost");
        let argv = container_argv(
            &ctr(
                "registry.k8s.io/e2e-test-images/agnhost:2.53",
                None,
                Some(&["netexec"]),
            ),
            a,
        )
        .expect("argv");
        assert_eq!(argv, vec![OsString::from("/bin/agnhost"), "netexec".into()]);
        let argv = container_argv(&ctr("agnhost", None, None), a).expect("argv");
        assert_eq!(argv, vec![OsString::from("/bin/agnhost"), "pause".into()]);
        let argv = container_argv(
            &ctr("agnhost", Some(&["/agnhost", "serve-hostname"]), None),
            a,
        )
        .expect("argv");
        assert_eq!(
            argv,
            vec![OsString::from("/bin/agnhost"), "serve-hostname".into()]
        );
        let argv =
            container_argv(&ctr("busybox", Some(&["sleep"]), Some(&["9"])), a).expect("argv");
        assert_eq!(argv, vec![OsString::from("sleep"), "9".into()]);
        assert!(container_argv(&ctr("busybox", None, None), a).is_err());
    }
}

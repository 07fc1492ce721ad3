//! The whole `knet bootstrap` sequence. Against the lab (a real kube-apiserver, nodes that are
//! network namespaces) with the real `knet daemon`: the first node creates the cluster config,
//! starts the daemon and waits until its features are ready; a re-run is a no-op; a dead daemon
//! is restarted; reset removes it all. A second node adopts the config, refuses an immutable
//! conflict before writing anything, and completes an interrupted bootstrap. Features that never
//! become ready fail bootstrap with their messages. Without the lab (in a test namespace): an
//! unreachable API server, a bad file and a failed preflight leave the node untouched.

use std::time::Duration;

use knet_bootstrap::{
    BootstrapError, BootstrapOptions, ConfigOrigin, DaemonStart, DaemonState, Outcome, Step,
    bootstrap, read_cluster_config, reset,
};
use knet_core::config::ClusterConfig;

use crate::support::netns::TestNetns;
use crate::support::{
    alive, closed_port, knet_binary, lab, temp_paths, tree, wait_gone, write_kubeconfig,
};

fn kind(s: &Step) -> String {
    let dbg = format!("{s:?}");
    dbg.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn run_bootstrap(
    n: &knet_e2e::LabNode,
    o: &BootstrapOptions,
) -> (Result<Outcome, BootstrapError>, Vec<Step>) {
    let o = o.clone();
    lab::in_node(n, move || async move {
        let mut steps = Vec::new();
        let outcome = bootstrap(o, &mut |s| steps.push(s)).await;
        (outcome, steps)
    })
    .await
}

fn spawned_pid(steps: &[Step]) -> u32 {
    steps
        .iter()
        .find_map(|s| match s {
            Step::Daemon(DaemonState::Spawned { pid, .. }) => Some(*pid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no daemon was spawned: {steps:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_adopt_rerun_restart_not_ready_and_reset_against_the_lab() {
    let lab = lab::start("fl", 2).await;
    let api = lab::admin_api(&lab).await;
    let n1 = lab::node(&lab, "node-1");
    let n2 = lab::node(&lab, "node-2");

    // --- node-1: the first node, with the real daemon.
    let mut o = lab::options(&n1);
    o.config_file = Some("dns:\n  cluster-domain: corp.local\n".into());
    let (outcome, steps) = run_bootstrap(&n1, &o).await;
    for s in &steps {
        eprintln!("node-1: {s}");
    }
    let outcome = outcome.unwrap_or_else(|e| {
        panic!(
            "bootstrap node-1: {e}; daemon log: {}",
            std::fs::read_to_string(o.paths.log_file()).unwrap_or_default()
        )
    });
    let pid = spawned_pid(&steps);
    lab::adopt_daemon(&lab, &n1, pid);
    assert_eq!(
        outcome,
        Outcome::Bootstrapped {
            config: ConfigOrigin::Created
        }
    );
    let kinds: Vec<String> = steps.iter().map(kind).filter(|k| k != "Waiting").collect();
    let sysctls = kinds.iter().filter(|k| *k == "Sysctl").count();
    let mut want = vec!["Preflight", "ClusterConfig", "CniConfig", "CniPlugin"];
    want.extend(std::iter::repeat_n("Sysctl", sysctls));
    want.extend(["Store", "SocketLb", "Daemon", "Ready", "Marker"]);
    assert_eq!(kinds, want, "{steps:#?}");
    assert!(
        sysctls >= 2,
        "the required sysctls are reported: {steps:#?}"
    );
    // What landed on the node.
    let paths = &o.paths;
    assert!(paths.cni_conflist().exists());
    assert_eq!(
        std::fs::metadata(paths.cni_plugin()).expect("plugin").len(),
        std::fs::metadata(&o.knet_binary).expect("binary").len(),
        "the plugin is the knet binary"
    );
    assert_eq!(
        std::fs::read_to_string(paths.socket_lb_cgroup_file()).expect("socket LB setting"),
        format!("{}\n", n1.cgroup.display()),
        "bootstrap records the socket LB cgroup it was given"
    );
    let marker = std::fs::read_to_string(paths.bootstrap_marker()).expect("marker");
    assert!(marker.contains("node: node-1"), "{marker}");
    assert!(marker.contains("cluster-config: created"), "{marker}");
    let cfg = read_cluster_config(&api)
        .await
        .expect("read")
        .expect("the ConfigMap exists");
    assert_eq!(cfg.dns.cluster_domain, "corp.local");
    // rp_filter starts at 0 in a new namespace; bootstrap set it in the node's.
    let rp = lab
        .exec_node(
            "node-1",
            &["cat", "/proc/sys/net/ipv4/conf/all/rp_filter"],
            Duration::from_secs(10),
        )
        .await
        .expect("read the node's sysctl");
    assert_eq!(rp.stdout.trim(), "2", "sysctl set in the node's namespace");
    // The real daemon reports every enabled feature ready, with the config bootstrap stored.
    let client = knet_api::Client::new(paths.socket());
    let status: knet_core::NodeStatus = client.get("/v1/status").await.expect("status");
    assert!(status.all_ready(), "{status:?}");
    let answer: knet_api::ConfigAnswer = client.get("/v1/config").await.expect("config");
    assert_eq!(answer.config, cfg);

    // Second run: already bootstrapped, the same daemon.
    let (outcome, steps) = run_bootstrap(&n1, &o).await;
    assert_eq!(outcome.expect("rerun"), Outcome::AlreadyBootstrapped);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(
        steps[0]
            .to_string()
            .starts_with("node is already bootstrapped"),
        "{}",
        steps[0]
    );
    assert!(
        steps[0].to_string().contains("--file ignored"),
        "{}",
        steps[0]
    );
    assert_eq!(steps[1], Step::Daemon(DaemonState::AlreadyRunning { pid }));

    // The daemon died: the next run starts it again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop our daemon");
    wait_gone(pid).await;
    let (outcome, steps) = run_bootstrap(&n1, &o).await;
    assert_eq!(outcome.expect("restart"), Outcome::AlreadyBootstrapped);
    let new_pid = spawned_pid(&steps);
    lab::adopt_daemon(&lab, &n1, new_pid);
    assert_ne!(new_pid, pid);

    // Reset removes what bootstrap installed and stops the daemon.
    reset(paths, &mut |_| {}).await.expect("reset");
    assert!(!alive(new_pid), "the daemon is stopped");
    for p in [
        paths.cni_conflist(),
        paths.cni_plugin(),
        paths.bootstrap_marker(),
        paths.socket_lb_cgroup_file(),
        paths.store_dir(),
        paths.pid_file(),
        paths.socket(),
    ] {
        assert!(!p.exists(), "{} left behind", p.display());
    }

    // --- node-2: a further node adopts the cluster's config.
    let mut o2 = lab::options(&n2);
    o2.config_file = Some("pod-cidr: 10.2.0.0/16\n".into());
    let (outcome, _) = run_bootstrap(&n2, &o2).await;
    let err = outcome.expect_err("immutable conflict");
    assert!(
        matches!(err, BootstrapError::ConfigConflict { ref key, .. } if key == "pod-cidr"),
        "{err:?}"
    );
    for p in [
        o2.paths.cni_conflist(),
        o2.paths.cni_plugin(),
        o2.paths.store_dir(),
        o2.paths.bootstrap_marker(),
    ] {
        assert!(!p.exists(), "{} written despite the conflict", p.display());
    }

    // No daemon answers (the caller was to run it): bootstrap stops before the marker...
    o2.config_file = Some("dns:\n  cluster-domain: other.example\n".into());
    o2.start_daemon = DaemonStart::None;
    o2.ready_timeout = Duration::from_secs(1);
    let (outcome, _) = run_bootstrap(&n2, &o2).await;
    let err = outcome.expect_err("no daemon");
    assert!(
        matches!(err, BootstrapError::DaemonNotAnswering { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&o2.paths.socket().display().to_string()),
        "{err}"
    );
    assert!(!o2.paths.bootstrap_marker().exists());
    // ...and a re-run completes it, adopting the cluster's values over the file's.
    o2.ready_timeout = Duration::ZERO;
    let (outcome, steps) = run_bootstrap(&n2, &o2).await;
    let outcome = outcome.expect("adopting bootstrap");
    let Outcome::Bootstrapped {
        config: ConfigOrigin::Adopted { ignored },
    } = &outcome
    else {
        panic!("expected an adoption, got {outcome:?}");
    };
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0].key, "dns.cluster-domain");
    assert!(steps.contains(&Step::ReadinessSkipped), "{steps:?}");
    let marker = std::fs::read_to_string(o2.paths.bootstrap_marker()).expect("marker");
    assert!(marker.contains("cluster-config: adopted"), "{marker}");
    {
        // The store holds the cluster's config for the daemon's first start.
        let store = knet_store::Store::open(&o2.paths.store_dir()).expect("store");
        let cached: Option<ClusterConfig> = store
            .tree(knet_bootstrap::STORE_CONFIG_TREE)
            .expect("tree")
            .get_json(knet_bootstrap::STORE_CONFIG_KEY)
            .expect("get");
        assert_eq!(cached, Some(cfg.clone()));
    }
    reset(&o2.paths, &mut |_| {}).await.expect("reset node-2");

    // --- Features that never become ready: bootstrap fails with their messages, no marker.
    // Node "ghost" has no Node object, so the network feature waits for it forever.
    let mut o3 = lab::options(&n2);
    o3.node_name = "ghost".into();
    o3.ready_timeout = Duration::from_secs(10);
    let (outcome, steps) = run_bootstrap(&n2, &o3).await;
    let ghost_pid = spawned_pid(&steps);
    lab::adopt_daemon(&lab, &n2, ghost_pid);
    let err = outcome.expect_err("not ready");
    assert!(matches!(err, BootstrapError::NotReady { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("network: "), "{msg}");
    assert!(msg.contains("ghost"), "the feature's own message: {msg}");
    assert!(!o3.paths.bootstrap_marker().exists());
    assert!(
        steps.iter().any(|s| matches!(s, Step::Waiting { .. })),
        "pending features were reported: {steps:?}"
    );
    reset(&o3.paths, &mut |_| {}).await.expect("reset ghost");
    assert!(!alive(ghost_pid));
}

fn offline_options(dir: &std::path::Path) -> BootstrapOptions {
    let mut o = BootstrapOptions::new(temp_paths(dir), "n1");
    let url = format!("http://127.0.0.1:{}", closed_port());
    o.kubeconfig = Some(write_kubeconfig(dir, &url));
    o.knet_binary = knet_binary();
    o.ready_timeout = Duration::from_secs(5);
    o.start_daemon = DaemonStart::None;
    o
}

fn in_netns<T: Send>(f: impl AsyncFnOnce() -> T + Send) -> T {
    TestNetns::new().run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

#[test]
fn unreachable_api_server_writes_nothing_on_the_node() {
    in_netns(async || {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = offline_options(dir.path());
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("unreachable");
        assert!(
            matches!(err, BootstrapError::ApiUnreachable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("http://127.0.0.1:"), "{err}");
        assert_eq!(tree(dir.path()), ["kubeconfig"], "nothing written");
    });
}

#[test]
fn preflight_failure_and_bad_file_stop_before_the_api_and_the_node() {
    // The kubeconfig points at a closed port: had bootstrap contacted the API, it would have
    // failed with ApiUnreachable instead.
    in_netns(async || {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = offline_options(dir.path());
        o.config_file = Some("pod-cidr: banana\n".into());
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("bad file");
        assert!(matches!(err, BootstrapError::Config(_)), "{err:?}");

        o.config_file = None;
        std::fs::create_dir_all(&o.paths.cni_conf_dir).expect("mkdir");
        std::fs::write(o.paths.cni_conf_dir.join("10-calico.conflist"), "{}").expect("write");
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("preflight");
        assert!(matches!(err, BootstrapError::Preflight(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("preflight failed:\n  - cni-conf-dir: "),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 2, "{msg}");
        assert_eq!(
            tree(dir.path()),
            [
                "cni",
                "cni/net.d",
                "cni/net.d/10-calico.conflist",
                "kubeconfig"
            ]
        );
    });
}

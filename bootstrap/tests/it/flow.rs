//! The whole `knet bootstrap` sequence, run on a thread inside a namespace the test creates
//! (so the sysctls land there), against the fake apiserver and a fake daemon API.

use std::future::Future;
use std::time::Duration;

use knet_bootstrap::{
    BootstrapError, BootstrapOptions, ConfigOrigin, DaemonStart, DaemonState, Outcome, Step,
    bootstrap, reset,
};
use knet_core::config::ClusterConfig;

use crate::support::apiserver::{FakeApiServer, closed_port, write_kubeconfig};
use crate::support::netns::TestNetns;
use crate::support::{alive, daemon_api, fake_knet, temp_paths, tree};

fn in_netns<T: Send, Fut: Future<Output = T>>(f: impl FnOnce() -> Fut + Send) -> T {
    let ns = TestNetns::new();
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

fn options(dir: &std::path::Path, server: &str) -> BootstrapOptions {
    let mut o = BootstrapOptions::new(temp_paths(dir), "n1");
    o.kubeconfig = Some(write_kubeconfig(dir, server));
    o.knet_binary = fake_knet(dir, None);
    o.ready_timeout = Duration::from_secs(20);
    o.start_daemon = DaemonStart::None;
    o
}

fn kind(s: &Step) -> String {
    let dbg = format!("{s:?}");
    dbg.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn bootstrap_rerun_and_reset() {
    in_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeApiServer::start().await;
        let mut o = options(dir.path(), &fake.url());
        o.start_daemon = DaemonStart::Detached;
        o.config_file = Some("dns:\n  cluster-domain: corp.local\n".into());
        let (api_daemon, _stop) = daemon_api::serve(&o.paths.socket(), Some(2));

        let mut steps = Vec::new();
        let outcome = bootstrap(o.clone(), &mut |s| steps.push(s))
            .await
            .expect("bootstrap");
        assert_eq!(
            outcome,
            Outcome::Bootstrapped {
                config: ConfigOrigin::Created
            }
        );
        let kinds: Vec<String> = steps.iter().map(kind).collect();
        let mut want = vec!["Preflight", "ClusterConfig", "CniConfig", "CniPlugin"];
        want.extend(["Sysctl"; 5]);
        want.extend(["Store", "Daemon", "Waiting", "Ready", "Marker"]);
        assert_eq!(kinds, want, "{steps:#?}");
        for s in &steps {
            eprintln!("{s}");
        }
        assert!(*api_daemon.polls.lock().expect("lock") >= 3);
        let pid = match &steps[10] {
            Step::Daemon(DaemonState::Spawned { pid, .. }) => *pid,
            other => panic!("expected a spawned daemon, got {other:?}"),
        };
        // What landed on the node.
        let paths = &o.paths;
        assert!(paths.cni_conflist().exists());
        assert_eq!(
            std::fs::read(paths.cni_plugin()).expect("plugin"),
            std::fs::read(&o.knet_binary).expect("binary")
        );
        let marker = std::fs::read_to_string(paths.bootstrap_marker()).expect("marker");
        assert!(marker.contains("node: n1"), "{marker}");
        assert!(marker.contains("cluster-config: created"), "{marker}");
        let stored = fake.config_yaml().expect("configmap");
        let cfg = ClusterConfig::from_yaml(&stored).expect("parse");
        assert_eq!(cfg.dns.cluster_domain, "corp.local");
        {
            let store = knet_store::Store::open(&paths.store_dir()).expect("store");
            let cached: Option<ClusterConfig> = store
                .tree(knet_bootstrap::STORE_CONFIG_TREE)
                .expect("tree")
                .get_json(knet_bootstrap::STORE_CONFIG_KEY)
                .expect("get");
            assert_eq!(cached, Some(cfg));
        }
        let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read");
        assert_eq!(fwd.trim(), "1", "sysctl set in this namespace");

        // Second run: already bootstrapped, daemon still running.
        let mut steps = Vec::new();
        let outcome = bootstrap(o.clone(), &mut |s| steps.push(s))
            .await
            .expect("rerun");
        assert_eq!(outcome, Outcome::AlreadyBootstrapped);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(
            steps[0]
                .to_string()
                .starts_with("node is already bootstrapped")
        );
        assert_eq!(steps[1], Step::Daemon(DaemonState::AlreadyRunning { pid }));

        // The daemon died: the next run starts it again.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill our daemon");
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut steps = Vec::new();
        bootstrap(o.clone(), &mut |s| steps.push(s))
            .await
            .expect("rerun");
        let new_pid = match &steps[1] {
            Step::Daemon(DaemonState::Spawned { pid, .. }) => *pid,
            other => panic!("expected a restart, got {other:?}"),
        };

        // Reset removes all of it.
        reset(paths, &mut |_| {}).await.expect("reset");
        assert!(!alive(new_pid));
        for p in [
            paths.cni_conflist(),
            paths.cni_plugin(),
            paths.bootstrap_marker(),
            paths.store_dir(),
            paths.pid_file(),
        ] {
            assert!(!p.exists(), "{} left behind", p.display());
        }
    });
}

#[test]
fn features_not_ready_in_time_fail_with_their_messages_and_no_marker() {
    in_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeApiServer::start().await;
        let mut o = options(dir.path(), &fake.url());
        o.ready_timeout = Duration::from_secs(2);
        let (_d, _stop) = daemon_api::serve(&o.paths.socket(), None);
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("not ready");
        assert!(matches!(err, BootstrapError::NotReady { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("dns: enabled, failing: cannot bind 10.152.183.10:53"),
            "{msg}"
        );
        assert!(
            !msg.contains("network:"),
            "ready features are not listed: {msg}"
        );
        assert!(!o.paths.bootstrap_marker().exists());
    });
}

#[test]
fn no_daemon_answering_is_reported_with_the_socket() {
    in_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeApiServer::start().await;
        let mut o = options(dir.path(), &fake.url());
        o.ready_timeout = Duration::from_secs(1);
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("no daemon");
        assert!(
            matches!(err, BootstrapError::DaemonNotAnswering { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&o.paths.socket().display().to_string())
        );
    });
}

#[test]
fn unreachable_api_server_writes_nothing_on_the_node() {
    in_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{}", closed_port());
        let o = options(dir.path(), &url);
        let err = bootstrap(o.clone(), &mut |_| {})
            .await
            .expect_err("unreachable");
        assert!(
            matches!(err, BootstrapError::ApiUnreachable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(tree(dir.path()), ["knet", "kubeconfig"], "nothing written");
    });
}

#[test]
fn preflight_failure_and_bad_file_stop_before_the_api_and_the_node() {
    in_netns(|| async {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeApiServer::start().await;
        let mut o = options(dir.path(), &fake.url());
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
        let msg = err.to_string();
        assert!(
            msg.starts_with("preflight failed:\n  - cni-conf-dir: "),
            "{msg}"
        );
        assert_eq!(msg.lines().count(), 2, "{msg}");
        assert!(
            fake.requests.lock().expect("lock").is_empty(),
            "API not contacted"
        );
        assert_eq!(
            tree(dir.path()),
            [
                "cni",
                "cni/net.d",
                "cni/net.d/10-calico.conflist",
                "knet",
                "kubeconfig"
            ]
        );
    });
}

//! Nodes joining and leaving, the daemon restarting, and the daemon killed during an ADD storm.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use knet_e2e::{Lab, NodeSpec, Segment};
use kube::Api;
use kube::api::DeleteParams;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::kit::{self, NS};

/// A TCP connection held open from pod `from` to a `socat` echo server in pod `to`.
struct Conn {
    _server: tokio::process::Child,
    client: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Conn {
    async fn open(lab: &Lab, from: &str, to: &str, to_ip: &str) -> Conn {
        let spawn = |netns: String, args: Vec<String>| {
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(args)
                .env(knet_e2e::sweep::LAB_ENV, lab.id())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn socat")
        };
        let server = spawn(
            lab.pod_netns(NS, to).await.expect("netns"),
            vec![
                "socat".into(),
                "TCP-LISTEN:9000,reuseaddr,fork".into(),
                "PIPE".into(),
            ],
        );
        // Until the listener is up (each probe gets its own forked echo).
        let from_ns = lab.pod_netns(NS, from).await.expect("netns");
        let ready = kit::wait_until(Duration::from_secs(10), || async {
            lab.tcp_connect(&from_ns, to_ip, 9000, Duration::from_secs(1))
                .await
                .unwrap_or(false)
        })
        .await;
        assert!(ready.is_some(), "echo server in {to} never listened");
        let mut client = spawn(
            from_ns,
            vec![
                "socat".into(),
                "-".into(),
                format!("TCP:{}:9000", kit::host(to_ip)),
            ],
        );
        let lines = BufReader::new(client.stdout.take().expect("stdout")).lines();
        Conn {
            _server: server,
            client,
            lines,
        }
    }

    /// Sends a line and waits (5 s) for its echo.
    async fn echo(&mut self, line: &str) -> bool {
        let Some(stdin) = self.client.stdin.as_mut() else {
            return false;
        };
        if stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .is_err()
        {
            return false;
        }
        let _ = stdin.flush().await;
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.lines.next_line()).await,
            Ok(Ok(Some(l))) if l == line
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_leave_and_a_daemon_restart_keeps_pods_working() {
    let lab = kit::lab("netlife", &[Segment::A, Segment::A], true).await;
    let cfg = kit::dual_stack_config("auto");
    for node in ["node-1", "node-2"] {
        kit::bootstrap(&lab, node, &cfg).await;
    }
    let ips = kit::create_pods(&lab, &[("a", "node-1"), ("c", "node-2")]).await;
    let (a, c) = (&ips[0], &ips[1]);
    kit::assert_matrix(&lab, &[(a, c)], true).await;

    // Join: a third node comes up; node-1 routes to its pod CIDRs within seconds.
    let t = Instant::now();
    lab.add_node(NodeSpec {
        name: "node-3".into(),
        segment: Segment::A,
    })
    .await
    .expect("add node-3");
    let cidrs3 = kit::node_pod_cidrs(&lab, "node-3").await;
    assert_eq!(cidrs3.len(), 2, "{cidrs3:?}");
    let registered = t.elapsed();
    let routed = kit::wait_until(Duration::from_secs(15), || async {
        let mut all = true;
        for c in &cidrs3 {
            all &= kit::peer_route_to(&lab, "node-1", c).await.is_some();
        }
        all
    })
    .await
    .expect("node-1 must route to node-3's pod CIDRs within 15 s of the Node appearing");
    println!("join: Node registered in {registered:?}; node-1 routes to it {routed:?} later");
    kit::bootstrap(&lab, "node-3", &cfg).await;
    let yaml = kit::pod_yaml("d", "node-3");
    lab.apply_yaml(&yaml, NS).await.expect("pod d");
    let d = kit::pod_ips(&lab, "d").await;
    kit::assert_matrix(&lab, &[(a, &d), (&d, c)], true).await;

    // Leave: deleting the Node object removes node-1's routes to it within seconds.
    let nodes: Api<Node> = Api::all(lab.client());
    let t = Instant::now();
    nodes
        .delete("node-3", &DeleteParams::default())
        .await
        .expect("delete node-3");
    let gone = kit::wait_until(Duration::from_secs(15), || async {
        let mut none = true;
        for c in &cidrs3 {
            none &= kit::peer_route_to(&lab, "node-1", c).await.is_none();
        }
        none
    })
    .await
    .expect("node-1 must drop the routes to a deleted Node within 15 s");
    println!(
        "leave: node-1 dropped node-3's routes {gone:?} after the delete ({:?} total)",
        t.elapsed()
    );
    assert!(
        kit::tcp_client_ip(&lab, "a", &d.v4).await.is_err(),
        "a deleted node's pods must no longer be routed"
    );

    // Daemon restart on node-1: an open connection keeps working while it is down and after it
    // is back; new connections and new pods work after.
    let mut conn = Conn::open(&lab, "a", "c", &c.v4).await;
    assert!(conn.echo("before").await, "echo before the restart");
    let t = Instant::now();
    lab.stop_knet_daemon("node-1").await.expect("stop");
    println!("daemon on node-1 stopped in {:?}", t.elapsed());
    assert!(
        conn.echo("while-down").await,
        "an open connection must survive the daemon stopping"
    );
    kit::assert_matrix(&lab, &[(a, c)], true).await;
    let t = Instant::now();
    lab.start_knet_daemon("node-1").await.expect("start");
    let ready = kit::wait_until(Duration::from_secs(30), || async {
        kit::feature_ready(&lab, "node-1", "network").await
    })
    .await
    .expect("network ready after the restart");
    println!(
        "daemon on node-1 restarted; network ready after {ready:?} ({:?} total)",
        t.elapsed()
    );
    assert!(
        conn.echo("after").await,
        "the open connection must survive the restart"
    );
    kit::assert_matrix(&lab, &[(a, c), (c, a)], true).await;
    lab.apply_yaml(&kit::pod_yaml("e", "node-1"), NS)
        .await
        .expect("pod e");
    let e = kit::pod_ips(&lab, "e").await;
    kit::assert_matrix(&lab, &[(&e, a), (&e, c)], true).await;
}

fn pod_failed(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .is_some_and(|r| r == "LabError")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_add_storm_leaks_and_duplicates_no_address() {
    const PODS: usize = 40;
    let lab = kit::lab("netkill", &[Segment::A], true).await;
    kit::bootstrap(&lab, "node-1", &kit::dual_stack_config("auto")).await;
    lab.create_namespace(NS).await.expect("namespace");
    let names: Vec<String> = (0..PODS).map(|i| format!("s{i}")).collect();
    let yaml: Vec<String> = names.iter().map(|n| kit::pod_yaml(n, "node-1")).collect();
    let t = Instant::now();
    // Create the pods while watching the store, so the kill lands while ADDs are arriving.
    let all = yaml.join("---\n");
    let killer = async {
        // Kill -9 once the storm is under way (some addresses handed out, not all).
        let mut seen = 0;
        while t.elapsed() < Duration::from_secs(30) {
            seen = kit::allocations(&lab, "node-1")
                .await
                .map_or(0, |a| a.len());
            if seen >= 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid_file = lab.dir().join("pids/knet-node-1.pid");
        let rec = knet_e2e::process::PidRecord::read(&pid_file).expect("daemon pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rec.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9");
        println!(
            "killed the daemon (pid {}) at {:?} with {seen} address(es) allocated",
            rec.pid,
            t.elapsed()
        );
    };
    let (applied, ()) = tokio::join!(lab.apply_yaml(&all, NS), killer);
    applied.expect("pods");
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.start_knet_daemon("node-1").await.expect("restart");

    // Like a kubelet, retry the sandboxes whose ADD failed while the daemon was down: delete
    // (CNI DEL) and recreate. Bounded.
    let pods: Api<Pod> = Api::namespaced(lab.client(), NS);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut retried = 0;
    let ready = loop {
        assert!(Instant::now() < deadline, "the storm never settled");
        let list = pods.list(&Default::default()).await.expect("pods");
        let failed: Vec<String> = list
            .items
            .iter()
            .filter(|p| pod_failed(p) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        for name in &failed {
            let _ = pods.delete(name, &DeleteParams::default()).await;
        }
        if !failed.is_empty() {
            retried += failed.len();
            // Wait until they are gone (the lab's kubelet ran CNI DEL), then recreate.
            let gone = kit::wait_until(Duration::from_secs(60), || async {
                let mut all = true;
                for n in &failed {
                    all &= pods.get_opt(n).await.ok().flatten().is_none();
                }
                all
            })
            .await;
            assert!(gone.is_some(), "failed pods were never deleted");
            let yaml: Vec<String> = failed.iter().map(|n| kit::pod_yaml(n, "node-1")).collect();
            lab.apply_yaml(&yaml.join("---\n"), NS)
                .await
                .expect("recreate");
            continue;
        }
        let ready: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .collect();
        if ready.len() == PODS {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    println!(
        "{PODS} pods ready {:?} after the storm began ({retried} sandbox(es) retried)",
        t.elapsed()
    );

    // Every pod has distinct addresses; the store holds exactly those; the node routes exactly
    // those.
    let mut pod_ips: BTreeMap<String, String> = BTreeMap::new();
    for p in &ready {
        let ips = kit::ips_of(p);
        for ip in [Some(ips.v4.clone()), ips.v6.clone()].into_iter().flatten() {
            if let Some(other) = pod_ips.insert(ip.clone(), ips.name.clone()) {
                panic!("{ip} handed to both {other} and {}", ips.name);
            }
        }
    }
    assert_eq!(
        pod_ips.len(),
        PODS * 2,
        "every pod has an IPv4 and an IPv6 address"
    );
    let alloc = kit::allocations(&lab, "node-1").await.expect("allocations");
    let stored: BTreeSet<String> = alloc.iter().map(|(ip, _)| ip.to_string()).collect();
    assert_eq!(
        stored.len(),
        alloc.len(),
        "duplicate addresses in the store"
    );
    let expect: BTreeSet<String> = pod_ips.keys().cloned().collect();
    let leaked: Vec<_> = stored.difference(&expect).collect();
    let missing: Vec<_> = expect.difference(&stored).collect();
    assert!(
        leaked.is_empty() && missing.is_empty(),
        "store vs pods: leaked {leaked:?}, missing {missing:?}"
    );
    let routes = kit::pod_routes(&lab, "node-1").await;
    assert_eq!(
        routes, expect,
        "node routes (proto 75) must be exactly the pods' addresses"
    );
}

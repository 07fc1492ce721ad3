//! Privileged integration tests in real network namespaces: a "node" namespace holding the host
//! side, one namespace per pod, and the CNI handler run in-process. Need root (fail without).

#[path = "netns/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use harness::{Ns, TestRouter, conf, handler_in, privileged, request};
use knet_network::cni::{Command, PluginOutput, run_plugin};
use serde_json::Value;

fn ips_of(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .expect("address")
                .split('/')
                .next()
                .expect("ip")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_in_real_namespaces() {
    if !privileged() {
        return;
    }
    let node = Ns::node();
    let pods = [Ns::create("pod"), Ns::create("pod")];
    let store = tempfile::tempdir().expect("tempdir");
    let (h, _net) = handler_in(&node, store.path()).await;

    let mut results = Vec::new();
    for (i, (pod, version)) in pods.iter().zip(["0.3.1", "1.1.0"]).enumerate() {
        let netns = pod.path().display().to_string();
        let add = request(Command::Add, &format!("c{i}"), &netns, conf(version, "/x"));
        let result = h.call(add.clone()).await.expect("ADD").expect("result");
        assert_eq!(result["cniVersion"], version);
        assert_eq!(result["interfaces"][1]["name"], "eth0");
        assert_eq!(result["interfaces"][1]["sandbox"], netns.as_str());
        assert_eq!(result["ips"][0]["gateway"], "169.254.1.1");
        assert_eq!(result["ips"][1]["gateway"], "fe80::1");
        // ADD again for the same container and interface: same addresses.
        let again = h.call(add).await.expect("ADD again").expect("result");
        assert_eq!(ips_of(&again), ips_of(&result));
        results.push(result);
    }
    let a = ips_of(&results[0]);
    let b = ips_of(&results[1]);
    assert_ne!(a, b);

    // Node to pod, and pod to pod through the node, both families.
    assert!(node.pings(&a[0]), "node -> pod {}", a[0]);
    assert!(pods[0].pings(&b[0]), "pod -> pod {}", b[0]);
    assert!(pods[1].pings(&a[1]), "pod -> pod {}", a[1]);

    // CHECK passes, then detects a broken pod interface.
    let netns0 = pods[0].path().display().to_string();
    let mut check = request(Command::Check, "c0", &netns0, conf("0.4.0", "/x"));
    check.config["prevResult"] = results[0].clone();
    h.call(check.clone()).await.expect("CHECK healthy");
    pods[0].ip(&["neigh", "del", "169.254.1.1", "dev", "eth0"]);
    pods[0].ip(&["link", "set", "eth0", "down"]);
    let err = h.call(check.clone()).await.expect_err("CHECK broken");
    assert_eq!(err.code.0, 102, "{err}");
    assert!(err.details.contains("down"), "{}", err.details);
    // CHECK of an unknown container.
    let unknown = request(Command::Check, "nope", &netns0, conf("1.0.0", "/x"));
    assert_eq!(h.call(unknown).await.expect_err("unknown").code.0, 3);

    // DEL releases and removes; twice is fine; after the netns is gone too.
    let del0 = request(Command::Del, "c0", &netns0, conf("1.0.0", "/x"));
    h.call(del0.clone()).await.expect("DEL");
    h.call(del0).await.expect("DEL twice");
    assert!(h.addresses_of("c0", "eth0").expect("lookup").is_empty());
    assert_eq!(node.host_veths().len(), 1);
    let netns1 = pods[1].path().display().to_string();
    drop(pods);
    let del1 = request(Command::Del, "c1", &netns1, conf("1.0.0", "/x"));
    h.call(del1).await.expect("DEL after the netns is gone");
    assert!(node.host_veths().is_empty());
    assert!(h.addresses_of("c1", "eth0").expect("lookup").is_empty());
}

async fn plugin_in(node: &Ns, cmd: &str, env: &[(&str, &str)], stdin: &Value) -> PluginOutput {
    let cmd = cmd.to_owned();
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let stdin = serde_json::to_vec(stdin).expect("json");
    knet_network::kernel::in_netns(&node.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run_plugin(&cmd, |k| env.get(k).cloned(), &stdin))
    })
    .await
    .expect("plugin thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_over_the_socket_and_del_without_the_daemon() {
    if !privileged() {
        return;
    }
    let node = Ns::node();
    let pod = Ns::create("pod");
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, net) = handler_in(&node, &dir.path().join("store")).await;
    let socket = dir.path().join("knet.sock");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = {
        let (socket, router, shutdown) = (
            socket.clone(),
            std::sync::Arc::new(TestRouter(h.clone())),
            shutdown.clone(),
        );
        tokio::spawn(async move { knet_api::serve(&socket, router, shutdown).await })
    };
    let sock = socket.display().to_string();
    let netns = pod.path().display().to_string();
    let env = [
        ("CNI_CONTAINERID", "p1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];
    // Wait (bounded) for the socket to appear.
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = plugin_in(&node, "STATUS", &[], &conf("1.1.0", &sock)).await;
    assert_eq!(status.exit, 0, "{}", status.stdout);
    let add = plugin_in(&node, "ADD", &env, &conf("1.0.0", &sock)).await;
    assert_eq!(add.exit, 0, "{}", add.stdout);
    let result: Value = serde_json::from_str(&add.stdout).expect("result");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(result["ips"][0].get("version").is_none());
    let check = plugin_in(&node, "CHECK", &env, &{
        let mut c = conf("1.0.0", &sock);
        c["prevResult"] = result.clone();
        c
    })
    .await;
    assert_eq!(check.exit, 0, "{}", check.stdout);
    assert!(check.stdout.is_empty());

    // A node without a pod CIDR: STATUS says not available.
    net.send_modify(|n| n.pod_cidrs.clear());
    let status = plugin_in(&node, "STATUS", &[], &conf("1.1.0", &sock)).await;
    let v: Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["code"], 50);
    net.send_modify(|n| *n = harness::test_network());

    // The daemon stops: ADD fails with 11, STATUS 50, DEL cleans up locally and succeeds.
    shutdown.cancel();
    let _ = server.await;
    drop(h);
    let add2 = plugin_in(
        &node,
        "ADD",
        &[env[0], env[1], ("CNI_IFNAME", "net1")],
        &conf("1.0.0", &sock),
    )
    .await;
    let v: Value = serde_json::from_str(&add2.stdout).expect("json");
    assert_eq!(v["code"], 11, "{v}");
    let status = plugin_in(&node, "STATUS", &[], &conf("1.1.0", &sock)).await;
    let v: Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["code"], 50);
    assert_eq!(node.host_veths().len(), 1);
    let del = plugin_in(&node, "DEL", &env, &conf("1.0.0", &sock)).await;
    assert_eq!(del.exit, 0, "{}", del.stdout);
    assert!(node.host_veths().is_empty(), "local DEL removed the veth");
    assert!(!pod.has_link("eth0"), "the pod end went with it");
    let del = plugin_in(&node, "DEL", &env, &conf("1.0.0", &sock)).await;
    assert_eq!(del.exit, 0, "DEL twice without the daemon");

    // The daemon restarts: its reconcile releases the address DEL could not.
    let (h, _net) = handler_in(&node, &dir.path().join("store")).await;
    assert!(!h.addresses_of("p1", "eth0").expect("lookup").is_empty());
    h.reconcile().await.expect("reconcile");
    assert!(h.addresses_of("p1", "eth0").expect("lookup").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_adds_and_dels_never_share_an_address() {
    if !privileged() {
        return;
    }
    const N: usize = 50;
    let node = Ns::node();
    let pods: Vec<Ns> = (0..N).map(|_| Ns::create("pod")).collect();
    let store = tempfile::tempdir().expect("tempdir");
    let (h, _net) = handler_in(&node, store.path()).await;
    let adds = pods.iter().enumerate().map(|(i, pod)| {
        let h = h.clone();
        let req = request(
            Command::Add,
            &format!("par{i}"),
            &pod.path().display().to_string(),
            conf("1.1.0", "/x"),
        );
        tokio::spawn(async move { h.call(req).await })
    });
    let mut seen = HashSet::new();
    for r in futures::future::join_all(adds).await {
        let result = r.expect("join").expect("ADD").expect("result");
        for ip in ips_of(&result) {
            assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        }
    }
    assert_eq!(seen.len(), 2 * N);
    assert_eq!(node.host_veths().len(), N);
    let dels = pods.iter().enumerate().map(|(i, pod)| {
        let h = h.clone();
        let req = request(
            Command::Del,
            &format!("par{i}"),
            &pod.path().display().to_string(),
            conf("1.1.0", "/x"),
        );
        tokio::spawn(async move { h.call(req).await })
    });
    for r in futures::future::join_all(dels).await {
        r.expect("join").expect("DEL");
    }
    assert!(node.host_veths().is_empty());
    // GC with nothing valid is a no-op now.
    let mut gc = request(Command::Gc, "", "", conf("1.1.0", "/x"));
    gc.config["cni.dev/valid-attachments"] = serde_json::json!([]);
    h.call(gc).await.expect("GC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_reclaims_what_the_runtime_no_longer_knows() {
    if !privileged() {
        return;
    }
    let node = Ns::node();
    let pods = [Ns::create("pod"), Ns::create("pod")];
    let store = tempfile::tempdir().expect("tempdir");
    let (h, _net) = handler_in(&node, store.path()).await;
    for (i, pod) in pods.iter().enumerate() {
        let req = request(
            Command::Add,
            &format!("g{i}"),
            &pod.path().display().to_string(),
            conf("1.1.0", "/x"),
        );
        h.call(req).await.expect("ADD");
    }
    let mut gc = request(Command::Gc, "", "", conf("1.1.0", "/x"));
    gc.config["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "g0", "ifname": "eth0"}]);
    h.call(gc).await.expect("GC");
    assert_eq!(h.addresses_of("g0", "eth0").expect("lookup").len(), 2);
    assert!(h.addresses_of("g1", "eth0").expect("lookup").is_empty());
    assert_eq!(node.host_veths().len(), 1);
}

/// The child side of the kill -9 test: ADDs pods until it is killed. Runs only when the parent
/// test starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by kill_9_during_an_add_storm_leaks_and_duplicates_nothing"]
async fn storm_child() {
    let (Ok(store), Ok(node), Ok(pods)) = (
        std::env::var("KNET_STORM_STORE"),
        std::env::var("KNET_STORM_NODE"),
        std::env::var("KNET_STORM_PODS"),
    ) else {
        return;
    };
    let node = harness::Ns { name: node };
    let (h, _net) = handler_in(&node, std::path::Path::new(&store)).await;
    std::mem::forget(node); // the parent owns (and deletes) the namespace
    let pods: Vec<String> = pods.split(',').map(str::to_owned).collect();
    for chunk in pods.chunks(4) {
        let adds = chunk.iter().map(|name| {
            let h = h.clone();
            let req = request(
                Command::Add,
                name,
                &format!("/var/run/netns/{name}"),
                conf("1.1.0", "/x"),
            );
            tokio::spawn(async move { h.call(req).await })
        });
        futures::future::join_all(adds).await;
    }
    // Done before the kill: wait (bounded) to be killed.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_add_storm_leaks_and_duplicates_nothing() {
    if !privileged() {
        return;
    }
    const N: usize = 40;
    let node = Ns::node();
    let pods: Vec<Ns> = (0..N).map(|_| Ns::create("pod")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "storm_child", "--ignored", "--test-threads=1"])
        .env("KNET_STORM_STORE", &store)
        .env("KNET_STORM_NODE", &node.name)
        .env("KNET_STORM_PODS", names.join(","))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    // Kill it mid-storm: once some pods are wired, or after a bounded wait.
    for _ in 0..600 {
        if node.host_veths().len() >= N / 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let (h, _net) = handler_in(&node, &store).await;
    h.reconcile().await.expect("reconcile");
    let veths: HashSet<String> = node.host_veths().into_iter().collect();
    let mut owners_of_veth: HashMap<String, String> = HashMap::new();
    let mut held: HashSet<String> = HashSet::new();
    for name in &names {
        let ips = h.addresses_of(name, "eth0").expect("lookup");
        let veth = knet_network::kernel::host_veth_name(name, "eth0");
        if ips.is_empty() {
            assert!(!veths.contains(&veth), "{veth} exists without addresses");
            continue;
        }
        // No leak: every address left belongs to a pod whose veth exists.
        assert!(
            veths.contains(&veth),
            "{name} holds {ips:?} but has no veth"
        );
        for ip in ips {
            assert!(held.insert(ip.to_string()), "{ip} held twice");
            owners_of_veth.insert(ip.to_string(), veth.clone());
        }
    }
    // No duplicate: each routed pod address points at exactly the veth of its owner.
    let routes = node.ip(&["-4", "route", "show", "proto", "75"]);
    let mut routed = HashSet::new();
    for line in String::from_utf8_lossy(&routes.stdout).lines() {
        let mut words = line.split_whitespace();
        let (Some(ip), Some("dev"), Some(dev)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        assert!(routed.insert(ip.to_owned()), "{ip} routed twice");
        assert_eq!(
            owners_of_veth.get(ip),
            Some(&dev.to_owned()),
            "{ip} via {dev}"
        );
    }
    // The storm continues after the restart without handing out an address twice.
    for name in &names {
        if h.addresses_of(name, "eth0").expect("lookup").is_empty() {
            let req = request(
                Command::Add,
                name,
                &format!("/var/run/netns/{name}"),
                conf("1.1.0", "/x"),
            );
            let result = h.call(req).await.expect("ADD").expect("result");
            for ip in ips_of(&result) {
                assert!(
                    held.insert(ip.clone()),
                    "{ip} handed out twice after the restart"
                );
            }
        }
    }
    assert_eq!(held.len(), 2 * N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_is_rebuilt_from_the_kernel_and_no_address_is_handed_out_twice() {
    privileged();
    let node = Ns::node();
    let pods = [Ns::create("pod"), Ns::create("pod")];
    let netns0 = pods[0].path().display().to_string();
    let netns1 = pods[1].path().display().to_string();
    let first_store = tempfile::tempdir().expect("tempdir");
    let (h, _net) = handler_in(&node, first_store.path()).await;
    let result = h
        .call(request(Command::Add, "c0", &netns0, conf("1.1.0", "/x")))
        .await
        .expect("ADD")
        .expect("result");
    let held = ips_of(&result);
    drop(h);

    // The store is gone (disk replaced, or moved aside as unopenable): a fresh, empty one.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (h, _net) = handler_in(&node, fresh.path()).await;
    h.reconcile().await.expect("reconcile");
    let adopted: Vec<String> = h
        .addresses_of("c0", "eth0")
        .expect("lookup")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        adopted, held,
        "the running pod's addresses are taken back from the kernel"
    );

    // A new pod never gets them.
    let other = h
        .call(request(Command::Add, "c1", &netns1, conf("1.1.0", "/x")))
        .await
        .expect("ADD")
        .expect("result");
    for ip in ips_of(&other) {
        assert!(!held.contains(&ip), "{ip} handed out twice");
    }
    // And the re-adopted pod can still be deleted by its runtime.
    h.call(request(Command::Del, "c0", &netns0, conf("1.1.0", "/x")))
        .await
        .expect("DEL");
    assert!(h.addresses_of("c0", "eth0").expect("lookup").is_empty());
}

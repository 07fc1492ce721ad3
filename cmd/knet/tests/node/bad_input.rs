//! Every bad input gets one line on stderr that says what to do, and a non-zero exit.

use crate::support::{self, NODE, assert_one_line_error, knet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let lab = support::lab("bad").await;

    // Daemon not running (not bootstrapped yet).
    let out = knet(&lab, &["status"]).await;
    assert_one_line_error(&out, "the knet daemon is not running on this node");

    // A malformed bootstrap file: nothing is written.
    let out = lab
        .bootstrap_knet_with(NODE, Some("pod-cidr: [oops\n"), &["--timeout", "5s"])
        .await
        .expect("run bootstrap");
    assert_one_line_error(&out, "invalid config");
    let n = lab.node(NODE).expect("node");
    assert!(
        !n.state_dir.join("bootstrapped.yaml").exists(),
        "a failed bootstrap must not mark the node"
    );

    support::bootstrap(&lab, None).await;
    for (args, needle) in [
        (
            vec!["enable", "ingres"],
            "unknown feature \"ingres\": valid features are network",
        ),
        (vec!["disable", "bogus"], "unknown feature \"bogus\""),
        (
            vec!["set", "dns.bogus=1"],
            "unknown key \"dns.bogus\": valid keys are",
        ),
        (vec!["get", "nope"], "unknown key \"nope\""),
        (
            vec!["set", "load-balancer.cidrs=300.1.1.1/24"],
            "is not a CIDR",
        ),
        (
            vec!["set", "load-balancer.cidrs=192.0.2.0/33"],
            "is not a CIDR",
        ),
        (
            vec!["set", "pod-cidr=10.9.0.0/16"],
            "pod-cidr cannot change after bootstrap",
        ),
        (
            vec!["set", "service-cidr=10.96.0.0/24"],
            "service-cidr cannot change after bootstrap",
        ),
        (
            vec!["set", "network.mode=mesh"],
            "invalid value \"mesh\" for network.mode",
        ),
        (
            vec!["set", "dns.cluster-domain"],
            "expected <feature>.<key>=<value>",
        ),
    ] {
        let out = knet(&lab, &args).await;
        assert_one_line_error(&out, needle);
    }
    // Dependencies are enforced with a message naming what to do.
    assert!(knet(&lab, &["enable", "ingress"]).await.success());
    let out = knet(&lab, &["disable", "network"]).await;
    assert_one_line_error(&out, "ingress needs network: disable ingress first");
    // None of the rejected changes landed.
    assert_eq!(
        knet(&lab, &["get", "pod-cidr"]).await.stdout,
        "10.1.0.0/16\n"
    );
    assert_eq!(knet(&lab, &["get", "network.mode"]).await.stdout, "auto\n");
    assert_eq!(
        knet(&lab, &["get", "network.enabled"]).await.stdout,
        "true\n"
    );

    // Daemon stopped after bootstrap.
    lab.stop_knet_daemon(NODE).await.expect("stop");
    let out = knet(&lab, &["enable", "gateway"]).await;
    assert_one_line_error(&out, "the knet daemon is not running on this node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_fails_bootstrap_cleanly() {
    let lab = support::lab("unr").await;
    let n = lab.node(NODE).expect("node");
    // A kubeconfig pointing at a port nothing listens on inside the node's namespace.
    let text = std::fs::read_to_string(&n.kubeconfig).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server line")
        .to_owned();
    let broken = text.replace(&server, "https://127.0.0.1:1");
    std::fs::write(&n.kubeconfig, broken).expect("write");
    let out = support::knet(&lab, &["bootstrap", "--timeout", "5s"]).await;
    assert_one_line_error(&out, "cannot reach the Kubernetes API server");
    assert!(!n.state_dir.join("bootstrapped.yaml").exists());
}

//! `knet reset` leaves nothing of knet on the node: after a bootstrap with every feature this
//! build has (network, network-policy, dns) ready and a pod wired by knet's CNI plugin, reset
//! removes the pod veths, knet's routes, its nftables tables, the dns addresses on lo, the
//! daemon, the CNI conflist and plugin, the marker and the store, in the node's namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use knet_e2e::Lab;
use kube::Api;

use crate::support::{self, NODE, knet};

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
/// The dns feature's node-local address (on lo, with the Service IP).
const DNS_LOCAL: &str = "169.254.20.10";
const DNS_SERVICE_IP: &str = "10.152.183.10";

/// What knet can leave in a node's namespace, as `ip` and `nft` show it.
#[derive(Debug, Default)]
struct Footprint {
    /// Links whose name, kind or alias says knet (pod veths `knet<hex>`, `knet.vxlan`, ...).
    links: Vec<String>,
    /// nftables tables named knet-*.
    tables: Vec<String>,
    /// Routes of knet's protocols (75: pods, 76: peers), via knet links, or to the dns addresses.
    routes: Vec<String>,
    /// The dns feature's addresses.
    addresses: Vec<String>,
}

async fn sh(lab: &Lab, argv: &[&str]) -> String {
    let out = lab
        .exec_node(NODE, argv, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
    assert!(out.success(), "{argv:?}: {}", out.stderr);
    out.stdout
}

async fn footprint(lab: &Lab) -> Footprint {
    let links: serde_json::Value =
        serde_json::from_str(&sh(lab, &["ip", "-d", "-j", "link", "show"]).await)
            .expect("ip -j link");
    let tables = sh(lab, &["nft", "list", "tables"]).await;
    let mut routes = String::new();
    for family in ["-4", "-6"] {
        routes.push_str(&sh(lab, &["ip", family, "route", "show", "table", "all"]).await);
    }
    let addresses = sh(lab, &["ip", "-o", "addr", "show"]).await;
    let knet_route = |l: &&str| {
        l.contains("proto 75")
            || l.contains("proto 76")
            || l.contains("dev knet")
            || l.contains(DNS_LOCAL)
            || l.contains(DNS_SERVICE_IP)
    };
    Footprint {
        // By name and alias only: other fields name the lab's namespaces (knetlab-*).
        links: links
            .as_array()
            .expect("a list of links")
            .iter()
            .filter(|l| {
                ["ifname", "ifalias"]
                    .iter()
                    .any(|k| l[k].as_str().is_some_and(|v| v.starts_with("knet")))
            })
            .map(|l| l.to_string())
            .collect(),
        tables: tables
            .lines()
            .filter(|l| l.contains("knet"))
            .map(str::to_owned)
            .collect(),
        routes: routes
            .lines()
            .filter(knet_route)
            .map(str::to_owned)
            .collect(),
        addresses: addresses
            .lines()
            .filter(|l| {
                l.contains(DNS_LOCAL)
                    || l.contains(DNS_SERVICE_IP)
                    || l.contains(":knet")
                    || l.contains(": knet")
            })
            .map(str::to_owned)
            .collect(),
    }
}

/// Pids of `knet daemon` processes for this node's state dir.
fn node_daemons(lab: &Lab) -> Vec<u32> {
    let state_dir = lab.node(NODE).expect("node").state_dir;
    let flag = format!("--state-dir\0{}\0", state_dir.display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("\0daemon\0") && c.contains(&flag)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_leaves_nothing_of_knet_on_the_node() {
    let lab = support::lab("reset").await;
    let n = lab.node(NODE).expect("node");
    let out = lab
        .bootstrap_knet_with(NODE, Some(support::BOOTSTRAP_CONFIG), &["--timeout", "90s"])
        .await
        .expect("run bootstrap");
    assert!(out.success(), "bootstrap: {}\n{}", out.stdout, out.stderr);
    lab.create_namespace("rs").await.expect("namespace");
    lab.apply_yaml(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: rs}}\nspec:\n  nodeName: {NODE}\n  containers:\n  - name: c\n    image: {AGNHOST}\n    args: [netexec, --http-port=8080]\n"
        ),
        "rs",
    )
    .await
    .expect("pod");
    lab.wait_pod_ready("rs", "p", Duration::from_secs(60))
        .await
        .expect("the pod runs on knet's network");

    // Before: the pod's veth and /32 route, the features' tables and the dns addresses exist.
    let before = footprint(&lab).await;
    println!("before reset: {before:#?}");
    assert!(
        before
            .links
            .iter()
            .any(|l| l.contains(r#""ifname":"knet"#) && l.contains(r#""info_kind":"veth""#)),
        "a pod veth: {before:#?}"
    );
    for table in ["knet-network", "knet-network-policy", "knet-dns"] {
        assert!(
            before
                .tables
                .iter()
                .any(|t| t.ends_with(&format!(" {table}"))),
            "table {table}: {before:#?}"
        );
    }
    assert!(
        before.routes.iter().any(|r| r.contains("proto 75")),
        "the pod's route: {before:#?}"
    );
    assert!(
        before.addresses.iter().any(|a| a.contains(DNS_LOCAL)),
        "dns on lo: {before:#?}"
    );
    let daemons = node_daemons(&lab);
    assert_eq!(daemons.len(), 1, "one daemon runs: {daemons:?}");

    // Reset.
    let out = knet(&lab, &["reset"]).await;
    println!("knet reset:\n{}{}", out.stdout, out.stderr);
    assert!(
        out.success(),
        "reset failed: {}\n{}",
        out.stdout,
        out.stderr
    );
    for line in [
        "stopped the daemon (pid",
        "network: removed what it installed on this node",
        "network-policy: removed what it installed on this node",
        "dns: removed what it installed on this node",
        "removed pod interface knet",
    ] {
        assert!(
            out.stdout.contains(line),
            "{line:?} missing:\n{}",
            out.stdout
        );
    }

    // After: nothing of knet in the node's namespace...
    let after = footprint(&lab).await;
    assert!(after.links.is_empty(), "links left: {after:#?}");
    assert!(after.tables.is_empty(), "nft tables left: {after:#?}");
    assert!(after.routes.is_empty(), "routes left: {after:#?}");
    assert!(after.addresses.is_empty(), "addresses left: {after:#?}");
    // ...no daemon...
    for pid in &daemons {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "daemon {pid} still runs"
        );
    }
    assert_eq!(
        node_daemons(&lab),
        Vec::<u32>::new(),
        "a knet daemon still runs"
    );
    // ...and none of bootstrap's files; the state dir keeps only the daemon's log.
    for p in [
        n.cni_conf_dir.join("05-knet.conflist"),
        n.cni_bin_dir.join("knet"),
        n.state_dir.join("bootstrapped.yaml"),
        n.state_dir.join("store"),
        n.run_dir.join("knet-daemon.pid"),
        n.run_dir.join("knet.sock"),
    ] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    let mut left: Vec<String> = std::fs::read_dir(&n.state_dir)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["knet-daemon.log"], "state dir after reset");
    let cni_conf: Vec<_> = std::fs::read_dir(&n.cni_conf_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(cni_conf.is_empty(), "CNI conf dir: {cni_conf:?}");
    // The cluster-wide config stays for the other nodes.
    let cms: Api<ConfigMap> = Api::namespaced(lab.client(), "kube-system");
    assert!(
        cms.get_opt("knet-config").await.expect("get").is_some(),
        "the cluster config is the cluster's, not the node's"
    );

    // A second reset finds nothing to do and succeeds.
    let again = knet(&lab, &["reset"]).await;
    assert!(
        again.success(),
        "second reset: {}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(
        !again.stdout.contains("stopped the daemon"),
        "{}",
        again.stdout
    );
    assert!(
        !again.stdout.contains("removed pod interface"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains(&format!(
            "{} was not there",
            n.state_dir.join("store").display()
        )),
        "a second reset neither needs nor leaves a store: {}",
        again.stdout
    );
    // And bootstrap prepares the node again.
    let out = lab
        .bootstrap_knet_with(NODE, Some(support::BOOTSTRAP_CONFIG), &["--timeout", "90s"])
        .await
        .expect("run bootstrap");
    assert!(
        out.success() && out.stdout.contains("node bootstrapped"),
        "bootstrap after reset: {}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Removes the test's snap drop-in directory (under /etc/systemd/system) however the test ends.
struct DropinDir(std::path::PathBuf);

impl Drop for DropinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snap_remove_hook_resets_the_paths_bootstrap_gave_the_snap_service() {
    let lab = support::lab("rsnap").await;
    support::bootstrap(&lab, None).await;
    let n = lab.node(NODE).expect("node");
    let paths = knet_core::paths::Paths {
        state_dir: n.state_dir.clone(),
        run_dir: n.run_dir.clone(),
        cni_conf_dir: n.cni_conf_dir.clone(),
        cni_bin_dir: n.cni_bin_dir.clone(),
    };
    let daemons = node_daemons(&lab);
    assert_eq!(daemons.len(), 1, "{daemons:?}");

    // What bootstrap writes for the snap's daemon service, under a snap instance name of our own
    // (systemd does not run here, so nothing reads it but knet).
    let instance = format!("knettest{}", std::process::id());
    let dir = DropinDir(std::path::PathBuf::from(format!(
        "/etc/systemd/system/snap.{instance}.daemon.service.d"
    )));
    std::fs::create_dir_all(&dir.0).expect("drop-in dir");
    let dropin = dir.0.join("10-knet-bootstrap.conf");
    std::fs::write(
        &dropin,
        knet_bootstrap::snap_dropin(&paths, NODE, Some(&n.kubeconfig)),
    )
    .expect("write the drop-in");

    // The hook passes no flags; the environment's paths (what reset would use without the
    // drop-in) point at decoys that must survive.
    let decoy = tempfile::tempdir().expect("tempdir");
    let decoy_paths = knet_core::paths::Paths {
        state_dir: decoy.path().join("state"),
        run_dir: decoy.path().join("run"),
        cni_conf_dir: decoy.path().join("cni/net.d"),
        cni_bin_dir: decoy.path().join("cni/bin"),
    };
    let decoys = [
        decoy_paths.cni_conflist(),
        decoy_paths.cni_plugin(),
        decoy_paths.bootstrap_marker(),
    ];
    for f in &decoys {
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, "decoy").expect("decoy");
    }
    let mut cmd = tokio::process::Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", n.netns))
        .arg(env!("CARGO_BIN_EXE_knet"))
        .args(["reset", "--from-snap-service"])
        .env("SNAP_INSTANCE_NAME", &instance)
        .env("SNAP_NAME", &instance)
        .env("KNET_STATE_DIR", &decoy_paths.state_dir)
        .env("KNET_RUN_DIR", &decoy_paths.run_dir)
        .env("KNET_CNI_CONF_DIR", &decoy_paths.cni_conf_dir)
        .env("KNET_CNI_BIN_DIR", &decoy_paths.cni_bin_dir)
        .env("KNET_NODE_NAME", "decoy")
        .env_remove("KNET_KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = knet_e2e::process::run_command(cmd, Duration::from_secs(120))
        .await
        .expect("run knet reset");
    println!(
        "knet reset --from-snap-service:\n{}{}",
        out.stdout, out.stderr
    );
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    for line in [
        format!(
            "using the paths `knet bootstrap` gave the snap's daemon service (state dir {})",
            n.state_dir.display()
        ),
        format!("stopped the systemd service; removed {}", dropin.display()),
        format!("stopped the daemon (pid {})", daemons[0]),
    ] {
        assert!(
            out.stdout.contains(&line),
            "{line:?} missing:\n{}",
            out.stdout
        );
    }
    // The node's things are gone, its daemon too...
    for p in [
        paths.cni_conflist(),
        paths.cni_plugin(),
        paths.bootstrap_marker(),
        paths.store_dir(),
        paths.pid_file(),
    ] {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert_eq!(
        node_daemons(&lab),
        Vec::<u32>::new(),
        "a knet daemon still runs"
    );
    let after = footprint(&lab).await;
    assert!(after.tables.is_empty(), "nft tables left: {after:#?}");
    assert!(after.addresses.is_empty(), "addresses left: {after:#?}");
    // ...so is the drop-in with its directory, and the decoys (the defaults) are untouched.
    assert!(!dropin.exists(), "the drop-in is left");
    assert!(!dir.0.exists(), "the drop-in directory is left");
    for f in &decoys {
        assert_eq!(
            std::fs::read_to_string(f).expect("decoy"),
            "decoy",
            "{} was reset instead of the node's paths",
            f.display()
        );
    }
}

//! Preflight against the real kernel: the environment's own answers, a foreign CNI config, and
//! a taken VXLAN port inside a namespace the test creates.

use std::path::Path;

use knet_bootstrap::preflight::{check_cni_conf_dir, check_vxlan_port};
use knet_bootstrap::{CheckId, Severity, preflight};
use knet_core::config::ClusterConfig;

use crate::support::netns::TestNetns;
use crate::support::temp_paths;

const REQUIRED: [CheckId; 10] = [
    CheckId::Root,
    CheckId::Netns,
    CheckId::Veth,
    CheckId::Bridge,
    CheckId::Vxlan,
    CheckId::NfTables,
    CheckId::Bpf,
    CheckId::Cgroup2,
    CheckId::CniConfDir,
    CheckId::VxlanPort,
];

/// Host link names, to prove the probes left nothing behind.
fn host_links() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        })
        .collect()
}

#[test]
fn environment_passes_required_checks_and_reports_optional_features_truthfully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = temp_paths(dir.path());
    let report = preflight(&paths, &ClusterConfig::default());
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
    for id in REQUIRED {
        let c = report.get(id).unwrap_or_else(|| panic!("{id} not checked"));
        assert_eq!(c.severity, Severity::Ok, "{c}");
    }
    assert!(
        report
            .get(CheckId::Cgroup2)
            .expect("cgroup2")
            .message
            .contains("/sys/fs/cgroup"),
        "{report}"
    );
    // Ground truth for the optional features, found another way: `ip netns` + `ip link add`,
    // /proc/net/protocols, /proc/net/ip_vs.
    let ns = TestNetns::new();
    let truth = [
        (
            CheckId::Dummy,
            ns.try_ip(&["link", "add", "t-dummy", "type", "dummy"]),
        ),
        (
            CheckId::Wireguard,
            ns.try_ip(&["link", "add", "t-wg", "type", "wireguard"]),
        ),
        (
            CheckId::Sctp,
            std::fs::read_to_string("/proc/net/protocols").is_ok_and(|p| p.contains("SCTP")),
        ),
        (
            CheckId::Ipvs,
            Path::new("/proc/net/ip_vs").exists() || modules_have("/ip_vs.ko"),
        ),
    ];
    for (id, present) in truth {
        let c = report.get(id).unwrap_or_else(|| panic!("{id} not checked"));
        let want = if present {
            Severity::Ok
        } else {
            Severity::Warning
        };
        assert_eq!(c.severity, want, "{c}");
        if !present {
            assert!(c.message.starts_with("optional: "), "{c}");
            assert!(c.message.contains("CONFIG_"), "{c}");
        }
    }
    // The probe links were made in the probe's own namespace, never in the host's.
    let leaked: Vec<String> = host_links()
        .into_iter()
        .filter(|l| l.starts_with("kpf-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "probe links in the host namespace: {leaked:?}"
    );
}

fn modules_have(needle: &str) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    ["modules.builtin", "modules.dep"].iter().any(|f| {
        std::fs::read_to_string(format!("/lib/modules/{}/{f}", rel.trim()))
            .is_ok_and(|t| t.contains(needle))
    })
}

#[test]
fn foreign_cni_config_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = temp_paths(dir.path());
    assert_eq!(
        check_cni_conf_dir(&paths.cni_conf_dir).severity,
        Severity::Ok
    );
    std::fs::create_dir_all(&paths.cni_conf_dir).expect("mkdir");
    std::fs::write(paths.cni_conflist(), "{}").expect("own conflist");
    assert_eq!(
        check_cni_conf_dir(&paths.cni_conf_dir).severity,
        Severity::Ok
    );
    let flannel = paths.cni_conf_dir.join("10-flannel.conflist");
    std::fs::write(
        &flannel,
        r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[]}"#,
    )
    .expect("foreign conflist");
    let c = check_cni_conf_dir(&paths.cni_conf_dir);
    assert_eq!(c.severity, Severity::Error);
    assert!(c.message.contains(&flannel.display().to_string()), "{c}");
    assert!(c.message.contains("\"cbr0\""), "{c}");
    assert!(c.message.contains("remove it"), "{c}");
    assert!(c.message.contains("--cni-conf-dir"), "{c}");
    // Through the whole preflight: one failed line.
    let report = preflight(&paths, &ClusterConfig::default());
    assert!(!report.passed());
    let lines = report.error_lines();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("cni-conf-dir"), "{lines}");
}

#[test]
fn udp_socket_on_the_vxlan_port_in_a_test_netns_is_an_error() {
    let ns = TestNetns::new();
    let (taken, free) = ns.run(|| {
        let _sock = std::net::UdpSocket::bind("0.0.0.0:8472").expect("bind 8472 in netns");
        (check_vxlan_port(8472), check_vxlan_port(8473))
    });
    assert_eq!(taken.severity, Severity::Error, "{taken}");
    assert!(taken.message.contains("VXLAN port 8472"), "{taken}");
    assert!(
        taken
            .message
            .contains(&format!("(pid {})", std::process::id())),
        "names the owning process: {taken}"
    );
    assert!(
        taken.message.contains("knet set network.vxlan-port="),
        "{taken}"
    );
    assert!(taken.message.contains("--file"), "{taken}");
    assert_eq!(free.severity, Severity::Ok, "{free}");
    // Released with the socket.
    assert_eq!(ns.run(|| check_vxlan_port(8472)).severity, Severity::Ok);
}

#[test]
fn vxlan_devices_on_the_port_foreign_is_an_error_knets_own_is_fine() {
    let ns = TestNetns::new();
    ns.ip(&[
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "4789",
    ]);
    ns.ip(&["link", "set", "flannel.1", "up"]);
    ns.ip(&[
        "link",
        "add",
        "knet-vxlan",
        "type",
        "vxlan",
        "id",
        "2",
        "dstport",
        "4790",
    ]);
    ns.ip(&["link", "set", "knet-vxlan", "up"]);
    let (foreign, own) = ns.run(|| (check_vxlan_port(4789), check_vxlan_port(4790)));
    assert_eq!(foreign.severity, Severity::Error, "{foreign}");
    assert!(foreign.message.contains("flannel.1"), "{foreign}");
    assert_eq!(own.severity, Severity::Ok, "{own}");
    assert!(own.message.contains("knet-vxlan"), "{own}");
}

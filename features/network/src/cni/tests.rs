use std::collections::HashMap;

use serde_json::json;

use super::*;

fn conf(version: &str) -> serde_json::Value {
    json!({"cniVersion": version, "name": "knet", "type": "knet", "socket": "/nonexistent/knet.sock"})
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

fn code_of(r: Result<NetConf, CniError>) -> u32 {
    r.expect_err("must fail").code.0
}

#[test]
fn every_supported_version_parses() {
    for v in SUPPORTED {
        let c = NetConf::parse(&bytes(&conf(v))).expect("parses");
        assert_eq!(c.cni_version, *v);
        assert_eq!(c.socket, "/nonexistent/knet.sock");
    }
}

#[test]
fn malformed_configs_get_the_spec_codes() {
    assert_eq!(code_of(NetConf::parse(b"{not json")), 6);
    assert_eq!(code_of(NetConf::parse(b"[1,2]")), 7);
    assert_eq!(code_of(NetConf::parse(&bytes(&conf("0.2.0")))), 1);
    assert_eq!(code_of(NetConf::parse(&bytes(&conf("9.9.9")))), 1);
    let mut no_name = conf("1.0.0");
    no_name.as_object_mut().expect("obj").remove("name");
    assert_eq!(code_of(NetConf::parse(&bytes(&no_name))), 7);
    let mut no_socket = conf("1.0.0");
    no_socket.as_object_mut().expect("obj").remove("socket");
    assert_eq!(code_of(NetConf::parse(&bytes(&no_socket))), 7);
    let mut wrong_type = conf("1.0.0");
    wrong_type["cniVersion"] = json!(1);
    assert_eq!(code_of(NetConf::parse(&bytes(&wrong_type))), 7);
    let mut ipam = conf("1.0.0");
    ipam["ipam"] = json!({"type": "host-local"});
    let err = NetConf::parse(&bytes(&ipam)).expect_err("ipam is not ours");
    assert_eq!(err.code, Code::UNSUPPORTED_FIELD);
    assert!(err.msg.contains("\"ipam\""), "{}", err.msg);
    let mut prev = conf("1.0.0");
    prev["prevResult"] = json!("x");
    assert_eq!(code_of(NetConf::parse(&bytes(&prev))), 7);
}

#[test]
fn reserved_keys_and_gc_attachments_are_accepted() {
    let mut c = conf("1.1.0");
    c["runtimeConfig"] = json!({"portMappings": []});
    c["cni.dev/valid-attachments"] = json!([{"containerID": "abc", "ifname": "eth0"}]);
    let parsed = NetConf::parse(&bytes(&c)).expect("parses");
    assert_eq!(
        parsed.valid_attachments,
        Some(vec![Attachment {
            container_id: "abc".into(),
            ifname: "eth0".into()
        }])
    );
    c["cni.dev/valid-attachments"] = json!({"no": "list"});
    assert_eq!(code_of(NetConf::parse(&bytes(&c))), 7);
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn environment_is_validated_per_command() {
    let full = [
        ("CNI_CONTAINERID", "abc-1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
    ];
    let env = CniEnv::from_lookup(Command::Add, env_of(&full)).expect("valid");
    assert_eq!(env.arg("K8S_POD_NAME"), Some("web"));
    let err = |cmd, pairs: &[(&str, &str)]| {
        CniEnv::from_lookup(cmd, env_of(pairs))
            .expect_err("invalid")
            .code
    };
    assert_eq!(err(Command::Add, &full[1..]), Code::INVALID_ENV);
    assert_eq!(err(Command::Add, &[full[0], full[2]]), Code::INVALID_ENV);
    assert_eq!(
        err(
            Command::Add,
            &[("CNI_CONTAINERID", "-bad"), full[1], full[2]]
        ),
        Code::INVALID_ENV
    );
    assert_eq!(
        err(
            Command::Add,
            &[full[0], full[1], ("CNI_IFNAME", "a-very-long-interface")]
        ),
        Code::INVALID_ENV
    );
    assert_eq!(
        err(
            Command::Add,
            &[full[0], full[1], full[2], ("CNI_ARGS", "novalue")]
        ),
        Code::INVALID_ENV
    );
    // DEL may come without a netns (the pod is already gone); GC and STATUS need nothing.
    CniEnv::from_lookup(Command::Del, env_of(&[full[0], full[2]])).expect("DEL without netns");
    CniEnv::from_lookup(Command::Gc, env_of(&[])).expect("GC");
    CniEnv::from_lookup(Command::Status, env_of(&[])).expect("STATUS");
    assert_eq!(
        "FOO".parse::<Command>().expect_err("unknown").code,
        Code::INVALID_ENV
    );
}

fn sample_result() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "knet0123456789a".into(),
                mac: "ee:ee:ee:ee:ee:ee".into(),
                sandbox: None,
                mtu: Some(1450),
            },
            Interface {
                name: "eth0".into(),
                mac: "02:00:00:00:00:01".into(),
                sandbox: Some("/var/run/netns/x".into()),
                mtu: Some(1450),
            },
        ],
        ips: vec![
            IpConfig {
                address: "10.1.0.5/32".parse().expect("net"),
                gateway: Some("169.254.1.1".parse().expect("ip")),
                interface: Some(1),
            },
            IpConfig {
                address: "fd01::5/128".parse().expect("net"),
                gateway: Some("fe80::1".parse().expect("ip")),
                interface: Some(1),
            },
        ],
        routes: vec![Route {
            dst: "0.0.0.0/0".parse().expect("net"),
            gw: Some("169.254.1.1".parse().expect("ip")),
        }],
        dns: None,
    }
}

#[test]
fn results_render_per_version() {
    let r = sample_result();
    let old = r.render(Version::parse_supported("0.3.1").expect("v"));
    assert_eq!(old["cniVersion"], "0.3.1");
    assert_eq!(old["ips"][0]["version"], "4");
    assert_eq!(old["ips"][1]["version"], "6");
    assert!(old["interfaces"][0].get("mtu").is_none());
    let v04 = r.render(Version::parse_supported("0.4.0").expect("v"));
    assert_eq!(v04["ips"][0]["version"], "4");
    let v1 = r.render(Version::parse_supported("1.0.0").expect("v"));
    assert!(v1["ips"][0].get("version").is_none());
    assert!(v1["interfaces"][1].get("mtu").is_none());
    let v11 = r.render(Version::parse_supported("1.1.0").expect("v"));
    assert_eq!(
        v11,
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "knet0123456789a", "mac": "ee:ee:ee:ee:ee:ee", "mtu": 1450},
                {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/x", "mtu": 1450},
            ],
            "ips": [
                {"address": "10.1.0.5/32", "gateway": "169.254.1.1", "interface": 1},
                {"address": "fd01::5/128", "gateway": "fe80::1", "interface": 1},
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
            "dns": {},
        })
    );
    let back = CniResult::addresses_of(&old).expect("parse back");
    assert_eq!(back.len(), 2);
}

#[test]
fn errors_render_the_spec_shape() {
    let e = CniError::new(Code::TRY_AGAIN_LATER, "busy").details("later");
    assert_eq!(
        e.to_json("1.0.0"),
        json!({"cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "later"})
    );
}

fn run(cmd: &str, env: &[(&str, &str)], stdin: &serde_json::Value) -> PluginOutput {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run_plugin(cmd, env_of(env), &bytes(stdin)))
}

#[test]
fn plugin_answers_version_itself() {
    let out = run("VERSION", &[], &json!({"cniVersion": "1.0.0"}));
    assert_eq!(out.exit, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["supportedVersions"], json!(SUPPORTED));
}

#[test]
fn plugin_refuses_commands_the_version_does_not_have() {
    let env = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
    ];
    for (cmd, version) in [("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "0.4.0")] {
        let out = run(cmd, &env, &conf(version));
        assert_eq!(out.exit, 1, "{cmd} {version}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        assert_eq!(v["code"], 1, "{cmd} {version}: {v}");
        assert_eq!(v["cniVersion"], version);
    }
}

#[test]
fn plugin_without_a_daemon_fails_add_and_status_clearly() {
    let env = [
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/x"),
        ("CNI_IFNAME", "eth0"),
    ];
    let add = run("ADD", &env, &conf("1.0.0"));
    assert_eq!(add.exit, 1);
    let v: serde_json::Value = serde_json::from_str(&add.stdout).expect("json");
    assert_eq!(v["code"], 11);
    assert!(
        v["msg"]
            .as_str()
            .is_some_and(|m| m.contains("knet daemon is not running")),
        "{v}"
    );
    let status = run("STATUS", &[], &conf("1.1.0"));
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["code"], 50);
    let bad = run("ADD", &env, &json!({"cniVersion": "1.0.0"}));
    let v: serde_json::Value = serde_json::from_str(&bad.stdout).expect("json");
    assert_eq!(v["code"], 7);
}

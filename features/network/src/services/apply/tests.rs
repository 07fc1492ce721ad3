use std::collections::BTreeMap;

use super::*;
use crate::services::model::Proto;
use crate::services::rule::Action;

/// Chains whose rules are `goto <chain>`, and elements `10.0.0.<i> . tcp . 80 : goto <chain>`.
fn ruleset(chains: &[(&str, &[&str])], elements: &[(&'static str, u8, &str)]) -> Ruleset {
    let mut r = Ruleset::default();
    for (n, rules) in chains {
        r.chains.insert(
            (*n).to_owned(),
            rules
                .iter()
                .map(|s| Rule::always(Action::Goto((*s).to_owned())))
                .collect(),
        );
    }
    for (m, i, v) in elements {
        r.elements
            .entry(*m)
            .or_insert_with(BTreeMap::new)
            .insert(vip(*i), Goto((*v).to_owned()));
    }
    r
}

fn vip(i: u8) -> ElemKey {
    ElemKey::vip(std::net::Ipv4Addr::new(10, 0, 0, i).into(), Proto::Tcp, 80)
}

#[test]
fn an_unchanged_ruleset_needs_no_transaction() {
    let r = ruleset(&[("svc", &["ep"]), ("ep", &["x"])], &[]);
    assert_eq!(diff_script(&r, &r), "");
}

#[test]
fn an_endpoint_change_touches_only_its_chains() {
    let prev = ruleset(
        &[("svc", &["ep1"]), ("ep1", &["x1"]), ("other", &["x"])],
        &[("service-ips-v4", 1, "svc")],
    );
    let next = ruleset(
        &[("svc", &["ep2"]), ("ep2", &["x2"]), ("other", &["x"])],
        &[("service-ips-v4", 1, "svc")],
    );
    let s = diff_script(&prev, &next);
    assert_eq!(
        s,
        "add chain inet knet-services ep2\n\
         add rule inet knet-services ep2 goto x2\n\
         flush chain inet knet-services svc\n\
         add rule inet knet-services svc goto ep2\n\
         flush chain inet knet-services ep1\n\
         delete chain inet knet-services ep1\n"
    );
}

#[test]
fn removed_services_lose_their_elements_before_their_chains() {
    let prev = ruleset(
        &[("svc", &["ep"]), ("ep", &["x"])],
        &[("service-ips-v4", 1, "svc")],
    );
    let s = diff_script(&prev, &Ruleset::default());
    let del_el = s
        .find("delete element inet knet-services service-ips-v4 { 10.0.0.1 . tcp . 80 }")
        .expect("element deleted");
    let del_chain = s
        .find("delete chain inet knet-services svc")
        .expect("chain");
    assert!(del_el < del_chain, "{s}");
}

#[test]
fn full_script_removes_what_the_kernel_has_beyond_the_ruleset() {
    let kernel = parse_names(
        "table inet knet-services {\n\tset aff-old {\n\t}\n\tchain services {\n\t}\n\tchain svc-old {\n\t}\n\tchain svc {\n\t}\n}\n",
    );
    assert!(kernel.chains.contains("svc-old") && kernel.sets.contains("aff-old"));
    let next = ruleset(
        &[("svc", &["ep"]), ("ep", &["x"])],
        &[("service-ips-v4", 1, "svc")],
    );
    let s = full_script(&kernel, &StaticConfig::default(), &next);
    assert!(s.starts_with("add table inet knet-services\n"));
    assert!(s.contains("flush map inet knet-services service-ips-v4\n"));
    assert!(s.contains("delete chain inet knet-services svc-old\n"));
    assert!(s.contains("delete set inet knet-services aff-old\n"));
    assert!(!s.contains("delete chain inet knet-services services\n"));
    assert!(
        s.contains("flush chain inet knet-services svc\n"),
        "existing chain refilled"
    );
    assert!(
        !s.contains("flush chain inet knet-services ep\n"),
        "new chain"
    );
}

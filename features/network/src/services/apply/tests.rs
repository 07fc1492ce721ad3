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

#[test]
fn full_script_streams_part_by_part_in_a_valid_order() {
    // 2000 parts (one per Service, as the sync loop renders them): a chain each, pointing at
    // a chain of its own; one element each. The kernel has chain 0 (refilled) and a stale one.
    let names: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("svc-{i}"), format!("ep-{i}")))
        .collect();
    let parts: Vec<Ruleset> = names
        .iter()
        .map(|(svc, ep)| ruleset(&[(svc, &[ep.as_str()]), (ep, &["x"])], &[]))
        .collect();
    let keys: Vec<ElemKey> = (0..2000u16)
        .map(|i| {
            ElemKey::vip(
                std::net::Ipv4Addr::new(10, 0, (i / 256) as u8, i as u8).into(),
                Proto::Tcp,
                80,
            )
        })
        .collect();
    let verdicts: Vec<Goto> = names.iter().map(|(svc, _)| Goto(svc.clone())).collect();
    let elements = || {
        keys.iter()
            .zip(&verdicts)
            .map(|(k, v)| ("service-ips-v4", k, v))
    };
    let kernel = parse_names(
        "table inet knet-dns {\n\tchain svc-old-dns {\n\t}\n}\ntable inet knet-services {\n\tchain svc-0 {\n\t}\n\tchain svc-old {\n\t}\n}\n",
    );
    let config = StaticConfig::default();
    let mut script = FullScript::new(&kernel, &config, parts.iter(), elements());
    let chunks: Vec<String> = script.by_ref().collect();
    assert!(chunks.len() > 1, "streamed in chunks");
    assert!(chunks.iter().all(|c| c.ends_with('\n')), "whole lines");
    assert_eq!(script.chains(), 4000);
    let text = chunks.concat();
    assert_eq!(script.bytes(), text.len());

    // The same commands as the one-piece script of the merged ruleset.
    let mut merged = Ruleset::default();
    for p in &parts {
        merged.chains.extend(p.chains.clone());
    }
    for (k, v) in elements().map(|(_, k, v)| (k, v)) {
        merged
            .elements
            .entry("service-ips-v4")
            .or_default()
            .insert(*k, v.clone());
    }
    let whole = full_script(&kernel, &config, &merged);
    let sorted = |s: &str| -> Vec<String> {
        let mut l: Vec<String> = s
            .lines()
            .filter(|l| !l.starts_with("add element"))
            .map(str::to_owned)
            .collect();
        l.sort();
        l
    };
    assert_eq!(sorted(&text), sorted(&whole));
    let items = |s: &str| -> usize {
        s.lines()
            .filter(|l| l.starts_with("add element"))
            .map(|l| l.matches(" : goto ").count())
            .sum()
    };
    assert_eq!(items(&text), 2000);

    // Order: a chain is declared before its rules, the elements come after every chain, and
    // the stale chain (only ours, not knet-dns's) is flushed, then deleted, at the end.
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("missing {needle}"))
    };
    for i in [0, 999, 1999] {
        let declared = at(&format!("add chain inet knet-services svc-{i}"));
        let filled = at(&format!("add rule inet knet-services svc-{i} goto ep-{i}"));
        assert!(declared < filled);
        assert!(at(&format!("add chain inet knet-services ep-{i}")) < filled);
    }
    let last_chain = lines
        .iter()
        .rposition(|l| l.starts_with("add chain inet knet-services ep-"))
        .expect("chains");
    let first_element = lines
        .iter()
        .position(|l| l.starts_with("add element"))
        .expect("elements");
    assert!(last_chain < first_element);
    let flush_stale = at("flush chain inet knet-services svc-old");
    assert!(first_element < flush_stale);
    assert!(flush_stale < at("delete chain inet knet-services svc-old"));
    assert!(!text.contains("svc-old-dns"), "another table's chain");
    assert!(text.contains("flush chain inet knet-services svc-0\n"));
    assert!(!text.contains("flush chain inet knet-services svc-1\n"));
}

#[test]
fn name_lists_keep_each_name_once_in_order() {
    let mut l = NameList::default();
    for n in ["b", "a", "b", "c"] {
        l.insert(n);
    }
    assert_eq!(l.iter().collect::<Vec<_>>(), ["b", "a", "c"]);
    assert_eq!(l.len(), 3);
    assert!(l.contains("a") && !l.contains("d"));
}

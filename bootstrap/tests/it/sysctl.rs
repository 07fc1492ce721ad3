//! Sysctls, set inside a namespace the test creates; the host's values are only read.

use knet_bootstrap::netns::current_netns_inode;
use knet_bootstrap::{SYSCTLS, SysctlOutcome, SysctlWant, apply_sysctls};

use crate::support::netns::TestNetns;

fn read(key: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|v| v.trim().to_owned())
}

#[test]
fn sysctls_are_set_in_the_callers_netns_only() {
    let host_before: Vec<Option<String>> = SYSCTLS.iter().map(|s| read(s.0)).collect();
    let host_ns = current_netns_inode().expect("host netns");
    let ns = TestNetns::new();
    let (inode, first, second, values) = ns.run(|| {
        let inode = current_netns_inode().expect("netns inode");
        let mut reported = Vec::new();
        let first = apply_sysctls(&mut |c| reported.push(c)).expect("apply");
        assert_eq!(first, reported, "each sysctl is reported");
        let second = apply_sysctls(&mut |_| {}).expect("apply again");
        let values: Vec<Option<String>> = SYSCTLS.iter().map(|s| read(s.0)).collect();
        (inode, first, second, values)
    });
    assert_ne!(inode, host_ns, "the closure ran in the test namespace");
    assert_eq!(first.len(), SYSCTLS.len());
    for ((key, want, required, _), (change, value)) in SYSCTLS.iter().zip(first.iter().zip(&values))
    {
        assert_eq!(change.key, *key);
        match &change.outcome {
            SysctlOutcome::Absent => {
                assert_eq!(*required, SysctlWant::IfPresent, "{key} is required");
                assert_eq!(value, &None);
            }
            _ => assert_eq!(value.as_deref(), Some(*want), "{key}"),
        }
    }
    // A fresh namespace does not forward: the first run changed it.
    assert_eq!(
        first[0].outcome,
        SysctlOutcome::Set {
            previous: "0".into()
        }
    );
    assert!(
        second
            .iter()
            .all(|c| matches!(c.outcome, SysctlOutcome::AlreadySet | SysctlOutcome::Absent)),
        "second run changes nothing: {second:?}"
    );
    let host_after: Vec<Option<String>> = SYSCTLS.iter().map(|s| read(s.0)).collect();
    assert_eq!(host_before, host_after, "host sysctls untouched");
}

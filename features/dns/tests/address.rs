//! The listening addresses on `lo`, in a network namespace of our own (needs root; fails
//! without it).

use std::net::IpAddr;

use knet_dns::address::{self, LABEL};

fn in_new_netns<F: std::future::Future<Output = ()>>(
    f: impl FnOnce() -> F + Send + 'static,
) -> bool {
    std::thread::spawn(move || {
        // Only this thread (and the `ip` processes it starts) moves to the new namespace.
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return false;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let up = tokio::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .await
                .expect("ip");
            assert!(up.success());
            f().await;
        });
        true
    })
    .join()
    .expect("netns thread")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn adds_moves_and_removes_addresses() {
    let ran = in_new_netns(|| async {
        let svc = ip("10.152.183.10");
        let local = ip("169.254.20.10");
        let v6 = ip("fd98::a");
        address::ensure(&[svc, local, v6]).await.expect("ensure");
        let present = address::list().await.expect("list");
        assert!(
            present.contains(&(svc, true)),
            "{present:?} (label {LABEL})"
        );
        assert!(present.contains(&(local, true)));
        assert!(
            present.contains(&(v6, false)),
            "IPv6 addresses carry no label"
        );
        // Idempotent.
        address::ensure(&[svc, local, v6])
            .await
            .expect("ensure again");
        // The Service IP moves: the old one goes.
        let moved = ip("10.152.183.53");
        address::ensure(&[moved, local, v6]).await.expect("move");
        let present = address::list().await.expect("list");
        assert!(!present.iter().any(|(a, _)| *a == svc), "{present:?}");
        assert!(present.contains(&(moved, true)));
        // Disable removes ours, and the IPv6 one named.
        address::remove_all(&[v6]).await.expect("remove");
        let present = address::list().await.expect("list");
        assert_eq!(
            present,
            vec![(ip("::1"), false)],
            "only the loopback address stays"
        );
        // 127.0.0.1/8 stays.
        let out = tokio::process::Command::new("ip")
            .args(["-4", "addr", "show", "dev", "lo"])
            .output()
            .await
            .expect("ip");
        assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1/8"));
    });
    assert!(
        ran,
        "creating a network namespace needs root: run the tests as root (sudo make test)"
    );
}

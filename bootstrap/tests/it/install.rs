//! Conflist and plugin install into temp dirs: content, modes, idempotence and atomicity.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};

use knet_bootstrap::{Changed, install_plugin, write_conflist};
use knet_core::cni_conf;

use crate::support::{temp_paths, tree};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn ino(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).expect("stat").ino()
}

#[test]
fn conflist_is_pretty_json_and_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = temp_paths(dir.path());
    assert_eq!(write_conflist(&paths).expect("write"), Changed::Written);
    let path = paths.cni_conflist();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("\n  \"cniVersion\""), "pretty: {text}");
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(parsed, cni_conf::conflist(&paths));
    assert_eq!(mode(&path), 0o644);
    let inode = ino(&path);
    assert_eq!(write_conflist(&paths).expect("again"), Changed::Unchanged);
    assert_eq!(ino(&path), inode, "an unchanged conflist is not rewritten");
    // A stale one is replaced.
    std::fs::write(&path, "{}").expect("clobber");
    assert_eq!(write_conflist(&paths).expect("repair"), Changed::Written);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).expect("read"))
            .expect("json"),
        cni_conf::conflist(&paths)
    );
    assert_eq!(
        tree(&paths.cni_conf_dir),
        ["05-knet.conflist"],
        "no temp files left"
    );
}

#[test]
fn plugin_install_copies_with_mode_0755_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = temp_paths(dir.path());
    let src = dir.path().join("knet-build");
    std::fs::write(&src, vec![7u8; 3 << 20]).expect("fake binary");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_eq!(
        install_plugin(&src, &paths).expect("install"),
        Changed::Written
    );
    let dest = paths.cni_plugin();
    assert_eq!(
        std::fs::read(&dest).expect("read"),
        std::fs::read(&src).expect("read")
    );
    assert_eq!(mode(&dest), 0o755);
    let inode = ino(&dest);
    assert_eq!(
        install_plugin(&src, &paths).expect("again"),
        Changed::Unchanged
    );
    assert_eq!(ino(&dest), inode);
    // Same bytes, wrong mode: fixed in place.
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(
        install_plugin(&src, &paths).expect("mode"),
        Changed::Unchanged
    );
    assert_eq!(mode(&dest), 0o755);
    // A new build replaces it (a new inode: running plugins keep the old one).
    std::fs::write(&src, vec![8u8; 3 << 20]).expect("new build");
    assert_eq!(
        install_plugin(&src, &paths).expect("upgrade"),
        Changed::Written
    );
    assert_ne!(ino(&dest), inode);
    assert_eq!(std::fs::read(&dest).expect("read")[0], 8);
    assert_eq!(tree(&paths.cni_bin_dir), ["knet"], "no temp files left");
    // A missing source is an error naming it.
    let err = install_plugin(&dir.path().join("nope"), &paths).expect_err("missing");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn readers_never_see_a_partial_plugin_or_conflist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = temp_paths(dir.path());
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let (va, vb) = (vec![b'a'; 8 << 20], vec![b'b'; 6 << 20]);
    std::fs::write(&a, &va).expect("a");
    std::fs::write(&b, &vb).expect("b");
    install_plugin(&a, &paths).expect("first");
    // Two conflists for the same file: nodes whose run dirs differ.
    let other = knet_core::paths::Paths {
        run_dir: dir.path().join("run2"),
        ..paths.clone()
    };
    write_conflist(&other).expect("conflist b");
    let conf_b = std::fs::read(paths.cni_conflist()).expect("read");
    write_conflist(&paths).expect("conflist a");
    let conf_a = std::fs::read(paths.cni_conflist()).expect("read");
    assert_ne!(conf_a, conf_b);
    let stop = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let got = std::fs::read(paths.cni_plugin()).expect("plugin always present");
                assert!(
                    got == va || got == vb,
                    "partial plugin read ({} bytes)",
                    got.len()
                );
                let conf = std::fs::read(paths.cni_conflist()).expect("conflist always present");
                assert!(conf == conf_a || conf == conf_b, "partial conflist read");
                n += 1;
            }
            n
        });
        for i in 0..16 {
            let (src, p) = if i % 2 == 0 {
                (&b, &other)
            } else {
                (&a, &paths)
            };
            assert_eq!(
                install_plugin(src, &paths).expect("install"),
                Changed::Written
            );
            assert_eq!(write_conflist(p).expect("conflist"), Changed::Written);
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader")
    });
    assert!(reads > 0);
    assert_eq!(tree(&paths.cni_bin_dir), ["knet"]);
    assert_eq!(tree(&paths.cni_conf_dir), ["05-knet.conflist"]);
}

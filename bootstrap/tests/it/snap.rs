//! The snap build script's assembly step, with the debug knet binary stripped of its debug
//! info (`--binary`; the release profile strips it too): the release build the script runs
//! without `--binary` takes minutes on a small machine (docs/bootstrap.md), and xz-packing the
//! unstripped 120 MB debug binary almost two. Needs squashfs-tools (`e2e/install-deps.sh`, run
//! by `make test`, installs it): without it the test fails.

use std::path::Path;
use std::process::Command;

use crate::support::knet_binary;

/// Fails unless `tool` can be run (unsquashfs -version exits 1, so only spawning is checked).
fn require(tool: &str) {
    assert!(
        Command::new(tool).arg("-version").output().is_ok(),
        "{tool} is not installed: install squashfs-tools (e2e/install-deps.sh, run by `make test`, does)"
    );
}

/// `unsquashfs ARGS SNAP [meta/snap.yaml with -cat]`, which must succeed; its stdout.
fn squashfs(args: &[&str], snap: &Path) -> String {
    let out = Command::new("unsquashfs")
        .args(args)
        .arg(snap)
        .args(args.contains(&"-cat").then_some("meta/snap.yaml"))
        .output()
        .expect("run unsquashfs");
    assert!(
        out.status.success(),
        "unsquashfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_snap_script_assembles_a_squashfs_with_meta_hooks_and_binary() {
    require("mksquashfs");
    require("unsquashfs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("knet");
    let strip = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&bin)
        .arg(knet_binary())
        .output()
        .expect("run strip (binutils)");
    assert!(
        strip.status.success(),
        "strip: {}",
        String::from_utf8_lossy(&strip.stderr)
    );
    let out_dir = dir.path().join("out");
    let out = Command::new("bash")
        .arg(root.join("snap/local/build-snap.sh"))
        .args(["--binary", &bin.display().to_string()])
        .args(["--out", &out_dir.display().to_string()])
        .output()
        .expect("run build-snap.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = std::fs::read_dir(&out_dir)
        .expect("read out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a .snap was written");
    let name = snap
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&format!("knet_{}_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );

    let list = squashfs(&["-lls"], &snap);
    let entry = |path: &str| {
        list.lines()
            .find(|l| l.ends_with(&format!(" squashfs-root/{path}")))
            .unwrap_or_else(|| panic!("{path} missing:\n{list}"))
            .to_owned()
    };
    for exe in ["bin/knet", "meta/hooks/install", "meta/hooks/remove"] {
        let line = entry(exe);
        assert!(line.starts_with("-rwxr-xr-x root/root "), "{line}");
    }
    let line = entry("meta/snap.yaml");
    assert!(line.starts_with("-rw"), "{line}");
    // The packed binary is the one given, byte for byte, and runs.
    let extracted = dir.path().join("root");
    squashfs(&["-d", &extracted.display().to_string()], &snap);
    assert!(
        std::fs::read(extracted.join("bin/knet")).expect("packed binary")
            == std::fs::read(&bin).expect("given binary"),
        "bin/knet differs from the binary given"
    );
    let version = Command::new(extracted.join("bin/knet"))
        .arg("version")
        .output()
        .expect("run the packed knet");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("knet {}", env!("CARGO_PKG_VERSION"))
    );

    let yaml = squashfs(&["-cat"], &snap);
    for want in [
        "name: knet",
        &format!("version: '{}'", env!("CARGO_PKG_VERSION")),
        "confinement: classic",
        "base: core24",
        "command: bin/knet daemon",
        "install-mode: disable",
    ] {
        assert!(
            yaml.contains(want),
            "{want:?} missing from snap.yaml:\n{yaml}"
        );
    }
    let remove = std::fs::read_to_string(root.join("snap/hooks/remove")).expect("remove hook");
    assert!(
        remove.contains("knet\" reset --from-snap-service"),
        "the remove hook resets the paths bootstrap used: {remove}"
    );
}

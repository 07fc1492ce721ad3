//! The snap build script, run with a stand-in binary (the release build is its slow part and
//! is covered by running the script for real; see docs/bootstrap.md).

use std::path::Path;
use std::process::Command;

#[test]
fn build_snap_script_assembles_a_squashfs_with_meta_hooks_and_binary() {
    if Command::new("mksquashfs").arg("-version").output().is_err() {
        eprintln!("skipped: mksquashfs not installed (apt install squashfs-tools)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = crate::support::fake_knet(dir.path(), None);
    let out = Command::new("bash")
        .arg(root.join("snap/local/build-snap.sh"))
        .args(["--binary", &bin.display().to_string()])
        .args(["--out", &dir.path().display().to_string()])
        .output()
        .expect("run build-snap.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = std::fs::read_dir(dir.path())
        .expect("read out")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .expect("a .snap was written");
    let list = Command::new("unsquashfs")
        .args(["-l", &snap.display().to_string()])
        .output()
        .expect("unsquashfs");
    let list = String::from_utf8_lossy(&list.stdout);
    for want in [
        "squashfs-root/meta/snap.yaml",
        "squashfs-root/meta/hooks/install",
        "squashfs-root/meta/hooks/remove",
        "squashfs-root/bin/knet",
    ] {
        assert!(list.lines().any(|l| l == want), "{want} missing:\n{list}");
    }
    let yaml = Command::new("unsquashfs")
        .args(["-cat", &snap.display().to_string(), "meta/snap.yaml"])
        .output()
        .expect("unsquashfs -cat");
    let yaml = String::from_utf8_lossy(&yaml.stdout);
    assert!(yaml.contains("confinement: classic"), "{yaml}");
    assert!(yaml.contains("command: bin/knet daemon"), "{yaml}");
}

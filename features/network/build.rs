//! Compiles the socket load-balancing BPF program (`bpf/sock_lb.c`) with clang into
//! `$OUT_DIR/sock_lb.o`, embedded by `services::socket_lb`. Without a BPF-capable clang the
//! object is empty and the daemon runs nftables alone (it says so in `knet status`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/sock_lb.c");
    println!("cargo:rerun-if-env-changed=KNET_BPF_CLANG");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("sock_lb.o");
    let arch_include = format!(
        "/usr/include/{}-linux-gnu",
        std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())
    );
    let candidates: Vec<String> = match std::env::var("KNET_BPF_CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-19".into(), "clang".into()],
    };
    for clang in &candidates {
        let status = Command::new(clang)
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-Wall",
                "-I",
                &arch_include,
                "-c",
            ])
            .arg("bpf/sock_lb.c")
            .arg("-o")
            .arg(&obj)
            .status();
        if status.is_ok_and(|s| s.success()) {
            return;
        }
    }
    println!(
        "cargo:warning=could not compile bpf/sock_lb.c with {candidates:?} (install clang-19 and libbpf-dev); socket load balancing will be unavailable"
    );
    std::fs::write(&obj, b"").expect("write an empty BPF object");
}

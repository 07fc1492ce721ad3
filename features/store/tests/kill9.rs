//! `kill -9` of a process in the middle of allocating, repeated, loses no acknowledged write and
//! never lets two owners hold one key. The writer is this same test binary, re-run as a child
//! with `KNET_STORE_WRITER` set, so the test needs nothing but the store.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use knet_store::Store;

const ENV_DIR: &str = "KNET_STORE_WRITER";
const ROUNDS: usize = 25;

/// Child mode: allocate "IPs" to fresh owners forever, printing `ACK owner ip` after each
/// acknowledged (flushed) allocation. Does nothing when run as a normal test.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let round: String = std::env::var("KNET_STORE_ROUND").expect("round");
    let store = Store::open(std::path::Path::new(&dir)).expect("open in child");
    let ips = store.tree("ips").expect("tree");
    let mut stdout = std::io::stdout();
    for n in 0..1_000_000u32 {
        let owner = format!("r{round}-c{n}");
        // Scan for the first free address, like IPAM does.
        for host in 0..65_536u32 {
            let ip = format!("10.1.{}.{}", host / 256, host % 256);
            if ips.insert_if_absent(&ip, owner.as_bytes()).expect("cas") {
                use std::io::Write;
                writeln!(stdout, "ACK {owner} {ip}").expect("print");
                stdout.flush().expect("flush");
                break;
            }
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_allocation_and_never_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: HashMap<String, String> = HashMap::new(); // ip -> owner
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
            .env(ENV_DIR, dir.path())
            .env("KNET_STORE_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        // Let it run a pseudo-random while (50..450 ms), reading acks as they come.
        let budget = Duration::from_millis(50 + (round as u64 * 137) % 400);
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        let start = Instant::now();
        while start.elapsed() < budget {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SIGKILL, no chance to clean up.
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");
        for line in lines.iter().filter(|l| l.starts_with("ACK ")) {
            let mut parts = line.split_whitespace().skip(1);
            let (Some(owner), Some(ip)) = (parts.next(), parts.next()) else {
                continue;
            };
            let previous = acked.insert(ip.to_owned(), owner.to_owned());
            assert!(
                previous.is_none(),
                "round {round}: {ip} acknowledged to {owner} but already held by {previous:?}"
            );
        }
        // Reopen after the crash and check every acknowledged allocation is still there.
        let store = Store::open(dir.path()).expect("reopen after kill -9");
        let ips = store.tree("ips").expect("tree");
        for (ip, owner) in &acked {
            let got = ips.get(ip).expect("get");
            assert_eq!(
                got.as_deref(),
                Some(owner.as_bytes()),
                "round {round}: acknowledged allocation {ip} -> {owner} lost or changed"
            );
        }
        drop(store);
    }
    assert!(
        acked.len() > ROUNDS,
        "the writer acknowledged only {} allocations in {ROUNDS} rounds: the test did not exercise the store",
        acked.len()
    );
}

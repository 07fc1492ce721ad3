//! A real upstream DNS server for forwarding tests: BIND's `named` (Debian bind9) on loopback.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running `named`; killed on drop.
pub struct Named {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

const ZONE: &str = "$TTL 60
@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 30
@ IN NS ns.example.test.
ns IN A 127.0.0.1
www IN A 192.0.2.10
alias IN CNAME www.example.test.
";

fn free_port() -> u16 {
    // Bind port 0, note the port, release it: named binds it right after.
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Named {
    /// Serves the zone `example.test` authoritatively.
    pub async fn authoritative() -> Named {
        let named = Named::start(
            "recursion no;",
            "zone \"example.test\" { type primary; file \"example.test.zone\"; };",
        )
        .await;
        // Listening is not serving: on a loaded machine the zone may load a moment later.
        named.wait_zone_loaded().await;
        named
    }

    /// Forwards everything to `to` (used to build a forwarding loop).
    pub async fn forwarding_to(to: SocketAddr) -> Named {
        let options = format!(
            "recursion yes; allow-recursion {{ any; }}; forward only; forwarders {{ {} port {}; }};",
            to.ip(),
            to.port()
        );
        Named::start(&options, "").await
    }

    async fn start(options: &str, zones: &str) -> Named {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = format!(
            "controls {{ }};
options {{
  directory \"{dir}\";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  pid-file none;
  dnssec-validation no;
  allow-query {{ any; }};
  {options}
}};
{zones}
",
            dir = dir.path().display()
        );
        write(dir.path(), "named.conf", &conf);
        write(dir.path(), "example.test.zone", ZONE);
        let child = Command::new("named")
            .args(["-g", "-4", "-c"])
            .arg(dir.path().join("named.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("named runs (apt-get install bind9)");
        let named = Named {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        };
        named.wait_ready().await;
        named
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("named did not start on {}", self.addr);
    }

    async fn wait_zone_loaded(&self) {
        let port = self.addr.port().to_string();
        for _ in 0..100 {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &port, "+short", "+time=1", "+tries=1"])
                .args(["www.example.test", "A"])
                .output()
                .await;
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("192.0.2.10")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("named on {} never served example.test", self.addr);
    }

    /// Stops it (to show answers now come from the cache).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write named file");
}

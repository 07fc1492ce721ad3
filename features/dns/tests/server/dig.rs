//! Running `dig` (Debian's dnsutils) against a server and reading its answer.

use std::net::SocketAddr;

use tokio::process::Command;

/// What dig printed, parsed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`, ...
    pub status: String,
    /// Header flags (`qr`, `aa`, `rd`, `ra`, `tc`).
    pub flags: Vec<String>,
    /// Answer records as `name ttl class type data`, single-spaced.
    pub answer: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Additional records (without the OPT pseudo-record).
    pub additional: Vec<String>,
}

impl Dig {
    /// Answer records' data fields (the last column), sorted.
    pub fn data(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .answer
            .iter()
            .filter_map(|r| r.splitn(5, ' ').nth(4).map(str::to_string))
            .collect();
        out.sort();
        out
    }

    /// Whether a header flag is set.
    pub fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// `dig @server name type` over UDP (`tcp` false) or TCP. `extra` adds dig options.
pub async fn dig(server: SocketAddr, name: &str, qtype: &str, tcp: bool, extra: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([name, qtype])
        .arg(if tcp { "+tcp" } else { "+notcp" })
        .args(["+tries=1", "+time=5", "+nocookie"])
        .args(extra)
        .output()
        .await
        .expect("dig runs (apt-get install dnsutils)");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(text: &str) -> Dig {
    let mut d = Dig::default();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            d.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = line;
        } else if line.is_empty() || line.starts_with(';') {
            if line.is_empty() {
                section = "";
            }
        } else {
            let record = line.split_whitespace().collect::<Vec<_>>().join(" ");
            match section {
                ";; ANSWER SECTION:" => d.answer.push(record),
                ";; AUTHORITY SECTION:" => d.authority.push(record),
                ";; ADDITIONAL SECTION:" => d.additional.push(record),
                _ => {}
            }
        }
    }
    d
}

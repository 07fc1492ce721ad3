//! `knet-lab`: a dev lab that outlives the command. `up` starts a background
//! `serve` process (control plane, nodes, kubelet emulation, node leases,
//! API forwarder) and returns once it is ready; `down` stops it and removes
//! everything; `status` and `env` say what is running and how to use it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use knet_e2e::config::DEFAULT_RUN_ROOT;
use knet_e2e::lab::STATE_FILE;
use knet_e2e::process::PidRecord;
use knet_e2e::{CniMode, Lab, LabOptions, Segment, sweep};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Parser)]
#[command(about = "Run knet's lab: a real control plane with network-namespace nodes")]
struct Cli {
    /// Lab id (names are `knetlab-<id>-...`).
    #[arg(long, global = true, env = "KNET_LAB_ID", default_value = "dev")]
    id: String,
    /// Where lab run dirs live.
    #[arg(long, global = true, env = "KNET_LAB_RUN_ROOT", default_value = DEFAULT_RUN_ROOT)]
    run_root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a lab in the background and wait until it is ready.
    Up(UpArgs),
    /// Stop the lab and remove everything it created.
    Down,
    /// Show whether the lab runs, and its nodes.
    Status,
    /// Print KUBECONFIG and how to enter nodes.
    Env,
    /// Run the lab in the foreground until SIGTERM (what `up` starts).
    #[command(hide = true)]
    Serve(UpArgs),
}

#[derive(clap::Args, Clone)]
struct UpArgs {
    /// Number of nodes (`node-1`..).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Run `knet bootstrap` + `knet daemon` on every node, and use the CNI
    /// config knet installs instead of the reference bridge.
    #[arg(long)]
    knet: bool,
    /// Put even-numbered nodes on a second L2 segment behind the router.
    #[arg(long)]
    two_segments: bool,
    /// Give up waiting for the lab after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNET_LAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::Up(a) => up(&cli, a),
        Cmd::Down => down(&cli),
        Cmd::Status => status(&cli),
        Cmd::Env => env(&cli),
        Cmd::Serve(a) => serve(&cli, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "knet-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn options(cli: &Cli, a: &UpArgs) -> LabOptions {
    let mut o = LabOptions::new(&cli.id, a.nodes);
    o.run_root.clone_from(&cli.run_root);
    o.knet = a.knet;
    if a.knet {
        o.cni = CniMode::ConfDir;
    }
    if a.two_segments {
        for (i, n) in o.nodes.iter_mut().enumerate() {
            if i % 2 == 1 {
                n.segment = Segment::B;
            }
        }
    }
    o
}

fn up(cli: &Cli, a: &UpArgs) -> Result<()> {
    let dir = cli.run_root.join(&cli.id);
    if let Some(owner) = sweep::live_owner(&dir) {
        writeln!(
            std::io::stdout(),
            "lab {} already up (pid {})",
            cli.id,
            owner.pid
        )?;
        return env(cli);
    }
    let t0 = Instant::now();
    std::fs::create_dir_all(&cli.run_root)?;
    let log = cli.run_root.join(format!("{}.log", cli.id));
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut args: Vec<String> = vec![
        "--id".into(),
        cli.id.clone(),
        "--run-root".into(),
        cli.run_root.display().to_string(),
        "serve".into(),
        "--nodes".into(),
        a.nodes.to_string(),
    ];
    if a.knet {
        args.push("--knet".into());
    }
    if a.two_segments {
        args.push("--two-segments".into());
    }
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("starting the lab process")?;
    let state = dir.join(STATE_FILE);
    let deadline = t0 + Duration::from_secs(a.timeout);
    while !state.exists() {
        if let Some(st) = child.try_wait()? {
            bail!("lab process exited ({st}); log:\n{}", tail(&log, 30));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "lab not ready after {} s; log:\n{}",
                a.timeout,
                tail(&log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = read_state(&dir)?;
    writeln!(
        std::io::stdout(),
        "lab {} up in {:.1} s (control plane {:.1} s), log {}",
        cli.id,
        t0.elapsed().as_secs_f64(),
        s["controlPlaneStartupMs"].as_f64().unwrap_or(0.0) / 1000.0,
        log.display()
    )?;
    env(cli)
}

fn serve(cli: &Cli, a: &UpArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut lab = Lab::start(options(cli, a)).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping lab");
        lab.teardown();
        Ok(())
    })
}

fn down(cli: &Cli) -> Result<()> {
    let dir = cli.run_root.join(&cli.id);
    if let Some(owner) = sweep::live_owner(&dir) {
        stop_owner(&owner)?;
    }
    let report = sweep::teardown(&cli.run_root, &cli.id);
    let _ = std::fs::remove_file(cli.run_root.join(format!("{}.log", cli.id)));
    writeln!(
        std::io::stdout(),
        "lab {} down (leftovers removed: {} processes, {} strays, {} namespaces)",
        cli.id,
        report.stopped,
        report.strays,
        report.netns.len()
    )?;
    Ok(())
}

/// SIGTERM the lab process (verified to be ours) and wait for it to finish
/// its own teardown; SIGKILL after 60 s.
fn stop_owner(owner: &PidRecord) -> Result<()> {
    kill(Pid::from_raw(owner.pid), Signal::SIGTERM).context("signalling the lab process")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while owner.is_ours() {
        if Instant::now() > deadline {
            let _ = kill(Pid::from_raw(owner.pid), Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn status(cli: &Cli) -> Result<()> {
    let dir = cli.run_root.join(&cli.id);
    let mut out = std::io::stdout();
    let Some(owner) = sweep::live_owner(&dir) else {
        writeln!(out, "lab {}: down", cli.id)?;
        return Ok(());
    };
    let s = read_state(&dir).unwrap_or_default();
    writeln!(
        out,
        "lab {}: up (pid {}), api https://127.0.0.1:{}",
        cli.id, owner.pid, s["apiPort"]
    )?;
    for n in s["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or_default();
        let knet = PidRecord::read(&dir.join("pids").join(format!("knet-{name}.pid")))
            .is_ok_and(|r| r.is_ours());
        writeln!(
            out,
            "  {name}: netns {} ip {} / {} podCIDR {} knet {}",
            n["netns"].as_str().unwrap_or_default(),
            n["ipv4"].as_str().unwrap_or_default(),
            n["ipv6"].as_str().unwrap_or_default(),
            n["podCIDR"].as_str().unwrap_or("-"),
            if knet { "running" } else { "-" }
        )?;
    }
    let pods = std::fs::read_dir(dir.join("pids"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("pod-"))
                .count()
        })
        .unwrap_or(0);
    writeln!(out, "  {pods} pod processes")?;
    Ok(())
}

fn env(cli: &Cli) -> Result<()> {
    let dir = cli.run_root.join(&cli.id);
    let s = read_state(&dir).context("lab is not up")?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "export KUBECONFIG={}",
        s["kubeconfig"].as_str().unwrap_or_default()
    )?;
    if let Ok(bins) = knet_e2e::bins::Bins::locate() {
        writeln!(
            out,
            "export PATH={}:$PATH   # kubectl",
            bins.dir().display()
        )?;
    }
    for n in s["nodes"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "# node {}: ip netns exec {} bash   (kubeconfig {})",
            n["name"].as_str().unwrap_or_default(),
            n["netns"].as_str().unwrap_or_default(),
            n["kubeconfig"].as_str().unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "# underlay/router: ip netns exec {} bash",
        s["underlayNetns"].as_str().unwrap_or_default()
    )?;
    Ok(())
}

fn read_state(dir: &Path) -> Result<serde_json::Value> {
    let data = std::fs::read(dir.join(STATE_FILE))
        .with_context(|| format!("reading {}", dir.join(STATE_FILE).display()))?;
    Ok(serde_json::from_slice(&data)?)
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

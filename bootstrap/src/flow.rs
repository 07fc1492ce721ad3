//! The bootstrap sequence. Order matters: nothing is written to the node until preflight has
//! passed and the Kubernetes API has answered, and the marker is written last, so an
//! interrupted bootstrap simply runs again.

use std::path::PathBuf;

use knet_core::config::ClusterConfig;
use knet_core::paths::SocketLbCgroup;
use knet_store::Store;

use crate::cluster_config::{ClusterApi, ConfigDecision, decide, ensure_cluster_config};
use crate::daemon::{self, DaemonState, detached_daemon_pid, is_knet_daemon};
use crate::preflight::{self, Report};
use crate::{
    BootstrapError, BootstrapOptions, DaemonStart, Outcome, SocketLbChoice, Step, fsutil, install,
    sysctl, wait,
};

/// Store tree where bootstrap caches the cluster config for the daemon's first start.
pub const STORE_CONFIG_TREE: &str = "config";
/// Key of the cached cluster config (JSON) in [`STORE_CONFIG_TREE`].
pub const STORE_CONFIG_KEY: &str = "cluster";

/// Bootstraps this node (see the crate docs for the steps), building the Kubernetes client
/// from `opts.kubeconfig`. Progress is reported through `progress` as it happens.
pub async fn bootstrap(
    opts: BootstrapOptions,
    progress: &mut dyn FnMut(Step),
) -> Result<Outcome, BootstrapError> {
    let kubeconfig = opts.kubeconfig.clone();
    run(opts, ApiSource::Kubeconfig(kubeconfig), progress).await
}

/// [`bootstrap`] with a ready-made Kubernetes client (the lab, tests).
pub async fn bootstrap_with(
    opts: BootstrapOptions,
    api: ClusterApi,
    progress: &mut dyn FnMut(Step),
) -> Result<Outcome, BootstrapError> {
    run(opts, ApiSource::Given(api), progress).await
}

enum ApiSource {
    Given(ClusterApi),
    Kubeconfig(Option<PathBuf>),
}

async fn run(
    opts: BootstrapOptions,
    api: ApiSource,
    progress: &mut dyn FnMut(Step),
) -> Result<Outcome, BootstrapError> {
    let marker = opts.paths.bootstrap_marker();
    if marker.exists() {
        progress(Step::AlreadyBootstrapped {
            marker,
            file_ignored: opts.config_file.is_some(),
        });
        let state = daemon::start_daemon(opts.start_daemon, &opts)?;
        progress(Step::Daemon(state));
        return Ok(Outcome::AlreadyBootstrapped);
    }

    // 1. Preflight, with the file's (or default) VXLAN port. The file is validated first.
    let local = match decide(None, opts.config_file.as_deref())? {
        ConfigDecision::Create(c) | ConfigDecision::Adopt { config: c, .. } => c,
    };
    let report = preflight::preflight(&opts.paths, &local);
    if !report.passed() {
        return Err(BootstrapError::Preflight(report));
    }
    progress(Step::Preflight(report));

    // 2. The cluster config: created or adopted. The only step before any local write.
    let api = match api {
        ApiSource::Given(api) => api,
        ApiSource::Kubeconfig(path) => ClusterApi::from_kubeconfig(path.as_deref()).await?,
    };
    let (config, origin) = ensure_cluster_config(&api, opts.config_file.as_deref()).await?;
    if config.network.vxlan_port != local.network.vxlan_port {
        let check = preflight::check_vxlan_port(config.network.vxlan_port);
        if check.severity == preflight::Severity::Error {
            return Err(BootstrapError::Preflight(Report {
                checks: vec![check],
            }));
        }
    }
    progress(Step::ClusterConfig(origin.clone()));

    // 3. CNI conflist and plugin.
    let changed = install::write_conflist(&opts.paths)?;
    progress(Step::CniConfig {
        path: opts.paths.cni_conflist(),
        changed,
    });
    let changed = install::install_plugin(&opts.knet_binary, &opts.paths)?;
    progress(Step::CniPlugin {
        path: opts.paths.cni_plugin(),
        changed,
    });

    // 4. Sysctls, in the calling thread's network namespace.
    sysctl::apply_sysctls(&mut |c| progress(Step::Sysctl(c)))?;

    // 5. The store, with the config cached for the daemon's first start.
    init_store(&opts, &config)?;
    progress(Step::Store {
        path: opts.paths.store_dir(),
    });

    // 6. Where socket load balancing attaches, for the daemon to read.
    progress(write_socket_lb(&opts)?);

    // 7. The daemon.
    let state = daemon::start_daemon(opts.start_daemon, &opts)?;
    progress(Step::Daemon(state.clone()));

    // 8. Readiness.
    if opts.ready_timeout.is_zero() {
        progress(Step::ReadinessSkipped);
    } else {
        let hint = daemon::log_hint(opts.start_daemon, &opts.paths);
        let log = opts.paths.log_file();
        let mut alive = || match &state {
            DaemonState::Spawned { pid, .. } | DaemonState::AlreadyRunning { pid }
                if !is_knet_daemon(*pid) =>
            {
                Some(format!(
                    "the daemon (pid {pid}) exited; last log lines: {}",
                    daemon::log_tail(&log, 5)
                ))
            }
            _ => None,
        };
        wait::wait_ready(
            &opts.paths.socket(),
            opts.ready_timeout,
            &hint,
            &mut alive,
            progress,
        )
        .await?;
    }

    // 9. The marker, last.
    let marker = opts.paths.bootstrap_marker();
    fsutil::write_atomic(&marker, marker_text(&opts, &origin).as_bytes(), 0o644)?;
    progress(Step::Marker { path: marker });
    Ok(Outcome::Bootstrapped { config: origin })
}

/// Opens (creating) the store and caches the config in it, then closes it again: the daemon
/// takes the store's lock next. If a daemon already runs (a re-run after a failed wait), it
/// holds the lock and the store is initialised already.
fn init_store(opts: &BootstrapOptions, config: &ClusterConfig) -> Result<(), BootstrapError> {
    let dir = opts.paths.store_dir();
    std::fs::create_dir_all(&opts.paths.state_dir)
        .map_err(|e| BootstrapError::io("create directory", &opts.paths.state_dir, e))?;
    match Store::open(&dir) {
        Ok(store) => {
            store
                .tree(STORE_CONFIG_TREE)?
                .put_json(STORE_CONFIG_KEY, config)?;
            Ok(())
        }
        Err(e) if daemon_running(opts) => {
            tracing::info!(error = %e, "store is held by the running daemon");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn daemon_running(opts: &BootstrapOptions) -> bool {
    detached_daemon_pid(&opts.paths).is_some()
        || (opts.start_daemon.resolve() == DaemonStart::Systemd
            && std::os::unix::net::UnixStream::connect(opts.paths.socket()).is_ok())
}

fn marker_text(opts: &BootstrapOptions, origin: &crate::ConfigOrigin) -> String {
    let how = match origin {
        crate::ConfigOrigin::Created => "created",
        crate::ConfigOrigin::Adopted { .. } => "adopted",
    };
    format!(
        "# Written by `knet bootstrap` as its last step; `knet reset` removes it.\nnode: {}\nbootstrapped-at-unix: {}\nknet-version: {}\ncluster-config: {how}\n",
        opts.node_name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        env!("CARGO_PKG_VERSION"),
    )
}

/// Resolves `opts.socket_lb` and records it in the state dir.
fn write_socket_lb(opts: &BootstrapOptions) -> Result<Step, BootstrapError> {
    let (setting, note) = match &opts.socket_lb {
        SocketLbChoice::Off => (SocketLbCgroup::Off, None),
        SocketLbChoice::Cgroup(p) => (SocketLbCgroup::Cgroup(p.clone()), None),
        SocketLbChoice::Auto => {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            match preflight::cgroup2_mount(&mountinfo) {
                Some(root) => (SocketLbCgroup::Cgroup(root), None),
                None => (
                    SocketLbCgroup::Off,
                    Some("no cgroup v2 file system is mounted".to_owned()),
                ),
            }
        }
    };
    let file = opts.paths.socket_lb_cgroup_file();
    fsutil::write_atomic(&file, setting.to_file_text().as_bytes(), 0o644)?;
    Ok(Step::SocketLb {
        cgroup: match setting {
            SocketLbCgroup::Cgroup(p) => Some(p),
            SocketLbCgroup::Off => None,
        },
        note,
    })
}

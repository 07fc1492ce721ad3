//! The lab's own end-to-end tests, against the real control plane and real
//! namespaces (root needed). One lab is shared by all tests of this binary
//! (unique namespaces and node names per test); it is torn down after the
//! run. Tests fail, never skip, when the lab cannot start.
//!
//! A custom harness (libtest-mimic) so the shared lab is dropped, and so
//! cleaned up, after the last test.

mod basics;
mod pods;
mod teardown;

use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use knet_e2e::{Lab, LabOptions};
use libtest_mimic::{Arguments, Failed, Trial};

/// Agnhost image name (the lab runs its agnhost binary for it).
pub const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

/// What every test gets: a runtime and the shared lab, started on first use.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    lab: OnceLock<Result<Lab, String>>,
}

// === impl Harness ===

impl Harness {
    /// The shared lab (two nodes on segment A, reference CNI).
    pub fn lab(&self) -> Result<&Lab, Failed> {
        self.lab
            .get_or_init(|| {
                let id = format!("t{}", std::process::id());
                self.rt
                    .block_on(Lab::start(LabOptions::new(&id, 2)))
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| Failed::from(format!("the lab did not start: {e}")))
    }

    /// Runs a test body on the harness runtime.
    pub fn run<F: Future<Output = anyhow::Result<()>>>(&self, f: F) -> Result<(), Failed> {
        self.rt
            .block_on(f)
            .map_err(|e| Failed::from(format!("{e:#}")))
    }
}

type TestFn = fn(&Harness) -> Result<(), Failed>;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KNET_LAB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Arguments::from_args();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(%e, "no tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let h = Arc::new(Harness {
        rt,
        lab: OnceLock::new(),
    });
    let tests: Vec<(&str, TestFn)> = [basics::TESTS, pods::TESTS, teardown::TESTS].concat();
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let h = h.clone();
            Trial::test(name, move || f(&h))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(h) {
        Ok(h) => {
            if let Some(Ok(mut lab)) = h.lab.into_inner() {
                lab.teardown();
            }
        }
        Err(_) => tracing::error!("shared lab still referenced; it is swept on the next start"),
    }
    conclusion.exit_code()
}

//! Container run state and the pod status written from it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::process::PidRecord;

/// What the pod status is computed from, besides container states.
#[derive(Debug, Clone)]
pub struct PodView {
    /// Pod IPs from CNI.
    pub ips: Vec<String>,
    /// Node addresses.
    pub host_ips: Vec<String>,
    /// When the sandbox came up.
    pub start_time: Time,
    /// `spec.restartPolicy`.
    pub restart_policy: String,
}

/// One container's state as the lab tracks it.
#[derive(Debug)]
pub struct ContainerRun {
    /// The container spec.
    pub spec: Container,
    /// Restarts so far.
    pub restarts: i32,
    /// Whether it is ready (probe passed, or running without a probe).
    pub ready: bool,
    running_since: Option<Time>,
    last_exit: Option<(Option<i32>, Time, Time)>,
    pid: Option<PidRecord>,
    probe_next: Option<Instant>,
    successes: i32,
    failures: i32,
}

// === impl ContainerRun ===

impl ContainerRun {
    /// A container not started yet.
    pub fn new(spec: Container) -> Self {
        Self {
            spec,
            restarts: 0,
            ready: false,
            running_since: None,
            last_exit: None,
            pid: None,
            probe_next: None,
            successes: 0,
            failures: 0,
        }
    }

    /// Its process started.
    pub fn started(&mut self, pid: PidRecord) {
        self.pid = Some(pid);
        self.running_since = Some(Time(Timestamp::now()));
        self.successes = 0;
        self.failures = 0;
        match &self.spec.readiness_probe {
            Some(p) => {
                self.ready = false;
                let delay = u64::try_from(p.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
                self.probe_next = Some(Instant::now() + Duration::from_secs(delay));
            }
            None => self.ready = true,
        }
    }

    /// Pid of its running process.
    pub fn pid(&self) -> Option<i32> {
        self.pid.as_ref().map(|p| p.pid)
    }

    /// Its process exited with `code` (None: killed by a signal).
    pub fn exited(&mut self, code: Option<i32>) {
        let started = self
            .running_since
            .take()
            .unwrap_or_else(|| Time(Timestamp::now()));
        self.last_exit = Some((code, started, Time(Timestamp::now())));
        self.ready = false;
        self.probe_next = None;
        self.pid = None;
    }

    /// Whether the restart policy restarts it after its last exit.
    pub fn should_restart(&self, policy: &str) -> bool {
        match policy {
            "Never" => false,
            "OnFailure" => self
                .last_exit
                .as_ref()
                .is_some_and(|(c, _, _)| *c != Some(0)),
            _ => true,
        }
    }

    /// Delay before the next restart: 1 s doubling up to 10 s.
    pub fn backoff(&self) -> Duration {
        Duration::from_secs(1 << self.restarts.clamp(0, 3)).min(Duration::from_secs(10))
    }

    /// When its readiness probe is next due, if it has one and runs.
    pub fn next_due(&self) -> Option<Instant> {
        self.running_since.as_ref()?;
        self.probe_next
    }

    /// Records a probe result.
    pub fn probed(&mut self, ok: bool) {
        let Some(p) = &self.spec.readiness_probe else {
            return;
        };
        let period = u64::try_from(p.period_seconds.unwrap_or(10).max(1)).unwrap_or(10);
        self.probe_next = Some(Instant::now() + Duration::from_secs(period));
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= p.success_threshold.unwrap_or(1) {
                self.ready = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= p.failure_threshold.unwrap_or(3) {
                self.ready = false;
            }
        }
    }

    fn status(&self, uid_hint: &str) -> Value {
        let state = match (&self.running_since, &self.last_exit) {
            (Some(t), _) => json!({"running": {"startedAt": t}}),
            (None, Some((code, s, f))) => json!({"terminated": {
                "exitCode": code.unwrap_or(137),
                "reason": if *code == Some(0) { "Completed" } else { "Error" },
                "startedAt": s, "finishedAt": f,
            }}),
            (None, None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        json!({
            "name": self.spec.name,
            "image": self.spec.image.clone().unwrap_or_default(),
            "imageID": "",
            "containerID": format!("knetlab://{uid_hint}-{}", self.spec.name),
            "ready": self.ready,
            "started": self.running_since.is_some(),
            "restartCount": self.restarts,
            "state": state,
        })
    }
}

/// The pod status patch for the current state.
pub fn render(view: &PodView, runs: &[ContainerRun], ready_since: &Time) -> Value {
    let all_ready = runs.iter().all(|r| r.ready);
    let any_running = runs.iter().any(|r| r.running_since.is_some());
    let all_done = runs
        .iter()
        .all(|r| r.running_since.is_none() && r.last_exit.is_some());
    let phase = if any_running || !all_done || view.restart_policy == "Always" {
        "Running"
    } else if runs
        .iter()
        .all(|r| r.last_exit.as_ref().is_some_and(|(c, _, _)| *c == Some(0)))
    {
        "Succeeded"
    } else {
        "Failed"
    };
    let b = |v: bool| if v { "True" } else { "False" };
    let cond =
        |t: &str, s: &str, at: &Time| json!({"type": t, "status": s, "lastTransitionTime": at});
    let start = &view.start_time;
    json!({"status": {
        "phase": phase,
        "podIP": view.ips.first(),
        "podIPs": view.ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "hostIP": view.host_ips.first(),
        "hostIPs": view.host_ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
        "startTime": start,
        "conditions": [
            cond("PodReadyToStartContainers", "True", start),
            cond("Initialized", "True", start),
            cond("ContainersReady", b(all_ready), ready_since),
            cond("Ready", b(all_ready), ready_since),
            cond("PodScheduled", "True", start),
        ],
        "containerStatuses": runs.iter().map(|r| r.status(&view.start_time.0.as_second().to_string())).collect::<Vec<_>>(),
    }})
}

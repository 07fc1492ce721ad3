//! One supervisor per feature: start when enabled (after its dependencies are ready), restart
//! with backoff when it fails, stop and clean up when disabled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use knet_core::{Feature, FeatureContext, FeatureId, FeatureState, FeatureStatus, StatusReporter};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a feature gets to stop before the supervisor stops waiting for it.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff bounds between restarts of a failing feature.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Every feature's status row, shared by supervisors and the local API.
#[derive(Clone)]
pub struct StatusBoard {
    rows: Arc<BTreeMap<FeatureId, Arc<Mutex<FeatureStatus>>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

// === impl StatusBoard ===

impl StatusBoard {
    /// A board with a row per feature, all disabled.
    pub fn new() -> StatusBoard {
        let rows = FeatureId::ALL
            .into_iter()
            .map(|id| (id, Arc::new(Mutex::new(FeatureStatus::new(id, false)))))
            .collect();
        let (tx, _) = watch::channel(0);
        StatusBoard {
            rows: Arc::new(rows),
            changed: Arc::new(tx),
        }
    }

    /// The reporter that writes `id`'s row.
    pub fn reporter(&self, id: FeatureId) -> StatusReporter {
        let row = self
            .rows
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Arc::new(Mutex::new(FeatureStatus::new(id, false))));
        StatusReporter::new(row, self.changed.clone())
    }

    /// All rows in [`FeatureId::ALL`] order.
    pub fn snapshot(&self) -> Vec<FeatureStatus> {
        let mut rows: Vec<FeatureStatus> = self
            .rows
            .values()
            .map(|r| r.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect();
        rows.sort_by_key(|r| FeatureId::ALL.iter().position(|f| *f == r.name));
        rows
    }

    /// Whether `id` is ready.
    pub fn is_ready(&self, id: FeatureId) -> bool {
        self.rows.get(&id).is_some_and(|r| {
            r.lock().unwrap_or_else(PoisonError::into_inner).state == FeatureState::Ready
        })
    }

    /// A receiver that wakes on any row change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new()
    }
}

/// Supervises one feature until `shutdown`. `module` is `None` when this build has no module
/// for the feature: then an enabled feature is reported unavailable.
pub async fn supervise(
    id: FeatureId,
    module: Option<Arc<dyn Feature>>,
    ctx: FeatureContext,
    board: StatusBoard,
    shutdown: CancellationToken,
) {
    let reporter = board.reporter(id);
    let mut config = ctx.config.clone();
    let mut running: Option<(CancellationToken, JoinHandle<()>)> = None;

    // Leftovers of a crash while disabling: clean up a feature that starts out disabled.
    if let Some(m) = &module
        && !ctx.current_config().enabled(id)
        && let Err(error) = m.cleanup(ctx.clone()).await
    {
        tracing::warn!(feature = %id, %error, "cleanup of a disabled feature at start failed");
    }

    loop {
        let want = config.borrow_and_update().enabled(id);
        reporter.set_enabled(want);
        match (&module, want, running.is_some()) {
            (Some(m), true, false) => {
                let token = shutdown.child_token();
                let task = tokio::spawn(run_with_backoff(
                    id,
                    m.clone(),
                    ctx.clone(),
                    reporter.clone(),
                    board.clone(),
                    token.clone(),
                ));
                running = Some((token, task));
            }
            (Some(m), false, true) => {
                if let Some((token, task)) = running.take() {
                    reporter.stopping();
                    stop(id, token, task).await;
                }
                match m.cleanup(ctx.clone()).await {
                    Ok(()) => reporter.disabled(),
                    Err(error) => {
                        tracing::error!(feature = %id, %error, "cleanup failed");
                        reporter.failed(format!("disabled, but cleanup failed: {error}"));
                    }
                }
            }
            (None, true, _) => reporter.unavailable(format!(
                "this knet build has no {id} module yet; `knet disable {id}` to silence this"
            )),
            (_, false, false) => {
                if reporter.snapshot().state != FeatureState::Failed {
                    reporter.disabled();
                }
            }
            (Some(_), true, true) | (None, false, true) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = config.changed() => if changed.is_err() { break },
        }
    }
    // Daemon stopping: stop the feature but leave its dataplane in place.
    if let Some((token, task)) = running.take() {
        stop(id, token, task).await;
    }
}

async fn stop(id: FeatureId, token: CancellationToken, task: JoinHandle<()>) {
    token.cancel();
    if tokio::time::timeout(STOP_TIMEOUT, task).await.is_err() {
        tracing::error!(feature = %id, "feature did not stop within {STOP_TIMEOUT:?}");
    }
}

async fn run_with_backoff(
    id: FeatureId,
    module: Arc<dyn Feature>,
    ctx: FeatureContext,
    reporter: StatusReporter,
    board: StatusBoard,
    token: CancellationToken,
) {
    // Dependencies first.
    let mut changes = board.subscribe();
    loop {
        let waiting: Vec<String> = id
            .depends_on()
            .iter()
            .filter(|d| !board.is_ready(**d))
            .map(ToString::to_string)
            .collect();
        if waiting.is_empty() {
            break;
        }
        reporter.starting(format!("waiting for {}", waiting.join(", ")));
        tokio::select! {
            () = token.cancelled() => return,
            _ = changes.changed() => {}
        }
    }
    let mut delay = BACKOFF_MIN;
    loop {
        reporter.starting("");
        knet_core::metrics::inc("knet_feature_starts_total", &[("feature", id.as_str())]);
        let started = Instant::now();
        let task = tokio::spawn({
            let (module, ctx, reporter, token) =
                (module.clone(), ctx.clone(), reporter.clone(), token.clone());
            async move { module.run(ctx, reporter, token).await }
                .instrument(tracing::info_span!("feature", id = %id))
        });
        let outcome = task.await;
        if token.is_cancelled() {
            if let Ok(Err(error)) = outcome {
                tracing::warn!(feature = %id, %error, "feature failed while stopping");
            }
            return;
        }
        let message = match outcome {
            Ok(Ok(())) => "stopped unexpectedly; restarting".to_owned(),
            Ok(Err(error)) => error.to_string(),
            Err(join) => format!("crashed: {join}"),
        };
        tracing::error!(feature = %id, error = %message, retry_in = ?delay, "feature failed");
        knet_core::metrics::inc("knet_feature_errors_total", &[("feature", id.as_str())]);
        reporter.failed(message);
        if started.elapsed() > BACKOFF_MAX {
            delay = BACKOFF_MIN;
        }
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

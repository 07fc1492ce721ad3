//! Waiting until every enabled feature is ready, by polling the daemon's `GET /v1/status`.

use std::path::Path;
use std::time::{Duration, Instant};

use knet_api::Client;
use knet_core::{FeatureState, NodeStatus};

use crate::{BootstrapError, Step};

/// How often the daemon is asked.
const POLL: Duration = Duration::from_millis(500);
/// How long one status call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls the daemon on `socket` until all enabled features are ready or `timeout` passes.
/// Reports [`Step::Waiting`] whenever the set of pending features changes. `alive` is asked
/// between polls; returning `Some(reason)` (the daemon died) ends the wait at once. `hint`
/// says where the daemon's log is.
pub async fn wait_ready(
    socket: &Path,
    timeout: Duration,
    hint: &str,
    alive: &mut dyn FnMut() -> Option<String>,
    progress: &mut dyn FnMut(Step),
) -> Result<NodeStatus, BootstrapError> {
    let client = Client::new(socket).with_timeout(CALL_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let mut last_pending: Option<Vec<(String, String)>> = None;
    loop {
        match client.get::<NodeStatus>("/v1/status").await {
            Ok(status) if status.all_ready() => {
                progress(Step::Ready);
                return Ok(status);
            }
            Ok(status) => {
                let now = pending(&status);
                if last_pending.as_ref() != Some(&now) {
                    progress(Step::Waiting {
                        pending: now.clone(),
                    });
                }
                last_pending = Some(now);
            }
            Err(e) => tracing::debug!(error = %e, "daemon not answering yet"),
        }
        if let Some(reason) = alive() {
            return Err(BootstrapError::DaemonStart {
                reason: format!("{reason}; {hint}"),
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(match last_pending {
                Some(pending) => BootstrapError::NotReady { timeout, pending },
                None => BootstrapError::DaemonNotAnswering {
                    socket: socket.display().to_string(),
                    timeout,
                    hint: hint.to_owned(),
                },
            });
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// Enabled features that are not ready, with what `knet status` says about them.
pub(crate) fn pending(status: &NodeStatus) -> Vec<(String, String)> {
    status
        .features
        .iter()
        .filter(|f| f.enabled && f.state != FeatureState::Ready)
        .map(|f| (f.name.to_string(), f.summary()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use knet_core::{FeatureId, FeatureStatus};

    #[test]
    fn pending_lists_enabled_unready_features_with_their_message() {
        let mut net = FeatureStatus::new(FeatureId::Network, true);
        net.state = FeatureState::Ready;
        let mut dns = FeatureStatus::new(FeatureId::Dns, true);
        dns.state = FeatureState::Failed;
        dns.message = "cannot bind 10.152.183.10:53".into();
        let lb = FeatureStatus::new(FeatureId::LoadBalancer, false);
        let status = NodeStatus {
            node: "n1".into(),
            version: "0.1.0".into(),
            overall: "not ready".into(),
            api_server: "connected".into(),
            features: vec![net, dns, lb],
        };
        assert_eq!(
            pending(&status),
            vec![(
                "dns".to_owned(),
                "enabled, failing: cannot bind 10.152.183.10:53".to_owned()
            )]
        );
    }
}

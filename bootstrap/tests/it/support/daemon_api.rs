//! A fake node daemon answering `GET /v1/status` on the node's socket.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use knet_api::Router;
use knet_core::{FeatureId, FeatureState, FeatureStatus, NodeStatus};
use tokio_util::sync::CancellationToken;

/// Answers with `not_ready_polls` not-ready statuses (dns starting), then ready ones; with
/// `None`, dns fails forever.
pub struct FakeDaemon {
    remaining: Mutex<Option<usize>>,
    pub polls: Mutex<usize>,
}

impl Router for FakeDaemon {
    fn route(
        &self,
        method: String,
        path: String,
        _body: Vec<u8>,
    ) -> BoxFuture<'_, (u16, &'static str, Vec<u8>)> {
        Box::pin(async move {
            if method != "GET" || path != "/v1/status" {
                return (
                    404,
                    "application/json",
                    br#"{"error":"no such route"}"#.to_vec(),
                );
            }
            *self.polls.lock().expect("lock") += 1;
            let ready = {
                let mut r = self.remaining.lock().expect("lock");
                match r.as_mut() {
                    Some(0) => true,
                    Some(n) => {
                        *n -= 1;
                        false
                    }
                    None => false,
                }
            };
            let body = serde_json::to_vec(&status(ready)).expect("encode");
            (200, "application/json", body)
        })
    }
}

fn status(ready: bool) -> NodeStatus {
    let features = FeatureId::ALL
        .into_iter()
        .map(|id| {
            let enabled = matches!(
                id,
                FeatureId::Network | FeatureId::NetworkPolicy | FeatureId::Dns
            );
            let mut f = FeatureStatus::new(id, enabled);
            if enabled && (ready || id != FeatureId::Dns) {
                f.state = FeatureState::Ready;
            } else if enabled {
                f.state = FeatureState::Failed;
                f.message = "cannot bind 10.152.183.10:53: address in use".into();
            }
            f
        })
        .collect();
    NodeStatus {
        node: "n1".into(),
        version: "test".into(),
        overall: if ready { "ready" } else { "not ready" }.into(),
        api_server: "connected".into(),
        features,
    }
}

/// Serves the fake on `socket` until the token is cancelled.
pub fn serve(
    socket: &Path,
    not_ready_polls: Option<usize>,
) -> (Arc<FakeDaemon>, CancellationToken) {
    let daemon = Arc::new(FakeDaemon {
        remaining: Mutex::new(not_ready_polls),
        polls: Mutex::new(0),
    });
    let token = CancellationToken::new();
    let (d, t, s) = (daemon.clone(), token.clone(), socket.to_path_buf());
    tokio::spawn(async move {
        let _ = knet_api::serve(&s, d, t).await;
    });
    (daemon, token)
}

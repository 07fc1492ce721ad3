//! The local API's routes: status, config, enable/disable/set, per-feature calls, health.

use std::sync::Arc;

use futures::future::BoxFuture;
use knet_api::{ConfigAnswer, ErrorBody, FeaturesRequest, SetRequest};
use knet_core::config::set_key;
use knet_core::{ApiRegistry, ApiRequest, FeatureId, FeatureState, NodeStatus};

use crate::RuntimeError;
use crate::config_source::ConfigSource;
use crate::supervisor::StatusBoard;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; version=0.0.4";

/// Routes local API calls to the config source, the status board and feature handlers.
#[derive(Debug, Clone)]
pub struct DaemonRouter {
    /// This node.
    pub node: String,
    /// knet's version.
    pub version: String,
    /// The config.
    pub source: ConfigSource,
    /// Feature status rows.
    pub board: StatusBoard,
    /// Feature API handlers.
    pub api: ApiRegistry,
    /// The shared watches (for API health).
    pub watches: knet_core::watch::Watches,
}

type Answer = (u16, &'static str, Vec<u8>);

// === impl DaemonRouter ===

impl DaemonRouter {
    /// The `knet status` answer.
    pub fn status(&self) -> NodeStatus {
        let features = self.board.snapshot();
        let error = self
            .source
            .last_error()
            .or_else(|| self.watches.health().last_error);
        let api_server = match error {
            None => "reachable".to_owned(),
            Some(e) => format!("unreachable ({e}); keeping the dataplane as it is and retrying"),
        };
        let mut status = NodeStatus {
            node: self.node.clone(),
            version: self.version.clone(),
            overall: String::new(),
            api_server,
            features,
        };
        status.overall = if status.all_ready() {
            "ready"
        } else {
            "not ready"
        }
        .to_owned();
        status
    }

    async fn dispatch(&self, method: &str, path: &str, body: Vec<u8>) -> Answer {
        let path_only = path.split('?').next().unwrap_or(path);
        match (method, path_only) {
            ("GET", "/v1/status") => json(200, &self.status()),
            ("GET", "/v1/config") => json(
                200,
                &ConfigAnswer {
                    config: (*self.source.current()).clone(),
                },
            ),
            ("POST", "/v1/config/set") => match serde_json::from_slice::<SetRequest>(&body) {
                Ok(req) => self.set(req).await,
                Err(e) => error(400, format!("malformed set request: {e}")),
            },
            ("POST", "/v1/features/enable") => self.toggle(body, true).await,
            ("POST", "/v1/features/disable") => self.toggle(body, false).await,
            ("GET", "/healthz") => (200, TEXT, b"ok\n".to_vec()),
            ("GET", "/readyz") => {
                let s = self.status();
                if s.all_ready() {
                    (200, TEXT, b"ok\n".to_vec())
                } else {
                    let waiting: Vec<String> = s
                        .features
                        .iter()
                        .filter(|f| f.enabled && f.state != FeatureState::Ready)
                        .map(|f| format!("{}: {}", f.name, f.summary()))
                        .collect();
                    (503, TEXT, format!("{}\n", waiting.join("\n")).into_bytes())
                }
            }
            ("GET", "/metrics") => (200, TEXT, knet_core::metrics::render().into_bytes()),
            (_, p) if p.starts_with("/v1/feature/") => self.feature_call(method, p, body).await,
            _ => error(
                404,
                format!("no such local API route: {method} {path_only}"),
            ),
        }
    }

    async fn set(&self, req: SetRequest) -> Answer {
        if req.assignments.is_empty() {
            return error(
                400,
                "nothing to set: give <feature>.<key>=<value> arguments".into(),
            );
        }
        let result = self
            .source
            .update(|cfg| {
                req.assignments
                    .iter()
                    .try_fold(cfg.clone(), |c, a| set_key(&c, a))
            })
            .await;
        config_answer(result)
    }

    async fn toggle(&self, body: Vec<u8>, on: bool) -> Answer {
        let req = match serde_json::from_slice::<FeaturesRequest>(&body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("malformed request: {e}")),
        };
        if req.features.is_empty() {
            return error(
                400,
                format!(
                    "name at least one feature: {}",
                    FeatureId::names().join(", ")
                ),
            );
        }
        let mut ids = Vec::new();
        for name in &req.features {
            match name.parse::<FeatureId>() {
                Ok(id) => ids.push(id),
                Err(e) => return error(400, e.to_string()),
            }
        }
        let result = self
            .source
            .update(|cfg| {
                let mut new = cfg.clone();
                for id in &ids {
                    new.set_enabled(*id, on);
                }
                // check_update (in update) validates, naming dependants first on a disable.
                Ok(new)
            })
            .await;
        config_answer(result)
    }

    async fn feature_call(&self, method: &str, path: &str, body: Vec<u8>) -> Answer {
        let rest = path.trim_start_matches("/v1/feature/");
        let (name, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let id = match name.parse::<FeatureId>() {
            Ok(id) => id,
            Err(e) => return error(404, e.to_string()),
        };
        let Some(handler) = self.api.get(id) else {
            let enabled = self.source.current().enabled(id);
            let msg = if enabled {
                format!(
                    "{id} is enabled but not serving yet on this node; try again shortly (see `knet status`)"
                )
            } else {
                format!("{id} is disabled: run `knet enable {id}`")
            };
            return error(503, msg);
        };
        let resp = handler
            .handle(ApiRequest {
                method: method.to_owned(),
                path: sub.to_owned(),
                body,
            })
            .await;
        (resp.status, JSON, resp.body)
    }
}

impl knet_api::Router for DaemonRouter {
    fn route(&self, method: String, path: String, body: Vec<u8>) -> BoxFuture<'_, Answer> {
        Box::pin(async move { self.dispatch(&method, &path, body).await })
    }
}

fn config_answer(result: Result<Arc<knet_core::config::ClusterConfig>, RuntimeError>) -> Answer {
    match result {
        Ok(cfg) => json(
            200,
            &ConfigAnswer {
                config: (*cfg).clone(),
            },
        ),
        Err(e @ (RuntimeError::Config(_) | RuntimeError::NotBootstrapped)) => {
            error(400, e.to_string())
        }
        Err(e @ RuntimeError::Conflict) => error(409, e.to_string()),
        Err(e) => error(503, e.to_string()),
    }
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> Answer {
    match serde_json::to_vec(v) {
        Ok(b) => (status, JSON, b),
        Err(e) => error(500, format!("cannot encode answer: {e}")),
    }
}

fn error(status: u16, message: String) -> Answer {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    (status, JSON, body)
}

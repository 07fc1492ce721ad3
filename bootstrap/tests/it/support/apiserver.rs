//! A fake Kubernetes API server holding ConfigMaps in kube-system: just enough of the API for
//! `kube::Api<ConfigMap>` get/create/delete over plain HTTP.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const PREFIX: &str = "/api/v1/namespaces/kube-system/configmaps";

/// A running fake; it stops with the runtime that started it.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    pub addr: SocketAddr,
    pub objects: Arc<Mutex<BTreeMap<String, Value>>>,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApiServer {
    /// Binds 127.0.0.1:0 (in the calling thread's network namespace) and serves.
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = FakeApiServer {
            addr: listener.local_addr().expect("addr"),
            objects: Arc::default(),
            requests: Arc::default(),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, std::convert::Infallible>(s.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stored `config.yaml` of knet-config, if any.
    pub fn config_yaml(&self) -> Option<String> {
        let objects = self.objects.lock().expect("lock");
        objects
            .get("knet-config")?
            .pointer("/data/config.yaml")?
            .as_str()
            .map(str::to_owned)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        self.requests
            .lock()
            .expect("lock")
            .push(format!("{method} {path}"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let name = path
            .strip_prefix(PREFIX)
            .map(|rest| rest.trim_start_matches('/').to_owned());
        let mut objects = self.objects.lock().expect("lock");
        match (method.as_str(), name) {
            ("GET", Some(name)) if !name.is_empty() => match objects.get(&name) {
                Some(obj) => reply(200, obj.clone()),
                None => status(404, "NotFound", &format!("configmaps \"{name}\" not found")),
            },
            ("POST", Some(name)) if name.is_empty() => {
                let mut obj: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let Some(name) = obj.pointer("/metadata/name").and_then(Value::as_str) else {
                    return status(422, "Invalid", "metadata.name is required");
                };
                let name = name.to_owned();
                if objects.contains_key(&name) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("configmaps \"{name}\" already exists"),
                    );
                }
                obj["metadata"]["resourceVersion"] = json!("1");
                obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                objects.insert(name, obj.clone());
                reply(201, obj)
            }
            ("DELETE", Some(name)) if !name.is_empty() => match objects.remove(&name) {
                Some(_) => reply(
                    200,
                    json!({"kind":"Status","apiVersion":"v1","status":"Success"}),
                ),
                None => status(404, "NotFound", &format!("configmaps \"{name}\" not found")),
            },
            _ => status(
                404,
                "NotFound",
                &format!("fake apiserver has no {method} {path}"),
            ),
        }
    }
}

fn reply(code: u16, v: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        code,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":message,"reason":reason,"code":code}),
    )
}

/// Writes a kubeconfig for `server` into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
users:
- name: fake
  user:
    token: not-a-secret
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

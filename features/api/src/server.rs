//! The server side: accept on the unix socket and hand each request to a [`Router`].

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

/// Answers local API requests. Implemented by the daemon.
pub trait Router: Send + Sync + 'static {
    /// method, path (with query), body → status, content type, body.
    fn route(
        &self,
        method: String,
        path: String,
        body: Vec<u8>,
    ) -> BoxFuture<'_, (u16, &'static str, Vec<u8>)>;
}

/// Binds `socket` (replacing a stale one), restricts it to root (0600) and serves until
/// `shutdown` is cancelled.
pub async fn serve(
    socket: &Path,
    router: Arc<dyn Router>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "local API listening");
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "local API accept failed");
                    continue;
                }
            },
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(router, req).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "local API connection ended with an error");
            }
        });
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

async fn handle(router: Arc<dyn Router>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            return response(
                400,
                "application/json",
                format!("{{\"error\":\"cannot read request body: {e}\"}}").into_bytes(),
            );
        }
    };
    let (status, content_type, body) = router.route(method, path, body).await;
    response(status, content_type, body)
}

fn response(status: u16, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, ClientError, ErrorBody};

    struct Echo;

    impl Router for Echo {
        fn route(
            &self,
            method: String,
            path: String,
            body: Vec<u8>,
        ) -> BoxFuture<'_, (u16, &'static str, Vec<u8>)> {
            Box::pin(async move {
                if path == "/fail" {
                    let e = serde_json::to_vec(&ErrorBody {
                        error: "nope: do x".into(),
                    })
                    .expect("json");
                    return (409, "application/json", e);
                }
                let v = serde_json::json!({"method": method, "path": path, "len": body.len()});
                (
                    200,
                    "application/json",
                    serde_json::to_vec(&v).expect("json"),
                )
            })
        }
    }

    #[tokio::test]
    async fn client_and_server_round_trip_over_a_private_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("knet.sock");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let sock = sock.clone();
            let shutdown = shutdown.clone();
            async move { serve(&sock, Arc::new(Echo), shutdown).await }
        });
        let client = Client::new(&sock);
        let mut answer = None;
        for _ in 0..100 {
            match client
                .post::<_, serde_json::Value>("/x", &serde_json::json!({"a": 1}))
                .await
            {
                Ok(v) => {
                    answer = Some(v);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
        let answer = answer.expect("server answered");
        assert_eq!(answer["method"], "POST");
        assert_eq!(answer["len"], 7);
        let mode = std::fs::metadata(&sock)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "socket must be root-only");
        let err = client
            .get::<serde_json::Value>("/fail")
            .await
            .expect_err("409");
        assert_eq!(err.to_string(), "nope: do x");
        shutdown.cancel();
        server.await.expect("join").expect("serve");
        assert!(!sock.exists(), "socket removed on shutdown");
    }

    #[tokio::test]
    async fn a_missing_daemon_is_reported_in_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Client::new(dir.path().join("knet.sock"))
            .get::<serde_json::Value>("/v1/status")
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, ClientError::NotRunning { .. }));
        assert!(
            err.to_string()
                .starts_with("the knet daemon is not running on this node")
        );
    }
}

//! The client side: the CLI and the CNI plugin talk to the daemon through this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::wire::ErrorBody;

/// A connection factory for one daemon's socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

/// Why a call to the daemon failed. Every message is one line that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error(
        "the knet daemon is not running on this node (no answer on {socket}): start it with `knet bootstrap` (first time) or `systemctl start knet`"
    )]
    NotRunning {
        /// The socket path.
        socket: String,
    },
    /// The socket exists but we may not use it.
    #[error("permission denied on {socket}: run knet as root (sudo knet ...)")]
    PermissionDenied {
        /// The socket path.
        socket: String,
    },
    /// The daemon did not answer in time.
    #[error(
        "the knet daemon did not answer within {0:?}; check `journalctl -u knet` or its log file"
    )]
    Timeout(Duration),
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon {
        /// The HTTP status.
        status: u16,
        /// The daemon's one-line message.
        message: String,
    },
    /// The connection broke or the answer was malformed.
    #[error("talking to the knet daemon on {socket} failed: {reason}")]
    Protocol {
        /// The socket path.
        socket: String,
        /// What went wrong.
        reason: String,
    },
}

// === impl Client ===

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Overrides the per-call timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// GET a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.call("GET", path, Vec::new()).await?;
        self.decode(status, &body)
    }

    /// POST a JSON body, decode a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| self.protocol(e.to_string()))?;
        let (status, body) = self.call("POST", path, bytes).await?;
        self.decode(status, &body)
    }

    fn decode<T: DeserializeOwned>(&self, status: u16, body: &[u8]) -> Result<T, ClientError> {
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<ErrorBody>(body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned());
            return Err(ClientError::Daemon { status, message });
        }
        serde_json::from_slice(body).map_err(|e| self.protocol(format!("bad answer: {e}")))
    }

    /// One raw call: method, path, body → status, body. Non-2xx statuses are returned, not
    /// turned into errors, so callers (the CNI plugin) can map them themselves.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        tokio::time::timeout(self.timeout, self.call_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn call_inner(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let socket = self.socket.display().to_string();
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    socket: socket.clone(),
                },
                _ => ClientError::NotRunning {
                    socket: socket.clone(),
                },
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.protocol(e.to_string()))?;
        let conn_task = tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "knet")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.protocol(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.protocol(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(e.to_string()))?
            .to_bytes();
        conn_task.abort();
        Ok((status, bytes.to_vec()))
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            socket: self.socket.display().to_string(),
            reason,
        }
    }
}

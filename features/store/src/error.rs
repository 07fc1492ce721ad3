//! Errors of the store.

use std::path::PathBuf;

/// Something went wrong reading or writing the node-local store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened (missing permissions, corruption, held by another process).
    #[error("cannot open the knet store at {path}: {source}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("knet store {op} failed on {tree}/{key}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The tree.
        tree: String,
        /// The key.
        key: String,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// A stored value could not be (de)serialised.
    #[error("knet store value {tree}/{key} is not valid JSON for its type: {source}")]
    Codec {
        /// The tree.
        tree: String,
        /// The key.
        key: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// Moving a broken database aside failed.
    #[error("cannot move the broken knet store {path} aside: {source}")]
    Quarantine {
        /// The database directory.
        path: PathBuf,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
}

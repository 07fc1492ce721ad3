//! Opening the database, and recovering when it cannot be opened.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{StoreError, Tree};

/// The node-local database. Cheap to clone; all clones share one open database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
}

/// What [`Store::open_or_recover`] had to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// The database opened normally.
    Clean,
    /// The database could not be opened; it was moved to `moved_to` and a fresh one was created.
    /// Callers must rebuild node state from the kernel and the API server.
    Rebuilt {
        /// Where the broken database now lives (kept for post-mortem, never read again).
        moved_to: PathBuf,
        /// Why it could not be opened.
        reason: String,
    },
}

// === impl Store ===

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Store {
            db,
            path: dir.to_path_buf(),
        })
    }

    /// Opens the database; if that fails, moves the broken one aside and starts a fresh one rather
    /// than refusing to start. The caller learns what happened from the returned [`Recovery`].
    pub fn open_or_recover(dir: &Path) -> Result<(Store, Recovery), StoreError> {
        match Store::open(dir) {
            Ok(store) => Ok((store, Recovery::Clean)),
            Err(err) => {
                let stamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let mut moved_to = dir.as_os_str().to_owned();
                moved_to.push(format!(".broken-{stamp}"));
                let moved_to = PathBuf::from(moved_to);
                std::fs::rename(dir, &moved_to).map_err(|source| StoreError::Quarantine {
                    path: dir.to_path_buf(),
                    source,
                })?;
                tracing::warn!(error = %err, moved_to = %moved_to.display(), "store could not be opened; starting a fresh one");
                let store = Store::open(dir)?;
                Ok((
                    store,
                    Recovery::Rebuilt {
                        moved_to,
                        reason: err.to_string(),
                    },
                ))
            }
        }
    }

    /// Opens a named tree (a keyspace), creating it if needed.
    pub fn tree(&self, name: &str) -> Result<Tree, StoreError> {
        let inner = self.db.open_tree(name).map_err(|source| StoreError::Io {
            op: "open tree",
            tree: name.to_owned(),
            key: String::new(),
            source,
        })?;
        Ok(Tree::new(name.to_owned(), inner))
    }

    /// Removes a whole tree and everything in it.
    pub fn drop_tree(&self, name: &str) -> Result<(), StoreError> {
        self.db.drop_tree(name).map_err(|source| StoreError::Io {
            op: "drop tree",
            tree: name.to_owned(),
            key: String::new(),
            source,
        })?;
        self.db.flush().map_err(|source| StoreError::Io {
            op: "flush",
            tree: name.to_owned(),
            key: String::new(),
            source,
        })?;
        Ok(())
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_database_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("mkdir");
        // A "conf" file with garbage makes sled refuse to open the directory.
        std::fs::write(
            db.join("conf"),
            b"\x00\x01garbage that is not a sled config",
        )
        .expect("write");
        std::fs::write(db.join("db"), b"not a sled file").expect("write");
        assert!(
            Store::open(&db).is_err(),
            "precondition: garbage must not open"
        );
        let (store, recovery) = Store::open_or_recover(&db).expect("recover");
        match recovery {
            Recovery::Rebuilt { moved_to, .. } => assert!(moved_to.exists()),
            Recovery::Clean => panic!("expected a rebuild"),
        }
        let t = store.tree("x").expect("tree");
        t.put("k", b"v").expect("put");
        assert_eq!(t.get("k").expect("get").as_deref(), Some(&b"v"[..]));
    }
}

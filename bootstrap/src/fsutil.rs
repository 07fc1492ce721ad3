//! Atomic file replacement: write a temp file beside the target, fsync, rename, fsync the dir.
//! A reader (a container runtime loading the conflist, a runtime exec'ing the plugin) sees the
//! old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::BootstrapError;

/// Replaces `path` with `bytes`, mode `mode`. The temp file's name starts with a dot and ends in
/// `.tmp`, so CNI runtimes (which load `*.conf`, `*.conflist`, `*.json`) never pick it up.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BootstrapError> {
    let dir = parent(path)?;
    fs::create_dir_all(dir).map_err(|e| BootstrapError::io("create directory", dir, e))?;
    let tmp = temp_path(path);
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have narrowed the mode given to open().
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        Ok(())
    })();
    finish(result, &tmp, path, dir)
}

/// Copies `src` over `dest` atomically with mode `mode`.
pub(crate) fn copy_atomic(src: &Path, dest: &Path, mode: u32) -> Result<(), BootstrapError> {
    let dir = parent(dest)?;
    fs::create_dir_all(dir).map_err(|e| BootstrapError::io("create directory", dir, e))?;
    let tmp = temp_path(dest);
    let mut input = File::open(src).map_err(|e| BootstrapError::io("read", src, e))?;
    let result = (|| -> io::Result<()> {
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        io::copy(&mut input, &mut out)?;
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        out.sync_all()?;
        Ok(())
    })();
    finish(result, &tmp, dest, dir)
}

/// Whether `path` holds exactly `bytes`.
pub(crate) fn same_content(path: &Path, bytes: &[u8]) -> bool {
    fs::read(path).is_ok_and(|existing| existing == bytes)
}

/// Whether two files have identical contents (compared in chunks, sizes first).
pub(crate) fn same_file_content(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    if ma.len() != mb.len() {
        return false;
    }
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Removes a file; a missing file is fine. Returns whether something was removed.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, BootstrapError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BootstrapError::io("remove", path, e)),
    }
}

fn finish(
    result: io::Result<()>,
    tmp: &Path,
    dest: &Path,
    dir: &Path,
) -> Result<(), BootstrapError> {
    if let Err(e) = result {
        let _ = fs::remove_file(tmp);
        return Err(BootstrapError::io("write", tmp, e));
    }
    if let Err(e) = fs::rename(tmp, dest) {
        let _ = fs::remove_file(tmp);
        return Err(BootstrapError::io("replace", dest, e));
    }
    // Make the rename itself durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BootstrapError::io("sync directory", dir, e))
}

fn parent(path: &Path) -> Result<&Path, BootstrapError> {
    path.parent().ok_or_else(|| {
        BootstrapError::io(
            "write",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path has no parent directory"),
        )
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_hidden_and_not_cni_configs() {
        let t = temp_path(Path::new("/etc/cni/net.d/05-knet.conflist"));
        let name = t.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with('.'));
        assert!(name.ends_with(".tmp"));
        assert_eq!(t.parent(), Some(Path::new("/etc/cni/net.d")));
    }

    #[test]
    fn write_then_compare() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/x.conflist");
        write_atomic(&p, b"hello", 0o644).expect("write");
        assert!(same_content(&p, b"hello"));
        assert!(!same_content(&p, b"hello!"));
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(remove_if_exists(&p).expect("remove"));
        assert!(!remove_if_exists(&p).expect("remove again"));
    }
}

//! Installing knet as the node's CNI: the conflist in the CNI conf dir and the plugin (the knet
//! binary itself) in the CNI bin dir. Both are replaced atomically and left alone when already
//! current.

use std::fmt;
use std::path::Path;

use knet_core::cni_conf;
use knet_core::paths::Paths;

use crate::BootstrapError;
use crate::fsutil;

/// Mode of the conflist.
const CONFLIST_MODE: u32 = 0o644;
/// Mode of the plugin binary.
const PLUGIN_MODE: u32 = 0o755;

/// Whether an install step changed the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// The file was written.
    Written,
    /// The file already had this content.
    Unchanged,
}

impl fmt::Display for Changed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Changed::Written => "installed",
            Changed::Unchanged => "already installed",
        })
    }
}

/// Writes knet's conflist (pretty JSON) into the CNI conf dir, atomically.
pub fn write_conflist(paths: &Paths) -> Result<Changed, BootstrapError> {
    let path = paths.cni_conflist();
    let mut text = serde_json::to_string_pretty(&cni_conf::conflist(paths)).map_err(|e| {
        BootstrapError::io(
            "encode",
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    text.push('\n');
    if fsutil::same_content(&path, text.as_bytes()) {
        return Ok(Changed::Unchanged);
    }
    fsutil::write_atomic(&path, text.as_bytes(), CONFLIST_MODE)?;
    tracing::info!(path = %path.display(), "wrote CNI conflist");
    Ok(Changed::Written)
}

/// Copies the knet binary to `<cni-bin-dir>/knet` (temp file + rename, mode 0755).
pub fn install_plugin(knet_binary: &Path, paths: &Paths) -> Result<Changed, BootstrapError> {
    let dest = paths.cni_plugin();
    if fsutil::same_file_content(knet_binary, &dest) {
        ensure_mode(&dest)?;
        return Ok(Changed::Unchanged);
    }
    fsutil::copy_atomic(knet_binary, &dest, PLUGIN_MODE)?;
    tracing::info!(from = %knet_binary.display(), to = %dest.display(), "installed CNI plugin");
    Ok(Changed::Written)
}

/// An identical plugin with a wrong mode is still fixed.
fn ensure_mode(dest: &Path) -> Result<(), BootstrapError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(dest).map_err(|e| BootstrapError::io("stat", dest, e))?;
    if meta.permissions().mode() & 0o7777 != PLUGIN_MODE {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(PLUGIN_MODE))
            .map_err(|e| BootstrapError::io("chmod", dest, e))?;
    }
    Ok(())
}

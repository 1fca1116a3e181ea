//! Atomic file replacement: write a temporary file in the same directory, sync, rename over.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents` so readers see the old or the new file, never a mix. The file
/// gets `mode`; a missing parent directory is created with mode 0700.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".glrunner-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The umask may have narrowed the mode; set it exactly.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the directory entry is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether files can be created in `dir` (which must exist): creates and removes a probe file, the
/// only test that sees read-only mounts, ACLs and root alike.
pub(crate) fn dir_is_writable(dir: &Path) -> io::Result<()> {
    let probe = tempfile::Builder::new()
        .prefix(".glrunner-probe-")
        .tempfile_in(dir)?;
    probe.close()
}

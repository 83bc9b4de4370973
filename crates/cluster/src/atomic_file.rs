//! Whole-file writes that a crash or a concurrent reader never sees half done.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::PkiError;

/// Mode for private keys and kubeconfigs (which embed a key).
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode for certificates, which are public.
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `dir` (and missing parents) readable only by its owner, since it will hold keys.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io_error(dir, "create directory", source))
}

/// Replaces `path` with `contents` and `mode`: temp file in the same directory, fsync, rename,
/// fsync of the directory so the rename itself survives power loss.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io_error(
            path,
            "write",
            io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    // Unique per process and call, so concurrent writers of one path never share a temp file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_then_rename(&tmp, path, contents, mode);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, "fsync directory", source))
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    // A leftover from a crashed run with the same pid would make create_new fail.
    match fs::remove_file(tmp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(tmp, "remove stale temp file", err));
        }
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|source| io_error(tmp, "create", source))?;
    // The umask may have narrowed the mode given to open; certificates must stay world-readable.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|source| io_error(tmp, "chmod", source))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(tmp, "write", source))?;
    fs::rename(tmp, path).map_err(|source| io_error(path, "rename temp file onto", source))
}

/// Reads a file that may legitimately be absent (first start): `Ok(None)` then.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            io_error(
                path,
                "read",
                io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"),
            )
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, "read", source)),
    }
}

/// Narrows an existing key file to owner-only if someone loosened it; contents stay untouched.
pub(crate) fn restrict_to_owner(path: &Path) -> Result<(), PkiError> {
    let mode = fs::metadata(path)
        .map_err(|source| io_error(path, "stat", source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, Permissions::from_mode(PRIVATE))
            .map_err(|source| io_error(path, "chmod", source))?;
    }
    Ok(())
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

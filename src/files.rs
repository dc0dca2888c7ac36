//! Writing files so that nobody ever finds a partial one: every file the program writes (PNG, SVG,
//! .npy, the remembered state) is written under a temporary name in the same folder
//! (`.NAME.XXXXXX.tmp`), flushed to disk, and renamed to its final name only when complete. A crash,
//! a full disk or a signal leaves the old file (or none), never a truncated one. A temporary file
//! whose writing failed is removed.
//!
//! [`write_all_or_none`] does the same for a group of files (a result and its auxiliary outputs):
//! all are written before any is renamed, so either every one appears or none does.
//!
//! Every error names the path and the OS's cause.

use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;
use thiserror::Error;

/// A file could not be written.
#[derive(Debug, Error)]
#[error("{}: cannot write: {cause}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    /// The OS's words for it, e.g. "Permission denied (os error 13)".
    pub cause: String,
}

impl WriteError {
    fn new(path: &Path, cause: impl ToString) -> Self {
        WriteError {
            path: path.to_path_buf(),
            cause: cause.to_string(),
        }
    }
}

/// A file written completely under a temporary name next to `path`, not yet renamed.
pub struct Staged {
    temp: NamedTempFile,
    path: PathBuf,
}

impl Staged {
    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rename the temporary file to its final name (replacing any file there).
    pub fn commit(self) -> Result<PathBuf, WriteError> {
        let Staged { temp, path } = self;
        temp.persist(&path)
            .map_err(|e| WriteError::new(&path, e.error))?;
        Ok(path)
    }
}

/// The folder a file goes in ("." for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write a file under a temporary name next to `path` with `write`, flushed and synced; the
/// temporary file is removed if anything fails.
pub fn stage_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Staged, WriteError> {
    if path.is_dir() {
        return Err(WriteError::new(path, "a folder has this name"));
    }
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::new(path, "not a file name"))?;
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As `File::create` would: read/write for everyone the umask lets through (tempfile's own
        // default is owner-only, which would make every export private).
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder
        .tempfile_in(folder_of(path))
        .map_err(|e| WriteError::new(path, e))?;
    {
        let mut w = std::io::BufWriter::new(temp.as_file_mut());
        write(&mut w).map_err(|e| WriteError::new(path, e))?;
        w.flush().map_err(|e| WriteError::new(path, e))?;
    }
    temp.as_file()
        .sync_all()
        .map_err(|e| WriteError::new(path, e))?;
    Ok(Staged {
        temp,
        path: path.to_path_buf(),
    })
}

/// Write `bytes` under a temporary name next to `path` (see [`stage_with`]).
pub fn stage(path: &Path, bytes: &[u8]) -> Result<Staged, WriteError> {
    stage_with(path, |w| w.write_all(bytes))
}

/// Write `path` atomically: complete, or not at all (an existing file is left as it was).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    stage(path, bytes)?.commit().map(|_| ())
}

/// Write every file or none: all are written under temporary names first, then renamed. If a
/// rename still fails, the files already renamed are removed again.
pub fn write_all_or_none(files: &[(PathBuf, Vec<u8>)]) -> Result<(), WriteError> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        staged.push(stage(path, bytes)?);
    }
    let mut committed: Vec<PathBuf> = Vec::with_capacity(staged.len());
    for s in staged {
        match s.commit() {
            Ok(path) => committed.push(path),
            Err(e) => {
                for path in &committed {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_complete_file_or_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomically(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        // A writer that fails half-way leaves the old file and no temporary file.
        let e = stage_with(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk on fire"))
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("a.bin") && e.to_string().contains("disk on fire"));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(names(dir.path()), vec!["a.bin"]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_readable_as_file_create_makes_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.png");
        write_atomically(&path, b"x").unwrap();
        let reference = dir.path().join("c.png");
        std::fs::write(&reference, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&reference));
    }

    #[test]
    fn a_group_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("out.npy");
        let b = dir.path().join("out.soft.npy");
        // A folder where the second file should go: nothing is written, the error names it.
        std::fs::create_dir(&b).unwrap();
        let e = write_all_or_none(&[(a.clone(), b"a".to_vec()), (b.clone(), b"b".to_vec())])
            .unwrap_err();
        assert!(e.to_string().contains("out.soft.npy"), "{e}");
        assert!(!a.exists());
        assert_eq!(names(dir.path()), vec!["out.soft.npy"]);
        std::fs::remove_dir(&b).unwrap();
        write_all_or_none(&[(a.clone(), b"a".to_vec()), (b.clone(), b"b".to_vec())]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"a");
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
    }

    #[test]
    fn errors_name_the_path_and_the_cause() {
        let e = write_atomically(Path::new("/nonexistent-folder/x.npy"), b"x").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("/nonexistent-folder/x.npy: cannot write: "),
            "{s}"
        );
        assert!(s.contains("No such file or directory"), "{s}");
    }
}

//! Safe extraction of zip archives (artifacts of dependencies, cache archives) into a directory.
//!
//! Every entry lands inside the target directory or nowhere: names that are absolute or contain a
//! `..` segment are refused, parent directories are resolved following existing symlinks but never
//! outside the target, and a symlink entry whose target would lead outside it is refused (checked
//! when it is created and again once all entries are out, since later entries can change what a
//! link resolves to). Existing files are replaced, modes (permission bits) and modification times
//! are restored, and owners too when running as root, like gitlab-runner's extractor. Refused
//! entries are reported and skipped; damaged archives and I/O failures are errors.

use crate::confinement::{Resolved, resolve};
use crate::message::{Message, git_directory_warning, is_git_path};
use crate::timestamp::{dos_to_unix, from_unix_seconds};
use crate::zip_writer::{UID_GID_FIELD, parse_uid_gid};
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use zip::ExtraField;
use zip::read::ZipFile;
use zip::result::ZipError;

/// Longest symlink target accepted (Linux's `PATH_MAX`).
const MAX_LINK_TARGET: u64 = 4096;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// Why an entry was not extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name starts with `/`, `\` or a drive letter.
    AbsolutePath,
    /// The name has a `..` segment.
    ParentTraversal,
    /// The name or link target is empty, too long or contains NUL.
    InvalidName,
    /// A symlink entry points outside the target directory.
    SymlinkOutside,
    /// A parent of the entry resolves, through symlinks, outside the target directory.
    ThroughSymlinkOutside,
    /// A parent of the entry exists and is not a directory.
    NotADirectory,
    /// A non-empty directory exists where a file or symlink goes.
    DirectoryInTheWay,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AbsolutePath => "absolute paths are not extracted",
            Self::ParentTraversal => "paths with \"..\" are not extracted",
            Self::InvalidName => "the name or link target is empty, too long or contains NUL",
            Self::SymlinkOutside => "the symbolic link points outside the extraction directory",
            Self::ThroughSymlinkOutside => {
                "the path leads through a symbolic link to outside the extraction directory"
            }
            Self::NotADirectory => "a parent path exists and is not a directory",
            Self::DirectoryInTheWay => "a non-empty directory is in the way",
        })
    }
}

/// One refused entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEntry {
    pub name: String,
    pub reason: Refusal,
}

/// What [`extract_zip`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub refused: Vec<RefusedEntry>,
    /// Warnings for the job log: refused entries, ignored special files, the `.git` warning.
    pub messages: Vec<Message>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(
        "cannot open the archive {path}: {source}. Likely cause: the cache or artifacts download \
         did not leave a file there. Fix: check the download step's output above; a missing cache \
         is created again by the next job that saves it"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a readable zip archive: {source}. Likely cause: an interrupted download or a \
         file that is not a zip archive. Fix: delete {path} (for a cache: clear the runner caches in \
         the pipeline page) and run the job again"
    )]
    Format {
        path: PathBuf,
        #[source]
        source: ZipError,
    },
    #[error(
        "cannot read the entry {name:?} of {path}: {source}. Likely cause: the archive is damaged. \
         Fix: delete {path} (for a cache: clear the runner caches in the pipeline page) and run the \
         job again"
    )]
    Entry {
        path: PathBuf,
        name: String,
        #[source]
        source: ZipError,
    },
    #[error(
        "cannot write {path} while extracting: {source}. Likely cause: the disk is full or the \
         directory belongs to another user. Fix: free space or fix the ownership of the directory \
         (the helper must be able to write it)"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Extracts the zip archive at `archive` into `dest` (created if missing).
pub fn extract_zip(archive: &Path, dest: &Path) -> Result<ExtractReport, ExtractError> {
    let file = File::open(archive).map_err(|source| ExtractError::Open {
        path: archive.to_owned(),
        source,
    })?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|source| ExtractError::Format {
            path: archive.to_owned(),
            source,
        })?;
    let write_err = |source| ExtractError::Write {
        path: dest.to_owned(),
        source,
    };
    fs::create_dir_all(dest).map_err(write_err)?;
    let root = fs::canonicalize(dest).map_err(write_err)?;
    let mut x = Extractor {
        archive: archive.to_owned(),
        root,
        restore_owner: nix::unistd::geteuid().is_root(),
        report: ExtractReport::default(),
        dirs: Vec::new(),
        links: Vec::new(),
        git_warned: false,
        owner_warned: false,
    };
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|source| ExtractError::Entry {
            path: archive.to_owned(),
            name: format!("#{i}"),
            source,
        })?;
        x.extract(&mut entry)?;
    }
    x.finish()
}

/// Metadata applied once every entry is out (a directory's mtime changes as entries land in it).
struct DirMeta {
    rel: PathBuf,
    perm: u32,
    mtime: Option<SystemTime>,
    owner: Option<(u32, u32)>,
}

struct Extractor {
    archive: PathBuf,
    root: PathBuf,
    restore_owner: bool,
    report: ExtractReport,
    dirs: Vec<DirMeta>,
    /// Created symlinks (relative path, entry name), checked again at the end.
    links: Vec<(PathBuf, String)>,
    git_warned: bool,
    owner_warned: bool,
}

enum Kind {
    Directory,
    File,
    Symlink,
    Special,
}

impl Extractor {
    fn refuse(&mut self, name: &str, reason: Refusal) {
        self.report
            .messages
            .push(Message::warning(format!("{name}: {reason}; entry skipped")));
        self.report.refused.push(RefusedEntry {
            name: name.to_owned(),
            reason,
        });
    }

    fn write_err(&self, rel: &Path) -> impl FnOnce(io::Error) -> ExtractError + use<> {
        let path = self.root.join(rel);
        move |source| ExtractError::Write { path, source }
    }

    fn extract<R: Read + io::Seek>(
        &mut self,
        entry: &mut ZipFile<'_, R>,
    ) -> Result<(), ExtractError> {
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(_) => {
                let shown = String::from_utf8_lossy(entry.name_raw()).into_owned();
                self.refuse(&shown, Refusal::InvalidName);
                return Ok(());
            }
        };
        if !self.git_warned && is_git_path(&name) {
            self.git_warned = true;
            self.report
                .messages
                .extend(git_directory_warning("extract"));
        }
        let parts = match entry_parts(&name) {
            Ok(p) => p,
            Err(reason) => {
                self.refuse(&name, reason);
                return Ok(());
            }
        };
        let Some((last, parents)) = parts.split_last() else {
            return Ok(()); // `./`: the target directory itself
        };
        let kind = kind_of(entry);
        let parent = match self.ensure_dir(parents)? {
            Ok(p) => p,
            Err(reason) => {
                self.refuse(&name, reason);
                return Ok(());
            }
        };
        let rel = parent.join(last);
        let perm = entry.unix_mode().map(|m| m & 0o777);
        let mtime = modified(entry);
        let owner = self.owner(entry);
        match kind {
            Kind::Directory => self.make_dir(rel, &parent, perm, mtime, owner),
            Kind::File => self.write_file(entry, &name, &rel, perm, mtime, owner),
            Kind::Symlink => self.make_symlink(entry, &name, &parent, rel),
            Kind::Special => {
                self.report
                    .messages
                    .push(Message::warning(format!("File ignored: {name:?}")));
                Ok(())
            }
        }
    }

    fn owner<R: Read>(&self, entry: &ZipFile<'_, R>) -> Option<(u32, u32)> {
        if !self.restore_owner {
            return None;
        }
        entry.extra_data_fields().find_map(|f| match f {
            ExtraField::Custom(c) if c.header_id == UID_GID_FIELD => parse_uid_gid(&c.data),
            _ => None,
        })
    }

    /// Makes sure the parent directories exist, resolving symlinks inside the root. Returns the
    /// real relative path of the deepest one.
    fn ensure_dir(&mut self, parts: &[&str]) -> Result<Result<PathBuf, Refusal>, ExtractError> {
        let mut cur = PathBuf::new();
        for part in parts {
            let Resolved::Inside(rel) = resolve(&self.root, &cur, Path::new(part)) else {
                return Ok(Err(Refusal::ThroughSymlinkOutside));
            };
            let abs = self.root.join(&rel);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Err(Refusal::NotADirectory)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&abs).map_err(self.write_err(&rel))?;
                }
                Err(e) => return Err(self.write_err(&rel)(e)),
            }
            cur = rel;
        }
        Ok(Ok(cur))
    }

    /// Removes what is at `rel` so a file or symlink can take its place; an empty directory goes,
    /// a non-empty one stays and the entry is refused.
    fn clear(&mut self, rel: &Path) -> Result<Result<(), Refusal>, ExtractError> {
        let abs = self.root.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => match fs::remove_dir(&abs) {
                Ok(()) => Ok(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
                    Ok(Err(Refusal::DirectoryInTheWay))
                }
                Err(e) => Err(self.write_err(rel)(e)),
            },
            Ok(_) => fs::remove_file(&abs).map(Ok).map_err(self.write_err(rel)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(())),
            Err(e) => Err(self.write_err(rel)(e)),
        }
    }

    fn make_dir(
        &mut self,
        rel: PathBuf,
        parent: &Path,
        perm: Option<u32>,
        mtime: Option<SystemTime>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ExtractError> {
        let abs = self.root.join(&rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                let leaf = rel.file_name().map(Path::new).unwrap_or(Path::new(""));
                let inside_dir = match resolve(&self.root, parent, leaf) {
                    Resolved::Inside(r) => self.root.join(r).is_dir(),
                    Resolved::Outside => false,
                };
                if inside_dir {
                    // An existing link to a directory inside the target stands for the directory.
                    self.report.directories += 1;
                    return Ok(());
                }
                fs::remove_file(&abs).map_err(self.write_err(&rel))?;
                fs::create_dir(&abs).map_err(self.write_err(&rel))?;
            }
            Ok(_) => {
                fs::remove_file(&abs).map_err(self.write_err(&rel))?;
                fs::create_dir(&abs).map_err(self.write_err(&rel))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&abs).map_err(self.write_err(&rel))?;
            }
            Err(e) => return Err(self.write_err(&rel)(e)),
        }
        self.dirs.push(DirMeta {
            rel,
            perm: perm.unwrap_or(0o755),
            mtime,
            owner,
        });
        self.report.directories += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_file<R: Read + io::Seek>(
        &mut self,
        entry: &mut ZipFile<'_, R>,
        name: &str,
        rel: &Path,
        perm: Option<u32>,
        mtime: Option<SystemTime>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ExtractError> {
        if let Err(reason) = self.clear(rel)? {
            self.refuse(name, reason);
            return Ok(());
        }
        let abs = self.root.join(rel);
        // create_new: never follows a symlink that appeared in the meantime.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&abs)
            .map_err(self.write_err(rel))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ExtractError::Entry {
                        path: self.archive.clone(),
                        name: name.to_owned(),
                        source: ZipError::Io(e),
                    });
                }
            };
            file.write_all(&buf[..n]).map_err(self.write_err(rel))?;
        }
        file.set_permissions(Permissions::from_mode(perm.unwrap_or(0o644)))
            .map_err(self.write_err(rel))?;
        if let Some(t) = mtime {
            file.set_times(FileTimes::new().set_modified(t))
                .map_err(self.write_err(rel))?;
        }
        if let Some((uid, gid)) = owner
            && let Err(e) = std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
        {
            self.owner_warning(name, &e);
        }
        self.report.files += 1;
        Ok(())
    }

    fn make_symlink<R: Read>(
        &mut self,
        entry: &mut ZipFile<'_, R>,
        name: &str,
        parent: &Path,
        rel: PathBuf,
    ) -> Result<(), ExtractError> {
        if entry.size() > MAX_LINK_TARGET {
            self.refuse(name, Refusal::InvalidName);
            return Ok(());
        }
        let mut target = Vec::new();
        entry
            .by_ref()
            .take(MAX_LINK_TARGET + 1)
            .read_to_end(&mut target)
            .map_err(|e| ExtractError::Entry {
                path: self.archive.clone(),
                name: name.to_owned(),
                source: ZipError::Io(e),
            })?;
        if target.is_empty() || target.len() as u64 > MAX_LINK_TARGET || target.contains(&0) {
            self.refuse(name, Refusal::InvalidName);
            return Ok(());
        }
        let target = Path::new(OsStr::from_bytes(&target));
        if resolve(&self.root, parent, target) == Resolved::Outside {
            self.refuse(name, Refusal::SymlinkOutside);
            return Ok(());
        }
        if let Err(reason) = self.clear(&rel)? {
            self.refuse(name, reason);
            return Ok(());
        }
        std::os::unix::fs::symlink(target, self.root.join(&rel)).map_err(self.write_err(&rel))?;
        self.links.push((rel, name.to_owned()));
        self.report.symlinks += 1;
        Ok(())
    }

    fn owner_warning(&mut self, name: &str, e: &io::Error) {
        if !self.owner_warned {
            self.owner_warned = true;
            self.report.messages.push(Message::warning(format!(
                "{name}: cannot restore the owner: {e} (suppressing repeats)"
            )));
        }
    }

    fn finish(mut self) -> Result<ExtractReport, ExtractError> {
        // Links first: a link that now leads outside is removed before anything else uses it.
        for (rel, name) in std::mem::take(&mut self.links) {
            let abs = self.root.join(&rel);
            let Ok(target) = fs::read_link(&abs) else {
                continue; // replaced by a later entry
            };
            let parent = rel.parent().unwrap_or(Path::new(""));
            if resolve(&self.root, parent, &target) == Resolved::Outside {
                fs::remove_file(&abs).map_err(self.write_err(&rel))?;
                self.report.symlinks -= 1;
                self.refuse(&name, Refusal::SymlinkOutside);
            }
        }
        for dir in std::mem::take(&mut self.dirs).into_iter().rev() {
            // O_NOFOLLOW: if a later entry replaced the directory by a link, leave the link alone.
            let Ok(file) = OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
                .open(self.root.join(&dir.rel))
            else {
                continue;
            };
            file.set_permissions(Permissions::from_mode(dir.perm))
                .map_err(self.write_err(&dir.rel))?;
            if let Some(t) = dir.mtime {
                file.set_times(FileTimes::new().set_modified(t))
                    .map_err(self.write_err(&dir.rel))?;
            }
            if let Some((uid, gid)) = dir.owner
                && let Err(e) = std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            {
                let shown = dir.rel.display().to_string();
                self.owner_warning(&shown, &e);
            }
        }
        Ok(self.report)
    }
}

/// The segments of an entry name, or why it is refused.
fn entry_parts(name: &str) -> Result<Vec<&str>, Refusal> {
    let b = name.as_bytes();
    if name.is_empty() || name.contains('\0') {
        return Err(Refusal::InvalidName);
    }
    if name.starts_with(['/', '\\']) || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic())
    {
        return Err(Refusal::AbsolutePath);
    }
    let mut parts = Vec::new();
    for seg in name.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(Refusal::ParentTraversal),
            // Archives made on Windows may use `\`; `..\x` must not count as a plain name.
            s if s.split('\\').any(|p| p == "..") => return Err(Refusal::ParentTraversal),
            s => parts.push(s),
        }
    }
    Ok(parts)
}

fn kind_of<R: Read>(entry: &ZipFile<'_, R>) -> Kind {
    if entry.is_symlink() {
        return Kind::Symlink;
    }
    if entry.is_dir() {
        return Kind::Directory;
    }
    match entry.unix_mode().map(|m| m & S_IFMT) {
        None | Some(0) | Some(S_IFREG) => Kind::File,
        Some(_) => Kind::Special,
    }
}

/// The entry's modification time: the extended timestamp when present, else the DOS fields.
fn modified<R: Read>(entry: &ZipFile<'_, R>) -> Option<SystemTime> {
    let extended = entry.extra_data_fields().find_map(|f| match f {
        ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        _ => None,
    });
    match extended {
        Some(secs) => Some(from_unix_seconds(i64::from(secs))),
        None => entry
            .last_modified()
            .map(|t| from_unix_seconds(dos_to_unix(&t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_checked() {
        assert_eq!(entry_parts("a/b/c.txt"), Ok(vec!["a", "b", "c.txt"]));
        assert_eq!(entry_parts("./a//b/"), Ok(vec!["a", "b"]));
        assert_eq!(entry_parts("./"), Ok(vec![]));
        assert_eq!(entry_parts("../x"), Err(Refusal::ParentTraversal));
        assert_eq!(entry_parts("a/../../x"), Err(Refusal::ParentTraversal));
        assert_eq!(entry_parts("a\\..\\x"), Err(Refusal::ParentTraversal));
        assert_eq!(entry_parts("/etc/passwd"), Err(Refusal::AbsolutePath));
        assert_eq!(entry_parts("\\x"), Err(Refusal::AbsolutePath));
        assert_eq!(entry_parts("C:/x"), Err(Refusal::AbsolutePath));
        assert_eq!(entry_parts(""), Err(Refusal::InvalidName));
        assert_eq!(entry_parts("a..b/..c"), Ok(vec!["a..b", "..c"]));
    }
}

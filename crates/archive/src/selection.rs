//! Which files an artifacts or cache entry covers, chosen exactly like gitlab-runner's
//! `fileArchiver`: each path is a glob relative to the project directory; every match is walked
//! without following symlinks, so a directory brings everything below it and a symlink is kept as a
//! symlink; `exclude` globs drop single entries; `untracked` adds what git reports as untracked.
//! Paths outside the project and paths that match nothing are warnings, never errors, and the
//! warnings and counts are worded as gitlab-runner prints them.
//!
//! One deliberate difference: a path whose literal directory part leads through a symlink to
//! outside the project (`link/**` with `link -> /etc`) is refused, because following it would
//! upload files from outside the project.

use crate::lexical_path::{clean, escapes, join, relative};
use crate::message::Message;
use crate::pattern::{
    BadPattern, Pattern, has_meta, has_unescaped_meta, split_pattern, unescape_meta,
};
use crate::spec::Spec;
use crate::untracked_files;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use walkdir::WalkDir;

/// What a selected entry is, from `lstat` (symlinks are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    /// A FIFO, socket or device: selected like gitlab-runner does, skipped with a warning when
    /// written.
    Other,
}

/// One selected path as it was when it was selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// `st_mode`, file type bits included.
    pub mode: u32,
    pub size: u64,
    pub modified: SystemTime,
}

impl Entry {
    pub(crate) fn from_metadata(m: &Metadata) -> Self {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Directory
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        Self {
            kind,
            mode: m.mode(),
            size: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// The result of [`select`]: the entries, by `/`-separated path relative to the project directory
/// and in the byte order archives use, and the log lines gitlab-runner would print.
#[derive(Debug, Clone)]
pub struct Selection {
    root: PathBuf,
    entries: BTreeMap<String, Entry>,
    messages: Vec<Message>,
}

impl Selection {
    /// The project directory the entries are relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Selected paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing selected: gitlab-runner then says `No files to upload` / `No files to cache.`.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every line in the order gitlab-runner prints it (warnings and `found N` counts).
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| m.is_warning())
    }

    /// Whether any selected entry is newer than `archive` (or `archive` does not exist): a cache
    /// archive is only rebuilt then, otherwise gitlab-runner says `Archive is up to date!`.
    pub fn changed_since(&self, archive: &Path) -> bool {
        match fs::metadata(archive).and_then(|m| m.modified()) {
            Ok(archived) => self.entries.values().any(|e| e.modified > archived),
            Err(_) => true,
        }
    }
}

/// The project directory cannot be used at all; everything else is a warning in the selection.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "cannot select artifact or cache files: the project directory {dir} is not usable ({source}). \
         Likely cause: the sources were not checked out (GIT_STRATEGY: none on an empty directory) or \
         the helper runs with another working directory. Fix: run the helper in CI_PROJECT_DIR"
    )]
    ProjectDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot select artifact or cache files: the project directory {dir:?} is not valid UTF-8. \
         Fix: use a builds_dir whose path is UTF-8"
    )]
    ProjectDirName { dir: PathBuf },
}

/// Selects the files `spec` covers inside `project_dir`.
pub fn select(project_dir: &Path, spec: &Spec) -> Result<Selection, SelectError> {
    let root = std::path::absolute(project_dir).map_err(|source| SelectError::ProjectDir {
        dir: project_dir.to_owned(),
        source,
    })?;
    let meta = fs::metadata(&root).map_err(|source| SelectError::ProjectDir {
        dir: root.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SelectError::ProjectDir {
            dir: root,
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let wd = root
        .to_str()
        .map(clean)
        .ok_or_else(|| SelectError::ProjectDirName { dir: root.clone() })?;
    let real_root = fs::canonicalize(&root).map_err(|source| SelectError::ProjectDir {
        dir: root.clone(),
        source,
    })?;

    let mut s = Selector {
        root,
        real_root,
        wd,
        excludes: Vec::new(),
        entries: BTreeMap::new(),
        messages: Vec::new(),
    };
    s.compile_excludes(&spec.exclude);
    for path in &spec.paths {
        s.process_path(path);
    }
    if spec.untracked {
        s.process_untracked();
    }
    for Exclude { rule, count, .. } in &s.excludes {
        if *count > 0 {
            s.messages
                .push(Message::info(format!("{rule}: excluded {count} files")));
        }
    }
    Ok(Selection {
        root: s.root,
        entries: s.entries,
        messages: s.messages,
    })
}

struct Selector {
    root: PathBuf,
    real_root: PathBuf,
    /// The project directory as a cleaned string, for gitlab-runner's lexical checks.
    wd: String,
    excludes: Vec<Exclude>,
    entries: BTreeMap<String, Entry>,
    messages: Vec<Message>,
}

/// An `exclude` rule, its pattern relative to the project, and how many entries it left out.
struct Exclude {
    rule: String,
    pattern: Pattern,
    count: u64,
}

/// What happened to one walked path.
enum Outcome {
    Added,
    /// The project directory itself: counted like gitlab-runner, but never an archive entry.
    Root,
    Excluded(usize),
    Ignored,
}

/// Result of globbing one path.
enum Globbed {
    Matches(Vec<String>),
    Bad(BadPattern),
    /// The literal directory part resolves through a symlink to this place outside the project.
    OutsideThroughSymlink(PathBuf),
}

impl Selector {
    fn warn(&mut self, text: String) {
        self.messages.push(Message::warning(text));
    }

    fn abs(&self, rel: &str) -> PathBuf {
        if rel == "." {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// gitlab-runner's `findRelativePathInProject`: the pattern relative to the project directory,
    /// or `None` when its literal part is outside it.
    fn relative_in_project(&self, path: &str) -> Option<String> {
        if clean(path) == self.wd {
            return Some(".".to_owned());
        }
        let (base, pattern) = if has_meta(path) {
            split_pattern(path)
        } else {
            (path.to_owned(), String::new())
        };
        let abs = if base.starts_with('/') {
            clean(&base)
        } else {
            join(&self.wd, &base)
        };
        let rel = relative(&self.wd, &abs);
        if escapes(&rel) {
            return None;
        }
        Some(join(&rel, &pattern))
    }

    fn compile_excludes(&mut self, rules: &[String]) {
        for rule in rules {
            let Some(rel) = self.relative_in_project(rule) else {
                // gitlab-runner stops checking the remaining rules here; they are kept instead.
                self.warn(format!(
                    "isExcluded: artifact path is not a subpath of project directory: {rule}"
                ));
                continue;
            };
            match Pattern::new(&rel) {
                Ok(p) => {
                    self.excludes.push(Exclude {
                        rule: rule.clone(),
                        pattern: p,
                        count: 0,
                    });
                }
                Err(BadPattern(detail)) => {
                    self.warn(format!("{rule}: syntax error in pattern ({detail})"));
                }
            }
        }
    }

    fn excluded_by(&self, rel: &str) -> Option<usize> {
        self.excludes.iter().position(|e| e.pattern.matches(rel))
    }

    fn process_path(&mut self, path: &str) {
        if path.is_empty() {
            self.warn("No matching files. Path is empty.".to_owned());
            return;
        }
        let Some(rel) = self.relative_in_project(path) else {
            self.warn(format!(
                "processPath: artifact path is not a subpath of project directory: {path}"
            ));
            return;
        };
        let matches = match self.glob(&rel) {
            Globbed::Matches(m) => m,
            Globbed::Bad(BadPattern(detail)) => {
                self.warn(format!("{path}: syntax error in pattern ({detail})"));
                return;
            }
            Globbed::OutsideThroughSymlink(target) => {
                self.warn(format!(
                    "processPath: artifact path is not a subpath of project directory: {path} \
                     (it leads through a symbolic link to {})",
                    target.display()
                ));
                return;
            }
        };
        let found = self.walk_matches(&matches);
        if found == 0 {
            self.warn(format!(
                "{path}: no matching files. Ensure that the artifact path is relative to the working directory ({})",
                self.wd
            ));
        } else {
            self.messages.push(Message::info(format!(
                "{path}: found {found} matching artifact files and directories"
            )));
        }
    }

    /// doublestar's `FilepathGlob` with `WithNoFollow`: literal leading directories are followed,
    /// symlinks met while matching are not descended into.
    fn glob(&mut self, pattern: &str) -> Globbed {
        let pattern = clean(pattern);
        let (base, rest) = split_pattern(&pattern);
        if matches!(rest.as_str(), "" | "." | "..") {
            let p = unescape_meta(&pattern);
            let found = fs::symlink_metadata(self.abs(&p)).is_ok();
            return Globbed::Matches(if found { vec![p] } else { Vec::new() });
        }
        let base_abs = self.abs(&base);
        if let Ok(real) = fs::canonicalize(&base_abs)
            && !real.starts_with(&self.real_root)
        {
            return Globbed::OutsideThroughSymlink(real);
        }
        if !has_unescaped_meta(&rest) {
            // A literal name must exist (following symlinks, like `fs.Stat`).
            let p = join(&base, &unescape_meta(&rest));
            let found = fs::metadata(self.abs(&p)).is_ok();
            return Globbed::Matches(if found { vec![p] } else { Vec::new() });
        }
        let pat = match Pattern::new(&rest) {
            Ok(p) => p,
            Err(e) => return Globbed::Bad(e),
        };
        if !fs::metadata(&base_abs).is_ok_and(|m| m.is_dir()) {
            return Globbed::Matches(Vec::new());
        }
        let mut out = Vec::new();
        if pat.matches_base() {
            out.push(base.clone());
        }
        let mut walker = WalkDir::new(&base_abs)
            .follow_links(false)
            .follow_root_links(true)
            .min_depth(1)
            .sort_by_file_name();
        if let Some(depth) = pat.max_depth() {
            walker = walker.max_depth(depth);
        }
        for entry in walker.into_iter().filter_map(Result::ok) {
            let Ok(rel) = entry.path().strip_prefix(&base_abs) else {
                continue;
            };
            let Some(rel) = rel.to_str() else {
                let shown = entry.path().display().to_string();
                self.warn(format!(
                    "File ignored: {shown}: the name is not valid UTF-8"
                ));
                continue;
            };
            if pat.matches_entry(rel, entry.file_type().is_dir()) {
                out.push(join(&base, rel));
            }
        }
        out.sort();
        out.dedup();
        Globbed::Matches(out)
    }

    /// Walks every match like gitlab-runner's `filepath.Walk` per match and returns its count of
    /// processed paths. Overlapping matches (`**` matches a directory and its children) are walked
    /// once; each path counts once per match it lies under, which is the number gitlab-runner prints.
    fn walk_matches(&mut self, matches: &[String]) -> u64 {
        let matched: HashSet<&str> = matches.iter().map(String::as_str).collect();
        let mut visited: HashSet<String> = HashSet::new();
        let mut found = 0;
        for m in matches {
            if visited.contains(m) {
                continue;
            }
            let top = self.abs(m);
            let walker = WalkDir::new(&top)
                .follow_links(false)
                .follow_root_links(false)
                .sort_by_file_name();
            let mut under: Vec<u64> = Vec::new();
            for entry in walker.into_iter().filter_map(Result::ok) {
                let p = if entry.depth() == 0 {
                    m.clone()
                } else {
                    let Some(rel) = entry.path().strip_prefix(&top).ok().and_then(Path::to_str)
                    else {
                        let shown = entry.path().display().to_string();
                        self.warn(format!(
                            "File ignored: {shown}: the name is not valid UTF-8"
                        ));
                        continue;
                    };
                    join(m, rel)
                };
                under.truncate(entry.depth());
                let k =
                    under.last().copied().unwrap_or(0) + u64::from(matched.contains(p.as_str()));
                under.push(k);
                match self.process(&p) {
                    Outcome::Added | Outcome::Root => found += k,
                    Outcome::Excluded(i) => self.excludes[i].count += k,
                    Outcome::Ignored => {}
                }
                visited.insert(p);
            }
        }
        found
    }

    /// gitlab-runner's `process`: one path relative to the project directory.
    fn process(&mut self, path: &str) -> Outcome {
        let rel = clean(path);
        if escapes(&rel) || rel.starts_with('/') {
            self.warn(format!("{path}: not supported: outside build directory"));
            return Outcome::Ignored;
        }
        if let Some(i) = self.excluded_by(&rel) {
            return Outcome::Excluded(i);
        }
        match fs::symlink_metadata(self.abs(&rel)) {
            Ok(_) if rel == "." => Outcome::Root,
            Ok(meta) => {
                self.entries.insert(rel, Entry::from_metadata(&meta));
                Outcome::Added
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Ignored,
            Err(e) => {
                self.warn(format!("{path}: {e}"));
                Outcome::Ignored
            }
        }
    }

    fn process_untracked(&mut self) {
        let listed = match untracked_files::list(&self.root) {
            Ok(l) => l,
            Err(e) => {
                self.warn(format!("untracked: {e}"));
                return;
            }
        };
        for name in &listed.unreadable {
            self.warn(format!("File ignored: {name}: the name is not valid UTF-8"));
        }
        let mut found = 0u64;
        for file in &listed.files {
            match self.process(file) {
                Outcome::Added | Outcome::Root => found += 1,
                Outcome::Excluded(i) => self.excludes[i].count += 1,
                Outcome::Ignored => {}
            }
        }
        if found == 0 {
            self.warn("untracked: no files".to_owned());
        } else {
            self.messages
                .push(Message::info(format!("untracked: found {found} files")));
        }
    }
}

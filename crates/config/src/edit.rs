//! Format-preserving edits of config.toml for `register`, `unregister` and `verify --delete` (the only
//! commands that write it): append a `[[runners]]` entry, remove entries, and write the file atomically
//! with mode 0600. Comments, ordering and formatting of everything else are kept byte for byte.

use crate::atomic_file::write_atomic;
use crate::load::config_dir_of;
use crate::runner::RunnerConfig;
use crate::source::{Location, location_in};
use glrunner_protocol::Secret;
use serde::Serialize;
use std::path::{Path, PathBuf};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// What a new config.toml starts with: gitlab-runner's keys with working values (no `check_interval = 0`).
pub const NEW_CONFIG: &str = "\
# glrunner configuration, in gitlab-runner's config.toml format.
concurrent = 1
check_interval = 3
shutdown_timeout = 30
connection_max_age = \"15m0s\"

[session_server]
  session_timeout = 1800
";

/// Editing config.toml failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    #[error("cannot read config file {}: {error}\n  cause: the file exists but cannot be read\n  fix: run as a user that can read and write it, or pass another file with --config", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{at}: TOML syntax error: {message}\n  cause: config.toml is not valid TOML, so it cannot be edited safely\n  fix: correct the text at {at}, then run the command again"
    )]
    Syntax { at: Location, message: String },
    #[error("{}: `runners` is not a list of [[runners]] tables\n  cause: the file defines `runners` in another form\n  fix: write each runner as a [[runners]] table", path.display())]
    RunnersShape { path: PathBuf },
    #[error("cannot encode the new runner entry: {message}")]
    Encode { message: String },
    #[error("cannot write config file {}: {error}\n  cause: {} is not writable by this user (a ConfigMap or other read-only mount?)\n  fix: run as a user that may write there, pass a writable file with --config, or keep config.toml read-only and use `token_file`/the state directory instead of registering into it", path.display(), dir.display())]
    NotWritable {
        path: PathBuf,
        dir: PathBuf,
        error: std::io::Error,
    },
}

/// A runner entry as written in the file (values unexpanded).
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerEntry {
    /// Position among the file's `[[runners]]` (the same index as in a `Config` loaded from it).
    pub index: usize,
    pub name: Option<String>,
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

/// config.toml opened for editing.
#[derive(Clone)]
pub struct ConfigEditor {
    path: PathBuf,
    doc: DocumentMut,
    created: bool,
}

impl ConfigEditor {
    /// Opens config.toml; a missing file starts from [`NEW_CONFIG`] and is created by [`ConfigEditor::save`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EditError> {
        let path = path.as_ref().to_path_buf();
        let (text, created) = match std::fs::read_to_string(&path) {
            Ok(t) => (t, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (NEW_CONFIG.to_owned(), true),
            Err(error) => return Err(EditError::Read { path, error }),
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| EditError::Syntax {
            at: location_in(&path, &text, e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_owned(),
        })?;
        Ok(Self { path, doc, created })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file did not exist when opened.
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// The runner entries in file order.
    pub fn runners(&self) -> Vec<RunnerEntry> {
        let Some(aot) = self.doc.get("runners").and_then(Item::as_array_of_tables) else {
            return Vec::new();
        };
        aot.iter().enumerate().map(|(i, t)| entry(i, t)).collect()
    }

    /// Appends a `[[runners]]` entry written from `runner`, indented like gitlab-runner writes it.
    /// With `token_file` set, `token` (the file's contents after loading) is not written.
    pub fn add_runner(&mut self, runner: &RunnerConfig) -> Result<(), EditError> {
        #[derive(Serialize)]
        struct Wrapper<'a> {
            runners: [&'a RunnerConfig; 1],
        }
        let mut runner = runner.clone();
        if runner.token_file.is_some() {
            runner.token = None;
        }
        let text =
            toml::to_string(&Wrapper { runners: [&runner] }).map_err(|e| EditError::Encode {
                message: e.to_string(),
            })?;
        let mut fresh = text.parse::<DocumentMut>().map_err(|e| EditError::Encode {
            message: e.to_string(),
        })?;
        let mut table = match fresh.remove("runners") {
            Some(Item::ArrayOfTables(mut a)) if !a.is_empty() => a.remove(0),
            _ => {
                return Err(EditError::Encode {
                    message: "the runner did not encode as a table".to_owned(),
                });
            }
        };
        indent(&mut table, 0);
        table.decor_mut().set_prefix("\n");
        let mut next = max_position(self.doc.as_table()).map_or(0, |p| p + 1);
        set_positions(&mut table, &mut next);

        let root = self.doc.as_table_mut();
        match root.get_mut("runners") {
            None => {
                root.insert("runners", Item::ArrayOfTables(ArrayOfTables::new()));
            }
            Some(Item::ArrayOfTables(_)) => {}
            // `runners = []` is an empty list written inline; it becomes the list of tables.
            Some(item) if item.as_array().is_some_and(|a| a.is_empty()) => {
                *item = Item::ArrayOfTables(ArrayOfTables::new());
            }
            Some(_) => {
                return Err(EditError::RunnersShape {
                    path: self.path.clone(),
                });
            }
        }
        if let Some(Item::ArrayOfTables(aot)) = root.get_mut("runners") {
            aot.push(table);
        }
        Ok(())
    }

    /// Removes every entry `select` returns true for; returns the removed entries.
    pub fn remove_runners(
        &mut self,
        mut select: impl FnMut(&RunnerEntry) -> bool,
    ) -> Vec<RunnerEntry> {
        let selected: Vec<RunnerEntry> = self.runners().into_iter().filter(|e| select(e)).collect();
        if let Some(Item::ArrayOfTables(aot)) = self.doc.get_mut("runners") {
            for e in selected.iter().rev() {
                aot.remove(e.index);
            }
            if aot.is_empty() {
                self.doc.remove("runners");
            }
        }
        selected
    }

    /// Removes the entries named `name`.
    pub fn remove_runner_by_name(&mut self, name: &str) -> Vec<RunnerEntry> {
        self.remove_runners(|e| e.name.as_deref() == Some(name))
    }

    /// Removes the entries whose written token is `token` (and whose URL is `url`, when given).
    pub fn remove_runner_by_token(&mut self, token: &str, url: Option<&str>) -> Vec<RunnerEntry> {
        let same_url = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        self.remove_runners(|e| {
            e.token.as_ref().is_some_and(|t| t.expose() == token)
                && url.is_none_or(|u| e.url.as_deref().is_some_and(|eu| same_url(eu, u)))
        })
    }

    /// The file's new text.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the file atomically with mode 0600 (creating its directory with 0700 if needed). A
    /// symlinked config.toml (as in a mounted volume) is replaced at its target.
    pub fn save(&self) -> Result<(), EditError> {
        let target = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
            }
            _ => self.path.clone(),
        };
        write_atomic(&target, self.render().as_bytes(), 0o600).map_err(|error| {
            EditError::NotWritable {
                dir: config_dir_of(&target).to_path_buf(),
                path: target.clone(),
                error,
            }
        })
    }
}

// The document holds tokens, so Debug shows only where the file is and what it lists.
impl std::fmt::Debug for ConfigEditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigEditor")
            .field("path", &self.path)
            .field("created", &self.created)
            .field("runners", &self.runners())
            .finish()
    }
}

fn entry(index: usize, t: &Table) -> RunnerEntry {
    let s = |k: &str| t.get(k).and_then(Item::as_str).map(str::to_owned);
    RunnerEntry {
        index,
        name: s("name"),
        url: s("url"),
        token: s("token").map(Secret::new),
        token_file: s("token_file").map(PathBuf::from),
    }
}

/// gitlab-runner's layout: keys two spaces deeper than their table's header, nested headers indented.
fn indent(table: &mut Table, depth: usize) {
    let pad = "  ".repeat(depth + 1);
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    for k in keys {
        let is_value = table.get(&k).is_some_and(Item::is_value);
        if is_value {
            if let Some(mut key) = table.key_mut(&k) {
                key.leaf_decor_mut().set_prefix(pad.clone());
                key.leaf_decor_mut().set_suffix(" ");
            }
            continue;
        }
        match table.get_mut(&k) {
            Some(Item::Table(sub)) => {
                sub.decor_mut().set_prefix(format!("\n{pad}"));
                indent(sub, depth + 1);
            }
            Some(Item::ArrayOfTables(aot)) => {
                for sub in aot.iter_mut() {
                    sub.decor_mut().set_prefix(format!("\n{pad}"));
                    indent(sub, depth + 1);
                }
            }
            _ => {}
        }
    }
}

fn max_position(table: &Table) -> Option<isize> {
    let mut max = table.position();
    for (_, item) in table.iter() {
        let sub = match item {
            Item::Table(t) => max_position(t),
            Item::ArrayOfTables(a) => a.iter().filter_map(max_position).max(),
            _ => None,
        };
        max = max.max(sub);
    }
    max
}

// Tables print in position order; numbering the new entry's tables after every existing one puts it at
// the end of the file, in its own order.
fn set_positions(table: &mut Table, next: &mut isize) {
    table.set_position(Some(*next));
    *next += 1;
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => set_positions(t, next),
            Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    set_positions(t, next);
                }
            }
            _ => {}
        }
    }
}

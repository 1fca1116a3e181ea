//! Runner state, kept apart from config.toml (design decision 1): the system_id and tokens obtained by
//! registration live in a state directory. Opening state never fails: an unwritable directory is a
//! warning with the fix, and the state is then kept in memory.

mod file;
mod system_id;

pub use file::{RunnerState, STATE_FILE, STATE_VERSION, StateData};
pub use system_id::{
    MACHINE_ID_PATHS, SYSTEM_ID_FILE, generate_system_id, is_valid_system_id, random_system_id,
    read_machine_id, system_id_from_machine_id,
};

use crate::atomic_file::{dir_is_writable, write_atomic};
use crate::load::{Loaded, config_dir_of};
use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use system_id::{StoredId, read_stored_id};

/// Where to look for a state directory, and where machine ids are.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// A directory the user chose: `--state-dir`, `GLRUNNER_STATE_DIR` or the `state_dir` key.
    pub explicit_dir: Option<PathBuf>,
    /// config.toml: its directory is the default state directory, and a `.runner_system_id` there
    /// (left by gitlab-runner) is read even when the directory is read-only.
    pub config_path: Option<PathBuf>,
    /// `$XDG_STATE_HOME` (used only when absolute).
    pub xdg_state_home: Option<PathBuf>,
    /// `$HOME`, for `~/.local/state/glrunner`.
    pub home: Option<PathBuf>,
    /// Files holding the machine id, first non-empty wins; see [`MACHINE_ID_PATHS`].
    pub machine_id_paths: Vec<PathBuf>,
}

impl StateOptions {
    /// Options from this process's environment (`XDG_STATE_HOME`, `HOME`) and the system machine-id files.
    pub fn from_env(config_path: Option<&Path>, explicit_dir: Option<PathBuf>) -> Self {
        Self {
            explicit_dir,
            config_path: config_path.map(Path::to_path_buf),
            xdg_state_home: std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
            home: std::env::var_os("HOME").map(PathBuf::from),
            machine_id_paths: MACHINE_ID_PATHS.iter().map(PathBuf::from).collect(),
        }
    }

    /// Options for a loaded config: `cli_dir` (from `--state-dir` or `GLRUNNER_STATE_DIR`) wins over
    /// the `state_dir` key.
    pub fn for_config(loaded: &Loaded, cli_dir: Option<PathBuf>) -> Self {
        let explicit = cli_dir.or_else(|| loaded.config.state_dir.clone());
        Self::from_env(Some(&loaded.path), explicit)
    }
}

/// Why a directory was chosen for state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateDirSource {
    /// `--state-dir`, `GLRUNNER_STATE_DIR` or `state_dir`.
    Explicit,
    /// The directory holding config.toml.
    ConfigDir,
    /// `$XDG_STATE_HOME/glrunner`.
    XdgStateHome,
    /// `$HOME/.local/state/glrunner`.
    Home,
}

/// Where state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Dir {
        path: PathBuf,
        source: StateDirSource,
    },
    /// Nothing writable was found; state is lost on exit.
    Memory,
}

/// Something about state the user should fix, though glrunner carries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWarning {
    pub message: String,
    pub cause: String,
    pub fix: String,
}

impl fmt::Display for StateWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n  cause: {}\n  fix: {}",
            self.message, self.cause, self.fix
        )
    }
}

/// Saving state failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot write state file {}: {error}\n  cause: the state directory is not writable or the disk is full\n  fix: make {} writable by this user, or mount a writable volume (e.g. an emptyDir) and set state_dir to it", path.display(), dir.display())]
    Write {
        path: PathBuf,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot encode state: {0}")]
    Encode(#[from] serde_json::Error),
}

const MEMORY_FIX: &str = "mount a writable volume, e.g. an emptyDir, and set state_dir = \"/var/lib/glrunner\" in config.toml (or pass --state-dir / GLRUNNER_STATE_DIR)";

/// The runner's persisted state.
#[derive(Debug)]
pub struct State {
    location: StateLocation,
    system_id: String,
    data: StateData,
    warnings: Vec<StateWarning>,
}

impl State {
    /// Finds a state directory, loads (or creates) the system_id and the state file. Never fails;
    /// problems are in [`State::warnings`].
    pub fn open(opts: &StateOptions) -> Self {
        let mut warnings = Vec::new();
        let (location, tried) = resolve_dir(opts, &mut warnings);
        let mut data = match &location {
            StateLocation::Dir { path, .. } => load_data(path, &mut warnings),
            StateLocation::Memory => StateData::default(),
        };
        let system_id = find_or_create_system_id(opts, &location, &data, &mut warnings);
        match &location {
            StateLocation::Dir { path, .. } => {
                persist_system_id(path, &system_id, &mut data, &mut warnings)
            }
            StateLocation::Memory => {
                let consequence = if system_id.starts_with("s_") {
                    "the system_id is derived from the machine id, but tokens obtained by registration are lost on restart"
                } else {
                    "the system_id is random and changes on every restart (GitLab then lists a new runner manager each time), and tokens obtained by registration are lost"
                };
                warnings.push(StateWarning {
                    message: format!("no writable state directory; state (system_id {system_id}) is kept in memory only"),
                    cause: format!("{}; {consequence}", tried.join("; ")),
                    fix: MEMORY_FIX.to_owned(),
                });
            }
        }
        data.system_id = Some(system_id.clone());
        data.version = STATE_VERSION;
        Self {
            location,
            system_id,
            data,
            warnings,
        }
    }

    /// This runner manager's system_id (`s_…` or `r_…`).
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    pub fn location(&self) -> &StateLocation {
        &self.location
    }

    /// The state directory, unless state is in memory.
    pub fn dir(&self) -> Option<&Path> {
        match &self.location {
            StateLocation::Dir { path, .. } => Some(path),
            StateLocation::Memory => None,
        }
    }

    pub fn warnings(&self) -> &[StateWarning] {
        &self.warnings
    }

    pub fn data(&self) -> &StateData {
        &self.data
    }

    /// The registration result stored for the runner with this name and URL.
    pub fn runner(&self, name: &str, url: &str) -> Option<&RunnerState> {
        self.data.runner(name, url)
    }

    /// Stores (or replaces) a runner's registration result; call [`State::save`] to persist it.
    pub fn set_runner(&mut self, entry: RunnerState) {
        self.data.set_runner(entry);
    }

    pub fn remove_runner(&mut self, name: &str, url: &str) -> Option<RunnerState> {
        self.data.remove_runner(name, url)
    }

    /// Writes the state file atomically (mode 0600). In-memory state is not written (the warning
    /// from [`State::open`] already says so).
    pub fn save(&self) -> Result<(), StateError> {
        let StateLocation::Dir { path: dir, .. } = &self.location else {
            return Ok(());
        };
        let path = dir.join(STATE_FILE);
        let json = self.data.to_json()?;
        write_atomic(&path, &json, 0o600).map_err(|error| StateError::Write {
            path,
            dir: dir.clone(),
            error,
        })
    }
}

/// Picks the first usable directory; returns what was tried and why it failed.
fn resolve_dir(
    opts: &StateOptions,
    warnings: &mut Vec<StateWarning>,
) -> (StateLocation, Vec<String>) {
    let config_dir = opts.config_path.as_deref().map(config_dir_of);
    let mut candidates: Vec<(PathBuf, StateDirSource, bool)> = Vec::new();
    if let Some(dir) = &opts.explicit_dir {
        let dir = match (dir.is_relative(), config_dir) {
            (true, Some(base)) => base.join(dir),
            _ => dir.clone(),
        };
        candidates.push((dir, StateDirSource::Explicit, true));
    }
    if let Some(dir) = config_dir {
        // Never create the config directory just for state.
        candidates.push((dir.to_path_buf(), StateDirSource::ConfigDir, false));
    }
    if let Some(x) = opts.xdg_state_home.as_ref().filter(|x| x.is_absolute()) {
        candidates.push((x.join("glrunner"), StateDirSource::XdgStateHome, true));
    }
    if let Some(h) = opts.home.as_ref().filter(|h| !h.as_os_str().is_empty()) {
        candidates.push((h.join(".local/state/glrunner"), StateDirSource::Home, true));
    }

    let mut tried: Vec<String> = Vec::new();
    for (dir, source, create) in candidates {
        match usable_dir(&dir, create) {
            Ok(()) => {
                if !tried.is_empty() {
                    warnings.push(StateWarning {
                        message: format!("keeping state in {}", dir.display()),
                        cause: format!("{} (tried first)", tried.join("; ")),
                        fix: "choose the place explicitly: set state_dir in config.toml (or --state-dir / GLRUNNER_STATE_DIR) to a writable volume, e.g. state_dir = \"/var/lib/glrunner\" on an emptyDir or PVC".to_owned(),
                    });
                }
                return (StateLocation::Dir { path: dir, source }, tried);
            }
            Err(why) => tried.push(format!("{} {why}", dir.display())),
        }
    }
    if tried.is_empty() {
        tried.push(
            "no candidate directory (no config file, state_dir, XDG_STATE_HOME or HOME)".to_owned(),
        );
    }
    (StateLocation::Memory, tried)
}

fn usable_dir(dir: &Path, create: bool) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err("is not a directory".to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err("does not exist".to_owned());
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot be created ({e})"))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err("cannot be created (a parent is a file, not a directory)".to_owned());
        }
        Err(e) => return Err(format!("cannot be inspected ({e})")),
    }
    dir_is_writable(dir).map_err(|e| format!("is not writable ({e})"))
}

fn load_data(dir: &Path, warnings: &mut Vec<StateWarning>) -> StateData {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return StateData::default(),
        Err(e) => {
            warnings.push(StateWarning {
                message: format!(
                    "cannot read the state file {}; starting with empty state",
                    path.display()
                ),
                cause: e.to_string(),
                fix: format!("make {} readable by this user", path.display()),
            });
            return StateData::default();
        }
    };
    match serde_json::from_str(&text) {
        Ok(data) => data,
        Err(e) => {
            // Keep the damaged file for inspection instead of overwriting what it may still hold.
            let aside = dir.join(format!("{STATE_FILE}.corrupt"));
            let moved = std::fs::rename(&path, &aside).is_ok();
            warnings.push(StateWarning {
                message: format!("the state file {} is damaged; starting with empty state", path.display()),
                cause: format!("it is not valid JSON ({e})"),
                fix: if moved {
                    format!("nothing to do unless it held registration tokens: the old file was kept as {}", aside.display())
                } else {
                    format!("delete or repair {}", path.display())
                },
            });
            StateData::default()
        }
    }
}

fn find_or_create_system_id(
    opts: &StateOptions,
    location: &StateLocation,
    data: &StateData,
    warnings: &mut Vec<StateWarning>,
) -> String {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(cfg) = &opts.config_path {
        files.push(config_dir_of(cfg).join(SYSTEM_ID_FILE));
    }
    if let StateLocation::Dir { path, .. } = location {
        let f = path.join(SYSTEM_ID_FILE);
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let mut problems = Vec::new();
    for f in &files {
        match read_stored_id(f) {
            StoredId::Valid(id) => return id,
            StoredId::Missing => {}
            StoredId::Invalid => {
                problems.push(format!("{} does not hold a valid system_id", f.display()))
            }
            StoredId::Unreadable(e) => {
                problems.push(format!("{} cannot be read ({e})", f.display()))
            }
        }
    }
    if let Some(id) = data
        .system_id
        .as_deref()
        .filter(|id| is_valid_system_id(id))
    {
        return id.to_owned();
    }
    let id = generate_system_id(&opts.machine_id_paths);
    if !problems.is_empty() {
        warnings.push(StateWarning {
            message: format!("generated a new system_id {id}"),
            cause: problems.join("; "),
            fix: "nothing, unless GitLab should keep seeing the old runner manager: then write its system_id (`s_` or `r_` and 12 letters or digits) into that file".to_owned(),
        });
    }
    id
}

fn persist_system_id(dir: &Path, id: &str, data: &mut StateData, warnings: &mut Vec<StateWarning>) {
    let id_file = dir.join(SYSTEM_ID_FILE);
    if !matches!(read_stored_id(&id_file), StoredId::Valid(ref stored) if stored == id)
        && let Err(e) = write_atomic(&id_file, id.as_bytes(), 0o600)
    {
        warnings.push(StateWarning {
            message: format!("cannot save system_id {id} to {}", id_file.display()),
            cause: e.to_string(),
            fix: format!(
                "make {} writable, or write the id yourself: echo {id} > {}",
                dir.display(),
                id_file.display()
            ),
        });
    }
    if data.system_id.as_deref() != Some(id) {
        data.system_id = Some(id.to_owned());
        data.version = STATE_VERSION;
        let path = dir.join(STATE_FILE);
        let written = data
            .to_json()
            .map_err(|e| e.to_string())
            .and_then(|json| write_atomic(&path, &json, 0o600).map_err(|e| e.to_string()));
        if let Err(e) = written {
            warnings.push(StateWarning {
                message: format!("cannot write the state file {}", path.display()),
                cause: e,
                fix: format!("make {} writable by this user", dir.display()),
            });
        }
    }
}

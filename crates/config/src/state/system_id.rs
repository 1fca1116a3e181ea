//! The system_id: this runner manager's identity towards GitLab, in gitlab-runner's format.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::path::{Path, PathBuf};

/// The file gitlab-runner keeps the system_id in.
pub const SYSTEM_ID_FILE: &str = ".runner_system_id";

/// Where machine ids are read from, in the order gitlab-runner's machine-id library reads them.
pub const MACHINE_ID_PATHS: &[&str] = &["/var/lib/dbus/machine-id", "/etc/machine-id"];

/// `^[sr]_[0-9a-zA-Z]{12}$`.
pub fn is_valid_system_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 14
        && matches!(b[0], b's' | b'r')
        && b[1] == b'_'
        && b[2..].iter().all(u8::is_ascii_alphanumeric)
}

/// The first non-empty machine id among `paths` (whitespace trimmed).
pub fn read_machine_id(paths: &[PathBuf]) -> Option<String> {
    paths.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

/// `s_` + the first 12 hex digits of HMAC-SHA256(key = machine id, message = "gitlab-runner"): stable
/// for a host (or container image with a baked-in machine id) and the same value gitlab-runner uses.
pub fn system_id_from_machine_id(machine_id: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(machine_id.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"gitlab-runner");
    let digest = hex::encode(mac.finalize().into_bytes());
    format!("s_{}", &digest[..12])
}

/// `r_` + 12 random letters and digits.
pub fn random_system_id() -> String {
    const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| char::from(CHARSET[rng.random_range(0..CHARSET.len())]))
        .collect();
    format!("r_{tail}")
}

/// A new system_id: from the machine id when there is one, else random.
pub fn generate_system_id(machine_id_paths: &[PathBuf]) -> String {
    match read_machine_id(machine_id_paths) {
        Some(mid) => system_id_from_machine_id(&mid),
        None => random_system_id(),
    }
}

/// What reading a `.runner_system_id` file found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoredId {
    Missing,
    Valid(String),
    /// Present but not in the system_id format.
    Invalid,
    /// Could not be read (permissions, I/O).
    Unreadable(String),
}

pub(crate) fn read_stored_id(path: &Path) -> StoredId {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let id = s.trim();
            if is_valid_system_id(id) {
                StoredId::Valid(id.to_owned())
            } else {
                StoredId::Invalid
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredId::Missing,
        Err(e) => StoredId::Unreadable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_the_format() {
        assert!(is_valid_system_id("s_0123456789ab"));
        assert!(is_valid_system_id("r_AbCdEfGhIjKl"));
        assert!(!is_valid_system_id("x_0123456789ab"));
        assert!(!is_valid_system_id("s_0123456789a"));
        assert!(!is_valid_system_id("s_0123456789abc"));
        assert!(!is_valid_system_id("s_01234567-9ab"));
        assert!(!is_valid_system_id(""));
    }

    #[test]
    fn random_ids_are_valid_and_differ() {
        let a = random_system_id();
        let b = random_system_id();
        assert!(is_valid_system_id(&a) && a.starts_with("r_"), "{a}");
        assert_ne!(a, b);
    }
}

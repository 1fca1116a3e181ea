//! Cache naming, in one place: how a `cache:key` is sanitised (or hashed with `FF_HASH_CACHE_KEYS`),
//! the default key, where the local archive lives (`<cache_dir>/<project path>/<key>/cache.zip`),
//! and the object name in a distributed cache
//! (`[<Path>/]runner/<short token>/project/<id>/<key>`, without `runner/<short token>` when the
//! cache is `Shared`, with a two-character shard directory when keys are hashed).

use crate::lexical_path::{clean, escapes, join};
use crate::message::Message;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// File name of every cache archive, whatever its compression.
pub const CACHE_ARCHIVE_NAME: &str = "cache.zip";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheKeyError {
    #[error(
        "cache key {raw:?} could not be sanitized: nothing is left once \"..\", \".\", slashes and \
         trailing spaces are removed. Fix: give cache:key a name, for example `key: \"$CI_COMMIT_REF_SLUG\"`"
    )]
    Unsanitizable { raw: String },
    #[error(
        "empty cache key. Likely cause: cache:key expands to nothing (an unset variable). \
         Fix: set cache:key to a value that is never empty, or remove it to use the default \
         `<job name>/<ref>`"
    )]
    Empty,
    #[error(
        "computed cache path outside of project bucket. Please remove `../` from cache key {key:?}"
    )]
    OutsideBucket { key: String },
    #[error(
        "cache key too short to shard (length {len}). Likely cause: FF_HASH_CACHE_KEYS object names \
         need a hashed key. Fix: pass the hashed key, not the human-readable one"
    )]
    TooShortToShard { len: usize },
    #[error(
        "the cache path for key {key:?} and project {project:?} leaves the cache directory. \
         Fix: use a cache:key without `..`"
    )]
    OutsideCacheDir { project: String, key: String },
}

impl CacheKeyError {
    /// The reason gitlab-runner gives in `Skipping cache extraction due to <reason>`.
    pub fn skip_reason(&self) -> String {
        match self {
            Self::Unsanitizable { .. } | Self::Empty => "empty cache key".to_owned(),
            other => other.to_string(),
        }
    }
}

/// gitlab-runner's cache key sanitising: decodes `%2f`/`%2F` to `/` and `%2e`/`%2E` to `.`, turns
/// `\` into `/`, resolves `.` and `..` as if the key were a path under a root it cannot leave, and
/// strips trailing whitespace from the last segments (dropping segments that become empty).
/// An empty key stays empty.
pub fn sanitize_cache_key(raw: &str) -> Result<String, CacheKeyError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let cleaned = clean(&format!("/{}", normalise(raw)));
    let mut parts: Vec<&str> = cleaned[1..].split('/').collect();
    while let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(char::is_whitespace);
        if !last.is_empty() {
            break;
        }
        parts.pop();
    }
    let key = parts.join("/");
    if key.is_empty() {
        Err(CacheKeyError::Unsanitizable {
            raw: raw.to_owned(),
        })
    } else {
        Ok(key)
    }
}

/// One pass over the key, like Go's `strings.Replacer`.
fn normalise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        let (replacement, len) = match rest.as_bytes() {
            [b'%', b'2', b'f' | b'F', ..] => ('/', 3),
            [b'%', b'2', b'e' | b'E', ..] => ('.', 3),
            [b'\\', ..] => ('/', 1),
            _ => (c, c.len_utf8()),
        };
        out.push(replacement);
        rest = &rest[len..];
    }
    out
}

/// The key used when `cache:key` is not set: `<job name>/<ref>`, cleaned like a path.
pub fn default_cache_key(job_name: &str, git_ref: &str) -> String {
    clean(&format!("/{job_name}/{git_ref}"))[1..].to_owned()
}

/// SHA-256 of the key in lowercase hex, the key `FF_HASH_CACHE_KEYS` uses.
pub fn hash_cache_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A resolved cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// For the job log (sanitised, or as given when keys are hashed).
    pub human: String,
    /// For paths and object names (the human key, or its hash with `FF_HASH_CACHE_KEYS`).
    pub hashed: String,
    /// `cache key "…" sanitized to "…"` when sanitising changed the key.
    pub warning: Option<Message>,
}

/// Resolves a cache entry's key like gitlab-runner: `user_key` (already variable-expanded) or the
/// default `<job name>/<ref>`, sanitised, or hashed when `hash_keys` (`FF_HASH_CACHE_KEYS`) is on.
pub fn resolve_cache_key(
    user_key: &str,
    job_name: &str,
    git_ref: &str,
    hash_keys: bool,
) -> Result<CacheKey, CacheKeyError> {
    let raw = if user_key.is_empty() {
        default_cache_key(job_name, git_ref)
    } else {
        user_key.to_owned()
    };
    if hash_keys {
        if raw.is_empty() {
            return Err(CacheKeyError::Empty);
        }
        return Ok(CacheKey {
            hashed: hash_cache_key(&raw),
            human: raw,
            warning: None,
        });
    }
    let human = sanitize_cache_key(&raw)?;
    if human.is_empty() {
        return Err(CacheKeyError::Empty);
    }
    let warning = (human != raw)
        .then(|| Message::warning(format!("cache key {raw:?} sanitized to {human:?}")));
    Ok(CacheKey {
        hashed: human.clone(),
        human,
        warning,
    })
}

/// The project part of the local cache directory: the project path (`group/project`), suffixed
/// `-empty` for `GIT_STRATEGY: empty` like gitlab-runner.
pub fn cache_project_dir(project_path: &str, empty_strategy: bool) -> String {
    let path = project_path.trim_matches('/');
    if empty_strategy {
        format!("{path}-empty")
    } else {
        path.to_owned()
    }
}

/// `<cache_dir>/<project dir>/<key>/cache.zip`, refused if the key would leave the cache directory.
pub fn local_cache_archive(
    cache_dir: &Path,
    project_dir: &str,
    key: &str,
) -> Result<PathBuf, CacheKeyError> {
    if key.is_empty() {
        return Err(CacheKeyError::Empty);
    }
    let project = clean(project_dir.trim_start_matches('/'));
    let rel = join(&project, key);
    let inside = if project == "." {
        !escapes(&rel) && rel != "."
    } else {
        !escapes(&project) && rel.starts_with(&format!("{project}/"))
    };
    if !inside {
        return Err(CacheKeyError::OutsideCacheDir {
            project: project_dir.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(cache_dir.join(rel).join(CACHE_ARCHIVE_NAME))
}

/// Where a distributed cache keeps a runner's archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectNaming<'a> {
    /// `[runners.cache] Path`, a prefix for every object (may be empty).
    pub prefix: &'a str,
    /// `[runners.cache] Shared`: all runners use one namespace.
    pub shared: bool,
    /// The runner's short token (`glrunner_protocol::short_token`).
    pub short_token: &'a str,
    pub project_id: i64,
}

/// The object name of a cache archive. `sharded` (on with `FF_HASH_CACHE_KEYS`) puts the first two
/// characters of the (hashed) key in between, spreading objects over 256 prefixes.
pub fn cache_object_name(
    naming: &ObjectNaming<'_>,
    key: &str,
    sharded: bool,
) -> Result<String, CacheKeyError> {
    if key.is_empty() {
        return Err(CacheKeyError::Empty);
    }
    let namespace = if naming.shared {
        String::new()
    } else {
        join("runner", naming.short_token)
    };
    let base = join(
        &join(naming.prefix, &namespace),
        &format!("project/{}", naming.project_id),
    );
    let full = if sharded {
        let shard = key
            .get(..2)
            .filter(|_| key.len() >= 2)
            .ok_or(CacheKeyError::TooShortToShard { len: key.len() })?;
        join(&join(&base, shard), key)
    } else {
        join(&base, key)
    };
    if !full.starts_with(&format!("{base}/")) {
        return Err(CacheKeyError::OutsideBucket {
            key: key.to_owned(),
        });
    }
    Ok(full)
}

/// gitlab-runner refuses a `CACHE_FALLBACK_KEY` ending in `-protected` (trailing dots and spaces
/// ignored), so unprotected jobs cannot read protected caches; the warning is what it prints.
pub fn fallback_key_allowed(key: &str) -> Result<(), Message> {
    const BLOCKED: &str = "-protected";
    if key.trim_end_matches(['.', ' ']).ends_with(BLOCKED) {
        Err(Message::warning(format!(
            "CACHE_FALLBACK_KEY {key:?} not allowed to end in {BLOCKED:?}"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_matches_gitlab_runner_table() {
        let ok = [
            ("", ""),
            ("fallback_key", "fallback_key"),
            ("some-job/some-ref", "some-job/some-ref"),
            (".../....", ".../...."),
            ("fallback_key/", "fallback_key"),
            ("fallback_key ", "fallback_key"),
            ("fallback_key\\", "fallback_key"),
            ("fallback_key/ / \\  \\", "fallback_key"),
            ("fallback_key / \\o", "fallback_key / /o"),
            ("\t foo bar \t\r", "\t foo bar"),
            (" foo / bar ", " foo / bar"),
            ("something %2F something", "something / something"),
            ("some%2f../job/some/ref/.", "job/some/ref"),
            ("%2E%2E%2E", "..."),
            ("%5C", "%5C"),
            ("foo/blipp/../bar", "foo/bar"),
            ("/foo/bar", "foo/bar"),
            ("../foo/bar", "foo/bar"),
            ("foo/bar/../../../.././blerp", "blerp"),
            ("job\\name/git\\ref", "job/name/git/ref"),
            ("foo\\bar\\..\\..\\..\\..\\.\\blerp", "blerp"),
            ("foo/ /bar", "foo/ /bar"),
            ("foo/ / /", "foo"),
        ];
        for (raw, want) in ok {
            assert_eq!(sanitize_cache_key(raw).as_deref(), Ok(want), "{raw:?}");
        }
        for raw in [
            "\\",
            "/",
            " ",
            ".",
            "..",
            " / ",
            "//",
            "../.",
            "foo/bar/../..",
            " \t\r\n",
            "%2E",
            "%2e%2E",
            ".%2E",
        ] {
            assert!(
                sanitize_cache_key(raw).is_err(),
                "{raw:?} should be refused"
            );
        }
    }

    #[test]
    fn default_key_is_job_and_ref() {
        assert_eq!(default_cache_key("build", "main"), "build/main");
        assert_eq!(default_cache_key("build", "feature/x"), "build/feature/x");
        assert_eq!(default_cache_key("../up", "main"), "up/main");
        assert_eq!(default_cache_key("", ""), "");
    }

    #[test]
    fn resolve_sanitizes_or_hashes() {
        let k = resolve_cache_key("", "test", "main", false).unwrap();
        assert_eq!(
            (k.human.as_str(), k.hashed.as_str()),
            ("test/main", "test/main")
        );
        assert!(k.warning.is_none());

        let k = resolve_cache_key("deps/../node ", "j", "r", false).unwrap();
        assert_eq!(k.human, "node");
        assert_eq!(
            k.warning.unwrap().to_string(),
            "WARNING: cache key \"deps/../node \" sanitized to \"node\""
        );

        let k = resolve_cache_key("deps/../node ", "j", "r", true).unwrap();
        assert_eq!(k.human, "deps/../node ");
        assert_eq!(k.hashed, hash_cache_key("deps/../node "));
        assert_eq!(k.hashed.len(), 64);
        assert_eq!(
            hash_cache_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );

        let err = resolve_cache_key("/", "j", "r", false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cache key \"/\" could not be sanitized")
        );
        assert_eq!(err.skip_reason(), "empty cache key");
    }

    #[test]
    fn local_archive_path() {
        let dir = Path::new("/cache");
        assert_eq!(
            local_cache_archive(dir, "group/proj", "build/main").unwrap(),
            Path::new("/cache/group/proj/build/main/cache.zip")
        );
        assert_eq!(
            local_cache_archive(dir, &cache_project_dir("/group/proj", true), "k").unwrap(),
            Path::new("/cache/group/proj-empty/k/cache.zip")
        );
        assert!(local_cache_archive(dir, "group/proj", "../../x").is_err());
        assert!(local_cache_archive(dir, "group/proj", "").is_err());
        assert!(local_cache_archive(dir, "group/proj", "..").is_err());
    }

    #[test]
    fn object_names() {
        let mut n = ObjectNaming {
            prefix: "",
            shared: false,
            short_token: "t9Wkyj-HG",
            project_id: 42,
        };
        assert_eq!(
            cache_object_name(&n, "build/main", false).unwrap(),
            "runner/t9Wkyj-HG/project/42/build/main"
        );
        n.shared = true;
        assert_eq!(cache_object_name(&n, "k", false).unwrap(), "project/42/k");
        n.prefix = "ci/cache";
        assert_eq!(
            cache_object_name(&n, "abcdef", true).unwrap(),
            "ci/cache/project/42/ab/abcdef"
        );
        assert!(matches!(
            cache_object_name(&n, "a", true),
            Err(CacheKeyError::TooShortToShard { len: 1 })
        ));
        assert!(matches!(
            cache_object_name(&n, "../../x", false),
            Err(CacheKeyError::OutsideBucket { .. })
        ));
        assert!(cache_object_name(&n, "", false).is_err());
    }

    #[test]
    fn protected_fallback_keys_are_refused() {
        assert!(fallback_key_allowed("main").is_ok());
        let w = fallback_key_allowed("main-protected. .").unwrap_err();
        assert_eq!(
            w.to_string(),
            "WARNING: CACHE_FALLBACK_KEY \"main-protected. .\" not allowed to end in \"-protected\""
        );
    }
}

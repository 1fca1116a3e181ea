//! A pod's volumes on this node: `emptyDir` (a per-pod directory), `secret` and `configMap` (files
//! with the keys, read-only), `downwardAPI` and `projected` (secrets, config maps and pod fields),
//! `hostPath` (with its type checks) and `persistentVolumeClaim` (a directory configured per
//! claim), and the kubelet's `FailedMount` messages when one cannot be set up.

use super::env::{Lookup, all_data, field_ref};
use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Where a volume is on the host.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub path: PathBuf,
    /// Always mounted read-only (secrets, config maps, downward API, read-only claims).
    pub read_only: bool,
    /// A single file (hostPath of type File/FileOrCreate).
    pub file: bool,
}

/// Set up every volume of `pod` under `pod_dir`; the failures are (volume, FailedMount message).
pub(crate) fn prepare(
    pod_dir: &Path,
    pod: &Pod,
    pod_json: &Value,
    lookup: Lookup<'_>,
    claims: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Prepared>, Vec<(String, String)>> {
    let mut ready = BTreeMap::new();
    let mut failed = Vec::new();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        match one(pod_dir, ns, v, pod_json, lookup, claims) {
            Ok(p) => {
                ready.insert(v.name.clone(), p);
            }
            Err(why) => failed.push((
                v.name.clone(),
                format!("MountVolume.SetUp failed for volume \"{}\" : {why}", v.name),
            )),
        }
    }
    if failed.is_empty() {
        Ok(ready)
    } else {
        Err(failed)
    }
}

fn io(e: std::io::Error, what: &Path) -> String {
    format!("{}: {e}", what.display())
}

fn fresh_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io(e, dir))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|e| io(e, dir))
}

fn write_file(dir: &Path, rel: &str, data: &[u8], mode: u32) -> Result<(), String> {
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(format!("invalid path {rel:?}"));
    }
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
    }
    std::fs::write(&path, data).map_err(|e| io(e, &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(e, &path))
}

/// Write the keys of a secret or config map (all, or `items`) into `dir`.
fn project_keys(
    dir: &Path,
    obj: &Value,
    secret: bool,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
) -> Result<(), String> {
    let data = all_data(obj, secret);
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let Some((_, bytes)) = data.iter().find(|(k, _)| *k == item.key) else {
                    return Err(if secret {
                        format!("references non-existent secret key: {}", item.key)
                    } else {
                        format!("configmap references non-existent config key: {}", item.key)
                    });
                };
                let mode = item.mode.map_or(default_mode, |m| m as u32);
                write_file(dir, &item.path, bytes, mode)?;
            }
        }
        _ => {
            for (k, bytes) in &data {
                write_file(dir, k, bytes, default_mode)?;
            }
        }
    }
    Ok(())
}

fn one(
    pod_dir: &Path,
    ns: &str,
    v: &Volume,
    pod_json: &Value,
    lookup: Lookup<'_>,
    claims: &BTreeMap<String, PathBuf>,
) -> Result<Prepared, String> {
    let plugin_dir = |plugin: &str| pod_dir.join("volumes").join(plugin).join(&v.name);
    let dir_volume = |path: PathBuf, read_only: bool| Prepared {
        path,
        read_only,
        file: false,
    };
    if v.empty_dir.is_some() {
        let dir = plugin_dir("kubernetes.io~empty-dir");
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io(e, &dir))?;
        }
        return Ok(dir_volume(dir, false));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let dir = plugin_dir("kubernetes.io~secret");
        let mode = s.default_mode.map_or(0o644, |m| m as u32);
        match lookup("secrets", &name) {
            Some(obj) => {
                fresh_dir(&dir, 0o755)?;
                project_keys(&dir, &obj, true, s.items.as_ref(), mode)?;
            }
            None if s.optional == Some(true) => fresh_dir(&dir, 0o755)?,
            None => return Err(format!("secret \"{name}\" not found")),
        }
        return Ok(dir_volume(dir, true));
    }
    if let Some(c) = &v.config_map {
        let name = c.name.clone();
        let dir = plugin_dir("kubernetes.io~configmap");
        let mode = c.default_mode.map_or(0o644, |m| m as u32);
        match lookup("configmaps", &name) {
            Some(obj) => {
                fresh_dir(&dir, 0o755)?;
                project_keys(&dir, &obj, false, c.items.as_ref(), mode)?;
            }
            None if c.optional == Some(true) => fresh_dir(&dir, 0o755)?,
            None => return Err(format!("configmap \"{name}\" not found")),
        }
        return Ok(dir_volume(dir, true));
    }
    if let Some(d) = &v.downward_api {
        let dir = plugin_dir("kubernetes.io~downward-api");
        fresh_dir(&dir, 0o755)?;
        let mode = d.default_mode.map_or(0o644, |m| m as u32);
        for item in d.items.iter().flatten() {
            let Some(f) = &item.field_ref else {
                return Err(format!(
                    "downward API item {:?}: only fieldRef items are supported by this kubelet",
                    item.path
                ));
            };
            let value = field_ref(pod_json, &f.field_path)?;
            write_file(
                &dir,
                &item.path,
                value.as_bytes(),
                item.mode.map_or(mode, |m| m as u32),
            )?;
        }
        return Ok(dir_volume(dir, true));
    }
    if let Some(p) = &v.projected {
        let dir = plugin_dir("kubernetes.io~projected");
        fresh_dir(&dir, 0o755)?;
        let mode = p.default_mode.map_or(0o644, |m| m as u32);
        for src in p.sources.iter().flatten() {
            if let Some(s) = &src.secret {
                match lookup("secrets", &s.name) {
                    Some(obj) => project_keys(&dir, &obj, true, s.items.as_ref(), mode)?,
                    None if s.optional == Some(true) => {}
                    None => return Err(format!("secret \"{}\" not found", s.name)),
                }
            } else if let Some(c) = &src.config_map {
                match lookup("configmaps", &c.name) {
                    Some(obj) => project_keys(&dir, &obj, false, c.items.as_ref(), mode)?,
                    None if c.optional == Some(true) => {}
                    None => return Err(format!("configmap \"{}\" not found", c.name)),
                }
            } else if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let value = field_ref(pod_json, &f.field_path)?;
                        write_file(&dir, &item.path, value.as_bytes(), mode)?;
                    }
                }
            } else {
                return Err(
                    "this kubelet projects secrets, config maps and pod fields only (no service account tokens or cluster trust bundles)"
                        .to_owned(),
                );
            }
        }
        return Ok(dir_volume(dir, true));
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        let kind = h.type_.as_deref().unwrap_or("");
        let file = match kind {
            "" | "DirectoryOrCreate" => {
                if !path.exists() {
                    std::fs::create_dir_all(&path).map_err(|e| io(e, &path))?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                        .map_err(|e| io(e, &path))?;
                }
                !path.is_dir()
            }
            "Directory" => {
                if !path.is_dir() {
                    return Err(format!(
                        "hostPath type check failed: {} is not a directory",
                        h.path
                    ));
                }
                false
            }
            "FileOrCreate" => {
                if !path.exists() {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
                    }
                    std::fs::write(&path, b"").map_err(|e| io(e, &path))?;
                }
                true
            }
            "File" => {
                if !path.is_file() {
                    return Err(format!(
                        "hostPath type check failed: {} is not a file",
                        h.path
                    ));
                }
                true
            }
            "Socket" | "CharDevice" | "BlockDevice" => {
                if !path.exists() {
                    return Err(format!(
                        "hostPath type check failed: {} is not a {}",
                        h.path,
                        kind.to_lowercase()
                    ));
                }
                true
            }
            other => return Err(format!("hostPath type {other:?} is not supported")),
        };
        return Ok(Prepared {
            path,
            read_only: false,
            file,
        });
    }
    if let Some(c) = &v.persistent_volume_claim {
        let dir = claims
            .get(&format!("{ns}/{}", c.claim_name))
            .or_else(|| claims.get(&c.claim_name))
            .cloned()
            .ok_or_else(|| format!("persistentvolumeclaim \"{}\" not found", c.claim_name))?;
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        return Ok(dir_volume(dir, c.read_only == Some(true)));
    }
    Err("this kubelet supports emptyDir, secret, configMap, downwardAPI, projected, hostPath and persistentVolumeClaim volumes".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: Value) -> (Pod, Value) {
        let v = json!({"metadata":{"name":"p","namespace":"ci"},"spec":{"containers":[{"name":"c","image":"i"}],"volumes":volumes}});
        (serde_json::from_value(v.clone()).expect("pod"), v)
    }

    #[test]
    fn secrets_and_config_maps_become_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let (p, pj) = pod(json!([
            {"name":"ca","secret":{"secretName":"gitlab-ca","items":[{"key":"ca.crt","path":"certs/ca.crt"}]}},
            {"name":"cfg","configMap":{"name":"cfg","defaultMode":0o600}},
            {"name":"tmp","emptyDir":{}},
            {"name":"who","downwardAPI":{"items":[{"path":"name","fieldRef":{"fieldPath":"metadata.name"}}]}}
        ]));
        let lookup = |plural: &str, name: &str| match (plural, name) {
            ("secrets", "gitlab-ca") => Some(json!({"data":{"ca.crt":"UEVN"}})),
            ("configmaps", "cfg") => Some(json!({"data":{"a":"1"}})),
            _ => None,
        };
        let ready = prepare(dir.path(), &p, &pj, &lookup, &BTreeMap::new()).expect("ready");
        let ca = &ready["ca"];
        assert!(ca.read_only);
        assert_eq!(
            std::fs::read(ca.path.join("certs/ca.crt")).expect("ca"),
            b"PEM"
        );
        let a = ready["cfg"].path.join("a");
        assert_eq!(std::fs::read(&a).expect("a"), b"1");
        assert_eq!(
            std::fs::metadata(&a).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read(ready["who"].path.join("name")).expect("name"),
            b"p"
        );
        assert!(!ready["tmp"].read_only);
    }

    #[test]
    fn missing_sources_fail_to_mount_with_the_kubelet_message() {
        let dir = tempfile::tempdir().expect("tmp");
        let (p, pj) = pod(json!([
            {"name":"ca","secret":{"secretName":"gitlab-ca"}},
            {"name":"opt","secret":{"secretName":"nope","optional":true}},
            {"name":"d","hostPath":{"path":"/nonexistent/glrunner","type":"Directory"}}
        ]));
        let none = |_: &str, _: &str| None;
        let failed = prepare(dir.path(), &p, &pj, &none, &BTreeMap::new()).expect_err("fails");
        assert_eq!(
            failed,
            vec![
                (
                    "ca".to_owned(),
                    "MountVolume.SetUp failed for volume \"ca\" : secret \"gitlab-ca\" not found"
                        .to_owned()
                ),
                (
                    "d".to_owned(),
                    "MountVolume.SetUp failed for volume \"d\" : hostPath type check failed: /nonexistent/glrunner is not a directory".to_owned()
                ),
            ]
        );
    }
}

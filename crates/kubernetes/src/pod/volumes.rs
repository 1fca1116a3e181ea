//! `[runners.kubernetes.volumes]`: every kind (host_path, pvc, config_map, secret, empty_dir, csi,
//! nfs) turned into pod volumes and the mounts every job container shares. Mount paths, sub paths and
//! PVC names are variable-expanded, as in gitlab-runner.

use super::error::SpecError;
use crate::names::{is_dns_label, is_dns_subdomain};
use crate::quantity::Quantity;
use glrunner_config::kubernetes::Volumes;
use glrunner_job::Variables;
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, KeyToPath,
    NFSVolumeSource, PersistentVolumeClaimVolumeSource, SecretVolumeSource, Volume, VolumeMount,
};
use std::collections::BTreeMap;

/// Volume names glrunner uses itself.
pub const RESERVED_NAMES: &[&str] = &["repo", "scripts", "logs", "cache", "variables"];

/// The user's volumes and the mounts that go with them.
#[derive(Debug, Default)]
pub struct UserVolumes {
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

impl UserVolumes {
    /// Whether a user volume is mounted exactly at `path`.
    pub fn mounts_at(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == path)
    }
}

struct Common<'a> {
    kind: &'static str,
    name: &'a str,
    mount_path: &'a str,
    sub_path: Option<&'a str>,
    read_only: Option<bool>,
    propagation: Option<&'a str>,
}

fn items(map: &BTreeMap<String, String>) -> Option<Vec<KeyToPath>> {
    (!map.is_empty()).then(|| {
        map.iter()
            .map(|(key, path)| KeyToPath {
                key: key.clone(),
                path: path.clone(),
                ..KeyToPath::default()
            })
            .collect()
    })
}

fn required(kind: &str, name: &str, field: &str, value: &str) -> Result<(), SpecError> {
    if value.trim().is_empty() {
        return Err(SpecError::Volume {
            kind: kind.to_owned(),
            name: name.to_owned(),
            problem: format!("`{field}` is required"),
        });
    }
    Ok(())
}

/// Build the user's volumes.
pub fn user_volumes(config: &Volumes, vars: &Variables) -> Result<UserVolumes, SpecError> {
    let mut out = UserVolumes::default();
    let mut add = |c: Common<'_>, volume_name: String, source: Volume| {
        let err = |problem: String| SpecError::Volume {
            kind: c.kind.to_owned(),
            name: c.name.to_owned(),
            problem,
        };
        if !is_dns_label(&volume_name) {
            return Err(err(format!(
                "the name {volume_name:?} must be a lower-case DNS label (letters, digits and `-`, at \
                 most 63)"
            )));
        }
        if RESERVED_NAMES.contains(&volume_name.as_str()) {
            return Err(err(format!(
                "the name {volume_name:?} is used by glrunner itself ({}); choose another name",
                RESERVED_NAMES.join(", ")
            )));
        }
        if out.volumes.iter().any(|v: &Volume| v.name == volume_name) {
            return Err(err("another volume has the same name".to_owned()));
        }
        let mount_path = vars.expand_value(c.mount_path);
        if mount_path.trim().is_empty() {
            return Err(err("`mount_path` is required".to_owned()));
        }
        if !mount_path.starts_with('/') {
            return Err(err(format!(
                "`mount_path` {mount_path:?} must be an absolute path"
            )));
        }
        if out.mounts_at(&mount_path) {
            return Err(err(format!(
                "another volume is already mounted at {mount_path:?}"
            )));
        }
        let propagation = match c.propagation.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p @ ("None" | "HostToContainer" | "Bidirectional")) => Some(p.to_owned()),
            Some(p) => {
                return Err(err(format!(
                    "`mount_propagation` {p:?} must be None, HostToContainer or Bidirectional"
                )));
            }
        };
        out.mounts.push(VolumeMount {
            name: volume_name.clone(),
            mount_path,
            sub_path: c
                .sub_path
                .filter(|s| !s.is_empty())
                .map(|s| vars.expand_value(s)),
            read_only: c.read_only.filter(|r| *r),
            mount_propagation: propagation,
            ..VolumeMount::default()
        });
        out.volumes.push(Volume {
            name: volume_name,
            ..source
        });
        Ok(())
    };

    for v in &config.host_path {
        required("host_path", &v.name, "name", &v.name)?;
        required("host_path", &v.name, "mount_path", &v.mount_path)?;
        let host_path = v
            .host_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| v.mount_path.clone());
        let host_path = vars.expand_value(&host_path);
        if !host_path.starts_with('/') {
            return Err(SpecError::Volume {
                kind: "host_path".into(),
                name: v.name.clone(),
                problem: format!("`host_path` {host_path:?} must be an absolute path on the node"),
            });
        }
        add(
            Common {
                kind: "host_path",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: v.mount_propagation.as_deref(),
            },
            v.name.clone(),
            Volume {
                host_path: Some(HostPathVolumeSource {
                    path: host_path,
                    type_: None,
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.pvc {
        required("pvc", &v.name, "name", &v.name)?;
        let claim = vars.expand_value(&v.name);
        if !is_dns_subdomain(&claim) {
            return Err(SpecError::Volume {
                kind: "pvc".into(),
                name: v.name.clone(),
                problem: format!(
                    "the claim name {claim:?} (after expanding variables) is not a valid \
                     PersistentVolumeClaim name"
                ),
            });
        }
        add(
            Common {
                kind: "pvc",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: v.mount_propagation.as_deref(),
            },
            claim.clone(),
            Volume {
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: v.read_only.filter(|r| *r),
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.config_map {
        required("config_map", &v.name, "name", &v.name)?;
        add(
            Common {
                kind: "config_map",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: None,
            },
            v.name.clone(),
            Volume {
                config_map: Some(ConfigMapVolumeSource {
                    name: v.name.clone(),
                    items: items(&v.items),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.secret {
        required("secret", &v.name, "name", &v.name)?;
        add(
            Common {
                kind: "secret",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: None,
            },
            v.name.clone(),
            Volume {
                secret: Some(SecretVolumeSource {
                    secret_name: Some(v.name.clone()),
                    items: items(&v.items),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.empty_dir {
        required("empty_dir", &v.name, "name", &v.name)?;
        let size_limit = match v
            .size_limit
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => Some(
                Quantity::parse(s)
                    .map_err(|e| SpecError::Volume {
                        kind: "empty_dir".into(),
                        name: v.name.clone(),
                        problem: format!("`size_limit` {s:?} is not a quantity such as 1Gi: {e}"),
                    })?
                    .to_kubernetes(),
            ),
            None => None,
        };
        let medium = match v.medium.as_deref().map(str::trim).unwrap_or_default() {
            "" => None,
            m if m.eq_ignore_ascii_case("memory") => Some("Memory".to_owned()),
            m => {
                return Err(SpecError::Volume {
                    kind: "empty_dir".into(),
                    name: v.name.clone(),
                    problem: format!("`medium` {m:?} must be \"\" (node disk) or \"Memory\""),
                });
            }
        };
        add(
            Common {
                kind: "empty_dir",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: None,
                propagation: v.mount_propagation.as_deref(),
            },
            v.name.clone(),
            Volume {
                empty_dir: Some(EmptyDirVolumeSource {
                    medium,
                    size_limit,
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.csi {
        required("csi", &v.name, "name", &v.name)?;
        required("csi", &v.name, "driver", &v.driver)?;
        add(
            Common {
                kind: "csi",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: None,
            },
            v.name.clone(),
            Volume {
                csi: Some(CSIVolumeSource {
                    driver: v.driver.clone(),
                    fs_type: v.fs_type.clone().filter(|f| !f.is_empty()),
                    read_only: v.read_only.filter(|r| *r),
                    volume_attributes: (!v.volume_attributes.is_empty())
                        .then(|| v.volume_attributes.clone()),
                    node_publish_secret_ref: None,
                }),
                ..Volume::default()
            },
        )?;
    }
    for v in &config.nfs {
        required("nfs", &v.name, "name", &v.name)?;
        required("nfs", &v.name, "server", &v.server)?;
        required("nfs", &v.name, "path", &v.path)?;
        add(
            Common {
                kind: "nfs",
                name: &v.name,
                mount_path: &v.mount_path,
                sub_path: v.sub_path.as_deref(),
                read_only: v.read_only,
                propagation: None,
            },
            v.name.clone(),
            Volume {
                nfs: Some(NFSVolumeSource {
                    server: v.server.clone(),
                    path: v.path.clone(),
                    read_only: v.read_only.filter(|r| *r),
                }),
                ..Volume::default()
            },
        )?;
    }
    Ok(out)
}

/// An emptyDir volume named `name`.
pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// A mount of volume `name` at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

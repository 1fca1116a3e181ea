//! Pod and container security contexts. `privileged` and `allow_privilege_escalation` are set only
//! when configured; `NET_RAW` is dropped unless `cap_add` adds it back (gitlab-runner's default); a
//! container's own `capabilities` table replaces the runner-wide `cap_add`/`cap_drop`.

use glrunner_config::KubernetesConfig;
use glrunner_config::kubernetes::{
    AppArmorProfile as CfgAppArmor, ContainerSecurityContext, PodSecurityContext as CfgPod,
    SeccompProfile as CfgSeccomp,
};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, PodSecurityContext, SELinuxOptions, SeccompProfile,
    SecurityContext,
};

/// Capabilities dropped unless added back.
pub const DEFAULT_CAP_DROP: &[&str] = &["NET_RAW"];

fn seccomp(p: &Option<CfgSeccomp>) -> Option<SeccompProfile> {
    let p = p.as_ref()?;
    Some(SeccompProfile {
        type_: p
            .r#type
            .clone()
            .unwrap_or_else(|| "RuntimeDefault".to_owned()),
        localhost_profile: p.localhost_profile.clone(),
    })
}

fn app_armor(p: &Option<CfgAppArmor>) -> Option<AppArmorProfile> {
    let p = p.as_ref()?;
    Some(AppArmorProfile {
        type_: p
            .r#type
            .clone()
            .unwrap_or_else(|| "RuntimeDefault".to_owned()),
        localhost_profile: p.localhost_profile.clone(),
    })
}

fn selinux(t: &Option<String>) -> Option<SELinuxOptions> {
    t.as_ref()
        .filter(|t| !t.is_empty())
        .map(|t| SELinuxOptions {
            type_: Some(t.clone()),
            ..SELinuxOptions::default()
        })
}

/// `pod_security_context`.
pub fn pod(config: &KubernetesConfig) -> Option<PodSecurityContext> {
    let p: &CfgPod = config.pod_security_context.as_ref()?;
    Some(PodSecurityContext {
        fs_group: p.fs_group,
        run_as_group: p.run_as_group,
        run_as_non_root: p.run_as_non_root,
        run_as_user: p.run_as_user,
        supplemental_groups: (!p.supplemental_groups.is_empty())
            .then(|| p.supplemental_groups.clone()),
        se_linux_options: selinux(&p.selinux_type),
        seccomp_profile: seccomp(&p.seccomp_profile),
        app_armor_profile: app_armor(&p.app_armor_profile),
        ..PodSecurityContext::default()
    })
}

/// Capabilities from `add`/`drop` lists: `NET_RAW` dropped by default, an explicit drop wins over an
/// add of the same capability.
fn capabilities(add: &[String], drop: &[String]) -> Option<Capabilities> {
    let mut dropped: Vec<String> = DEFAULT_CAP_DROP
        .iter()
        .filter(|d| !add.iter().any(|a| a == *d))
        .map(|d| (*d).to_owned())
        .collect();
    for d in drop {
        if !dropped.contains(d) {
            dropped.push(d.clone());
        }
    }
    let added: Vec<String> = add.iter().filter(|a| !drop.contains(a)).cloned().collect();
    if added.is_empty() && dropped.is_empty() {
        return None;
    }
    Some(Capabilities {
        add: (!added.is_empty()).then_some(added),
        drop: (!dropped.is_empty()).then_some(dropped),
    })
}

/// A container's security context from its `*_container_security_context`, with the runner-wide
/// `privileged`, `allow_privilege_escalation` and capabilities as defaults when `runner_wide` is set.
pub fn container(
    config: &KubernetesConfig,
    own: Option<&ContainerSecurityContext>,
    runner_wide: bool,
) -> SecurityContext {
    let default = ContainerSecurityContext::default();
    let c = own.unwrap_or(&default);
    let capabilities = match &c.capabilities {
        Some(caps) => capabilities(&caps.add, &caps.drop),
        None if runner_wide => capabilities(&config.cap_add, &config.cap_drop),
        None => capabilities(&[], &[]),
    };
    let privileged = c
        .privileged
        .or(if runner_wide { config.privileged } else { None });
    let allow_privilege_escalation = c.allow_privilege_escalation.or(if runner_wide {
        config.allow_privilege_escalation
    } else {
        None
    });
    SecurityContext {
        capabilities,
        privileged,
        allow_privilege_escalation,
        run_as_user: c.run_as_user,
        run_as_group: c.run_as_group,
        run_as_non_root: c.run_as_non_root,
        read_only_root_filesystem: c.read_only_root_filesystem,
        proc_mount: c.proc_mount.clone().filter(|p| !p.is_empty()),
        se_linux_options: selinux(&c.selinux_type),
        seccomp_profile: seccomp(&c.seccomp_profile),
        app_armor_profile: app_armor(&c.app_armor_profile),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glrunner_config::kubernetes::Capabilities as CfgCaps;

    #[test]
    fn net_raw_dropped_unless_added_and_drop_wins() {
        let c = capabilities(&[], &[]).unwrap();
        assert_eq!(c.drop, Some(vec!["NET_RAW".to_owned()]));
        assert_eq!(c.add, None);
        let c = capabilities(
            &["NET_RAW".into(), "SYS_ADMIN".into()],
            &["SYS_ADMIN".into()],
        )
        .unwrap();
        assert_eq!(c.add, Some(vec!["NET_RAW".to_owned()]));
        assert_eq!(c.drop, Some(vec!["SYS_ADMIN".to_owned()]));
    }

    #[test]
    fn privileged_only_when_configured() {
        let mut config = KubernetesConfig::default();
        assert_eq!(container(&config, None, true).privileged, None);
        config.privileged = Some(true);
        assert_eq!(container(&config, None, true).privileged, Some(true));
        assert_eq!(container(&config, None, false).privileged, None, "init");
        let own = ContainerSecurityContext {
            privileged: Some(false),
            capabilities: Some(CfgCaps {
                add: vec!["SYS_PTRACE".into()],
                drop: vec![],
            }),
            ..ContainerSecurityContext::default()
        };
        config.cap_add = vec!["NET_ADMIN".into()];
        let sc = container(&config, Some(&own), true);
        assert_eq!(
            sc.privileged,
            Some(false),
            "the container's own setting wins"
        );
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.add, Some(vec!["SYS_PTRACE".to_owned()]));
        assert_eq!(caps.drop, Some(vec!["NET_RAW".to_owned()]));
    }
}

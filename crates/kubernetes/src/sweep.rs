//! The start-up sweep (catalogue P2, design decision 7): what a previous run of this manager (same
//! system_id) left in the job namespace — pods, Secrets, Services and (with `pod_disruption_budget`)
//! PodDisruptionBudgets of jobs it no longer runs — is
//! deleted, and each job it belonged to is returned with its job token (kept in the job's variables
//! Secret) so the caller can fail it in GitLab with a reason instead of leaving it "running" until
//! its timeout.

use crate::api::{Kube, KubeError, Namespaced};
use crate::permissions::Verb;
use crate::pod::{JOB_TOKEN_KEY, LABEL_JOB_ID, LABEL_SYSTEM_ID};
use glrunner_protocol::Secret as Token;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, PropagationPolicy};
use std::collections::BTreeMap;

/// A job whose objects a previous run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub job_id: i64,
    /// The job's token, when its variables Secret still had it.
    pub token: Option<Token>,
    /// Its pod, if there was one.
    pub pod: Option<String>,
    /// The pod's phase when found (`Running`, `Pending`, …).
    pub phase: Option<String>,
}

/// What the sweep did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    pub namespace: String,
    pub orphans: Vec<Orphan>,
    /// `kind/name` of every object deleted.
    pub deleted: Vec<String>,
}

/// Find and delete what the manager `system_id` left in `namespace`.
pub async fn sweep(kube: &Kube, namespace: &str, system_id: &str) -> Result<Swept, KubeError> {
    let selector = format!(
        "{LABEL_SYSTEM_ID}={}",
        crate::names::sanitize_label_value(system_id)
    );
    let params = ListParams::default().labels(&selector);
    let pods = kube.list::<Pod>(namespace, &params).await?.items;
    let secrets = kube.list::<Secret>(namespace, &params).await?.items;
    let services = kube.list::<Service>(namespace, &params).await?.items;
    // Budgets are owned by their pods and go with them; they are deleted here too so none is left
    // when the garbage collector lags or the pod was already gone. Without `pod_disruption_budget`
    // the Role does not grant listing them, and there are none of this manager's.
    let budgets = if kube.configured("policy", "poddisruptionbudgets", Verb::List) {
        kube.list::<PodDisruptionBudget>(namespace, &params)
            .await?
            .items
    } else {
        Vec::new()
    };

    let job_of = |labels: &Option<BTreeMap<String, String>>| -> Option<i64> {
        labels.as_ref()?.get(LABEL_JOB_ID)?.parse().ok()
    };
    let mut orphans: BTreeMap<i64, Orphan> = BTreeMap::new();
    fn orphan(orphans: &mut BTreeMap<i64, Orphan>, id: i64) -> &mut Orphan {
        orphans.entry(id).or_insert_with(|| Orphan {
            job_id: id,
            token: None,
            pod: None,
            phase: None,
        })
    }
    for p in &pods {
        if let Some(id) = job_of(&p.metadata.labels) {
            let o = orphan(&mut orphans, id);
            o.pod = p.metadata.name.clone();
            o.phase = p.status.as_ref().and_then(|s| s.phase.clone());
        }
    }
    for s in &secrets {
        if let Some(id) = job_of(&s.metadata.labels) {
            let o = orphan(&mut orphans, id);
            if let Some(token) = s
                .data
                .as_ref()
                .and_then(|d| d.get(JOB_TOKEN_KEY))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|t| !t.is_empty())
            {
                o.token = Some(Token::new(token));
            }
        }
    }

    let mut deleted = Vec::new();
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    delete_all(kube, namespace, &pods, &now, &mut deleted).await?;
    let default = DeleteParams::default();
    delete_all(kube, namespace, &secrets, &default, &mut deleted).await?;
    delete_all(kube, namespace, &services, &default, &mut deleted).await?;
    delete_all(kube, namespace, &budgets, &default, &mut deleted).await?;
    Ok(Swept {
        namespace: namespace.to_owned(),
        orphans: orphans.into_values().collect(),
        deleted,
    })
}

/// Delete `objects`, noting each as `kind/name` in `deleted`.
async fn delete_all<K>(
    kube: &Kube,
    namespace: &str,
    objects: &[K],
    params: &DeleteParams,
    deleted: &mut Vec<String>,
) -> Result<(), KubeError>
where
    K: Namespaced,
{
    let kind = K::kind(&()).to_lowercase();
    for o in objects {
        let name = o.meta().name.clone().unwrap_or_default();
        kube.delete::<K>(namespace, &name, params).await?;
        deleted.push(format!("{kind}/{name}"));
    }
    Ok(())
}

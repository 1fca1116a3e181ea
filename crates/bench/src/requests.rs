//! Kubernetes API request accounting for the kubernetes benchmark: the manager's requests as the API
//! server logged them, split into the long-lived watches every job shares and the requests of the
//! jobs themselves, and the requests the official runner's documented pattern would make for the
//! same jobs (computed, not measured).

use glrunner_apiserver::{RequestKey, RequestRecord};
use std::collections::BTreeMap;
use std::time::Duration;

/// Requests per kind.
pub type Tally = BTreeMap<RequestKey, u64>;

/// What a request counts as: its RBAC attributes, or (method verb, path) for a non-resource request.
pub fn key(r: &RequestRecord) -> RequestKey {
    if r.resource.is_empty() {
        RequestKey::new(&r.verb, &r.path, "")
    } else {
        RequestKey::new(&r.verb, &r.resource, &r.subresource)
    }
}

pub fn tally<'a>(records: impl IntoIterator<Item = &'a RequestRecord>) -> Tally {
    let mut out = Tally::new();
    for r in records {
        *out.entry(key(r)).or_default() += 1;
    }
    out
}

pub fn total(t: &Tally) -> u64 {
    t.values().sum()
}

/// A request kind as the report names it. Exec and attach are websocket (or SPDY) upgrades whatever
/// the HTTP method, so they share a row regardless of verb.
pub fn label(k: &RequestKey) -> String {
    match k.subresource.as_str() {
        "exec" | "attach" => format!("{}/{} (stream upgrade)", k.resource, k.subresource),
        "" => format!("{} {}", k.verb, k.resource),
        sub => format!("{} {}/{sub}", k.verb, k.resource),
    }
}

/// `label x count, …`, or "none".
pub fn describe(t: &Tally) -> String {
    if t.is_empty() {
        return "none".to_owned();
    }
    t.iter()
        .map(|(k, n)| format!("{} ×{n}", label(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The requests made after the jobs were handed out, split in two.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JobRequests {
    /// Long-lived watches and the LIST each one starts from: made once per manager and namespace
    /// (by the first job that needs them), shared by every later job.
    pub watches: Tally,
    /// Everything else: what the jobs cost.
    pub jobs: Tally,
    /// Requests answered with an error status (also counted above).
    pub failed: u64,
}

/// Split `records` (in the order served): a `watch` is a watch; a `list` is the start of one when
/// a watch of the same resource, namespace and selectors follows it; everything else is the jobs'.
pub fn split(records: &[RequestRecord]) -> JobRequests {
    let mut out = JobRequests::default();
    for (i, r) in records.iter().enumerate() {
        let starts_watch = r.verb == "list"
            && records[i + 1..].iter().any(|w| {
                w.verb == "watch"
                    && w.resource == r.resource
                    && w.namespace == r.namespace
                    && selectors(&w.query) == selectors(&r.query)
            });
        let bucket = if r.verb == "watch" || starts_watch {
            &mut out.watches
        } else {
            &mut out.jobs
        };
        *bucket.entry(key(r)).or_default() += 1;
        if r.status >= 400 {
            out.failed += 1;
        }
    }
    out
}

/// `(labelSelector, fieldSelector)` of a query string, decoded.
fn selectors(query: &str) -> (String, String) {
    let mut label = String::new();
    let mut field = String::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "labelSelector" => label = v.into_owned(),
            "fieldSelector" => field = v.into_owned(),
            _ => {}
        }
    }
    (label, field)
}

/// Stages of a simple job in the official runner (user-pain.md §2.5: "~8–10 stages": prepare
/// script, get sources, restore cache, download artifacts, step script, archive cache, upload
/// artifacts, upload artifacts on failure, cleanup), each one exec writing the script and one attach.
pub const OFFICIAL_STAGES: u64 = 9;
/// `poll_interval` (KubernetesPollInterval): `watchPodStatus` GETs the pod this often.
pub const OFFICIAL_POLL: Duration = Duration::from_secs(3);

/// The requests the official runner's documented pattern (gitlab-runner.md §4.3, attach strategy,
/// defaults, user-pain.md §2.5) makes for one job that ran for `duration`:
/// two SelfSubjectAccessReviews and a per-job pod informer (LIST + WATCH), the registry-credentials
/// Secret, `GET /version`, the pod, the Secret's owner reference; an exec to detect the shell and the
/// long-lived read-logs exec; per stage an exec writing the script, a pod GET (the phase check before
/// attaching) and an attach; a pod GET every `poll_interval` while the job runs; the pod's deletion.
pub fn official(duration: Duration) -> Tally {
    let polls = (duration.as_secs_f64() / OFFICIAL_POLL.as_secs_f64()).floor() as u64;
    let mut t = Tally::new();
    let mut add = |verb: &str, resource: &str, sub: &str, n: u64| {
        *t.entry(RequestKey::new(verb, resource, sub)).or_default() += n;
    };
    add("create", "selfsubjectaccessreviews", "", 2);
    add("list", "pods", "", 1);
    add("watch", "pods", "", 1);
    add("create", "secrets", "", 1);
    add("get", "/version", "", 1);
    add("create", "pods", "", 1);
    add("update", "secrets", "", 1);
    add("create", "pods", "exec", 2 + OFFICIAL_STAGES);
    add("create", "pods", "attach", OFFICIAL_STAGES);
    add("get", "pods", "", OFFICIAL_STAGES + polls);
    add("delete", "pods", "", 1);
    t
}

/// Requests per job, per report row: the sum over every job divided by their number.
pub fn per_job(tallies: &[Tally]) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for t in tallies {
        for (k, n) in t {
            *out.entry(label(k)).or_default() += *n as f64;
        }
    }
    let jobs = tallies.len().max(1) as f64;
    for v in out.values_mut() {
        *v /= jobs;
    }
    out
}

/// `tally` divided by `jobs`, per report row.
pub fn divided(tally: &Tally, jobs: usize) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for (k, n) in tally {
        *out.entry(label(k)).or_default() += *n as f64 / jobs.max(1) as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(verb: &str, resource: &str, sub: &str, ns: &str, query: &str) -> RequestRecord {
        RequestRecord {
            method: "GET".into(),
            path: if resource.starts_with('/') {
                resource.into()
            } else {
                format!("/api/v1/namespaces/{ns}/{resource}")
            },
            query: query.into(),
            user: "system:serviceaccount:ci-system:glrunner".into(),
            verb: verb.into(),
            resource: if resource.starts_with('/') {
                String::new()
            } else {
                resource.into()
            },
            subresource: sub.into(),
            namespace: ns.into(),
            name: String::new(),
            status: 200,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn a_list_counts_as_a_watch_only_when_a_watch_with_its_selectors_follows() {
        let sel = "labelSelector=glrunner%2Fsystem-id%3Ds_1";
        let mut failed = rec("create", "pods", "", "ci-jobs", "");
        failed.status = 409;
        let records = vec![
            rec("list", "pods", "", "ci-jobs", sel),
            rec("create", "secrets", "", "ci-jobs", ""),
            failed,
            // Same resource and namespace, other selector: a job's own list.
            rec("list", "pods", "", "ci-jobs", "labelSelector=other%3Dx"),
            rec("watch", "pods", "", "ci-jobs", &format!("{sel}&watch=true")),
            // After the watch: not the start of one.
            rec("list", "pods", "", "ci-jobs", sel),
            rec("get", "pods", "exec", "ci-jobs", ""),
            rec("get", "/version", "", "", ""),
        ];
        let s = split(&records);
        assert_eq!(describe(&s.watches), "list pods ×1, watch pods ×1", "{s:?}");
        assert_eq!(
            describe(&s.jobs),
            "create pods ×1, create secrets ×1, get /version ×1, pods/exec (stream upgrade) ×1, list pods ×2",
            "{s:?}"
        );
        assert_eq!(s.failed, 1);
        assert_eq!(total(&s.jobs) + total(&s.watches), records.len() as u64);
    }

    #[test]
    fn the_official_pattern_adds_a_pod_get_per_poll_interval_of_the_job() {
        let short = official(Duration::from_millis(2_900));
        let long = official(Duration::from_secs(31));
        assert_eq!(total(&short), 2 + 2 + 1 + 1 + 1 + 1 + 11 + 9 + 9 + 1);
        let upgrades: u64 = short
            .iter()
            .filter(|(k, _)| k.subresource == "exec" || k.subresource == "attach")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(upgrades, 20, "about 20 exec/attach upgrades per job");
        assert_eq!(total(&long) - total(&short), 10, "one GET per 3 s of 31 s");
        let get = RequestKey::new("get", "pods", "");
        assert_eq!(long[&get], 9 + 10);
    }

    #[test]
    fn per_job_averages_rows_across_jobs_and_merges_upgrade_verbs() {
        let mut a = Tally::new();
        a.insert(RequestKey::new("create", "pods", "attach"), 2);
        a.insert(RequestKey::new("get", "pods", ""), 3);
        let mut b = Tally::new();
        b.insert(RequestKey::new("get", "pods", "attach"), 2);
        b.insert(RequestKey::new("get", "pods", ""), 4);
        let rows = per_job(&[a, b]);
        assert_eq!(rows["pods/attach (stream upgrade)"], 2.0);
        assert_eq!(rows["get pods"], 3.5);
        assert_eq!(rows.len(), 2);

        let mut c = Tally::new();
        c.insert(RequestKey::new("delete", "pods", ""), 100);
        c.insert(RequestKey::new("get", "pods", "exec"), 100);
        let rows = divided(&c, 100);
        assert_eq!(rows["delete pods"], 1.0);
        assert_eq!(rows["pods/exec (stream upgrade)"], 1.0);
    }

    #[test]
    fn keys_name_non_resource_requests_by_path() {
        let r = rec("get", "/version", "", "", "");
        assert_eq!(label(&key(&r)), "get /version");
        assert_eq!(describe(&Tally::new()), "none");
    }
}

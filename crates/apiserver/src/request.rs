//! What a request asks for, derived from method, path and query exactly as kube-apiserver's
//! RequestInfoFactory does: resource vs non-resource, API group/version, namespace, resource, name,
//! subresource, and the verb (`get`/`list`/`watch`/`create`/`update`/`patch`/`delete`/
//! `deletecollection`, with a `metadata.name` field selector naming the object).

use crate::selector::FieldSelector;
use http::Method;
use std::collections::BTreeMap;

/// Query parameters (the first value of each name; `command` and friends are read from the URI).
#[derive(Debug, Clone, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = BTreeMap::new();
        if let Some(q) = query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter as Go's `strconv.ParseBool` reads it (`1`, `t`, `true`, …).
    pub fn flag(&self, key: &str) -> bool {
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }
}

/// The parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub is_resource: bool,
    pub path: String,
    pub verb: String,
    /// `api` or `apis` for resource requests.
    pub prefix: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// Path segments after the subresource (unsupported; answered 404).
    pub extra: Vec<String>,
}

pub fn parse(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let mut info = RequestInfo {
        path: path.to_owned(),
        verb: method.as_str().to_ascii_lowercase(),
        ..Default::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match parts.as_slice() {
        ["api", rest @ ..] => ("api", rest),
        ["apis", rest @ ..] => ("apis", rest),
        _ => return info,
    };
    let mut rest: Vec<&str> = rest.to_vec();
    // /api/v1 and /apis/<g>/<v> and /apis/<g> are discovery (non-resource).
    let needed = if prefix == "api" { 2 } else { 3 };
    if rest.len() < needed {
        return info;
    }
    info.prefix = prefix.to_owned();
    if prefix == "apis" {
        info.group = rest.remove(0).to_owned();
    }
    info.version = rest.remove(0).to_owned();
    info.is_resource = true;
    info.verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_owned();
    // Legacy /watch/ prefix.
    if rest.first() == Some(&"watch") {
        rest.remove(0);
        info.verb = "watch".to_owned();
    }
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        info.namespace = rest[1].to_owned();
        if rest.len() > 2 && !["status", "finalize"].contains(&rest[2]) {
            rest.drain(..2);
        }
    }
    if let Some(r) = rest.first() {
        info.resource = (*r).to_owned();
    }
    if let Some(n) = rest.get(1) {
        info.name = (*n).to_owned();
    }
    if let Some(s) = rest.get(2) {
        info.subresource = (*s).to_owned();
    }
    if rest.len() > 3 {
        info.extra = rest[3..].iter().map(|s| (*s).to_owned()).collect();
    }
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if query.flag("watch") { "watch" } else { "list" }.to_owned();
    }
    if info.name.is_empty()
        && (info.verb == "list" || info.verb == "watch")
        && let Some(fs) = query.get("fieldSelector")
        && let Ok(sel) = FieldSelector::parse(fs)
        && let Some(name) = sel.exact_name()
        && !name.contains('/')
        && !name.contains('%')
        && name != "."
        && name != ".."
    {
        info.name = name.to_owned();
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: Method, path: &str, query: &str) -> RequestInfo {
        parse(&method, path, &Query::parse(Some(query)))
    }

    #[test]
    fn namespaced_subresources() {
        let i = p(
            Method::POST,
            "/api/v1/namespaces/ci-jobs/pods/x/attach",
            "container=build",
        );
        assert_eq!(
            (
                i.verb.as_str(),
                i.namespace.as_str(),
                i.resource.as_str(),
                i.name.as_str(),
                i.subresource.as_str()
            ),
            ("create", "ci-jobs", "pods", "x", "attach")
        );
    }

    #[test]
    fn collections_list_watch_and_deletecollection() {
        assert_eq!(p(Method::GET, "/api/v1/namespaces/a/pods", "").verb, "list");
        let w = p(
            Method::GET,
            "/api/v1/namespaces/a/pods",
            "watch=true&fieldSelector=metadata.name%3Dp",
        );
        assert_eq!((w.verb.as_str(), w.name.as_str()), ("watch", "p"));
        assert_eq!(
            p(Method::DELETE, "/api/v1/namespaces/a/pods", "").verb,
            "deletecollection"
        );
        assert_eq!(
            p(Method::GET, "/api/v1/watch/namespaces/a/pods", "").verb,
            "watch"
        );
    }

    #[test]
    fn a_namespace_object_is_its_own_namespace() {
        let i = p(Method::GET, "/api/v1/namespaces/ci", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("namespaces", "ci", "ci")
        );
        let s = p(Method::PUT, "/api/v1/namespaces/ci/status", "");
        assert_eq!(
            (s.resource.as_str(), s.name.as_str(), s.subresource.as_str()),
            ("namespaces", "ci", "status")
        );
    }

    #[test]
    fn groups_and_discovery() {
        let i = p(
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "",
        );
        assert!(i.is_resource);
        assert_eq!(
            (i.group.as_str(), i.resource.as_str(), i.verb.as_str()),
            ("rbac.authorization.k8s.io", "clusterroles", "list")
        );
        assert!(!p(Method::GET, "/apis/rbac.authorization.k8s.io/v1", "").is_resource);
        assert!(!p(Method::GET, "/api/v1", "").is_resource);
        assert!(!p(Method::GET, "/version", "").is_resource);
    }
}

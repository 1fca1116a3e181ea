//! Object validation with kube-apiserver's field paths and messages (the 422 `Invalid` errors a client
//! can meet): names, labels, pod containers and volumes, secret types, role references, and the pod
//! spec's immutability on update.

use crate::resource::ResourceType;
use crate::status::{ApiError, FieldError};
use serde_json::Value;
use std::collections::BTreeSet;

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain problems of `name` (empty: valid).
pub fn dns1123_subdomain(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if !name.split('.').all(is_label) {
        errs.push(DNS1123_SUBDOMAIN.to_owned());
    }
    errs
}

pub fn dns1123_label(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_label(name) {
        errs.push(DNS1123_LABEL.to_owned());
    }
    errs
}

fn dns1035_label(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    if !is_label(name) || !name.as_bytes()[0].is_ascii_lowercase() {
        errs.push(DNS1035_LABEL.to_owned());
    }
    errs
}

fn path_segment(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name == "." || name == ".." {
        errs.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_owned());
    }
    let b = v.as_bytes();
    let ok = b.is_empty()
        || (b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')));
    if !ok {
        errs.push(LABEL_VALUE.to_owned());
    }
    errs
}

fn config_key(k: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if k.is_empty()
        || !k
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(CONFIG_KEY.to_owned());
    }
    if k == "." || k == ".." || k.starts_with("..") {
        errs.push("must not be '.' or '..' or start with '..'".to_owned());
    }
    errs
}

/// The name validator a resource uses.
fn name_errors(rt: &ResourceType, name: &str) -> Vec<String> {
    match rt.plural {
        "namespaces" => dns1123_label(name),
        "services" => dns1035_label(name),
        "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" => path_segment(name),
        _ => dns1123_subdomain(name),
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Validate `obj` (already defaulted) for create, or for update when `old` is given.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let name = str_at(obj, "/metadata/name").unwrap_or_default();
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let problems = name_errors(rt, name);
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                name,
                &problems.join("; "),
            ));
        }
    }
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            let v = v.as_str().unwrap_or_default();
            let problems = label_value(v);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    v,
                    &problems.join("; "),
                ));
            }
            if k.is_empty() || k.len() > 316 {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    k,
                    "name part must be non-empty",
                ));
            }
        }
    }
    match rt.plural {
        "pods" => match old {
            None => validate_pod_spec(obj, &mut errs),
            Some(old) => validate_pod_update(obj, old, &mut errs),
        },
        "secrets" => validate_secret(obj, old, &mut errs),
        "configmaps" => {
            for field in ["data", "binaryData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        let p = config_key(k);
                        if !p.is_empty() {
                            errs.push(FieldError::invalid(field, k, &p.join("; ")));
                        }
                    }
                }
            }
        }
        "rolebindings" | "clusterrolebindings" => validate_binding(rt, obj, old, &mut errs),
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt.group, rt.kind, name, &errs))
    }
}

fn validate_pod_spec(pod: &Value, errs: &mut Vec<FieldError>) {
    let volumes: BTreeSet<&str> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| vs.iter().filter_map(|v| str_at(v, "/name")).collect())
        .unwrap_or_default();
    if let Some(vs) = pod.pointer("/spec/volumes").and_then(Value::as_array) {
        let mut seen = BTreeSet::new();
        for (i, v) in vs.iter().enumerate() {
            let n = str_at(v, "/name").unwrap_or_default();
            if !seen.insert(n) {
                errs.push(FieldError::duplicate(&format!("spec.volumes[{i}].name"), n));
            }
        }
    }
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required("spec.containers", "")),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required("spec.containers", "")),
        Some(_) => {}
    }
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let base = format!("spec.{list}[{i}]");
            let name = str_at(c, "/name").unwrap_or_default();
            if name.is_empty() {
                errs.push(FieldError::required(&format!("{base}.name"), ""));
            } else {
                let p = dns1123_label(name);
                if !p.is_empty() {
                    errs.push(FieldError::invalid(
                        &format!("{base}.name"),
                        name,
                        &p.join("; "),
                    ));
                } else if !names.insert(name.to_owned()) {
                    errs.push(FieldError::duplicate(&format!("{base}.name"), name));
                }
            }
            if str_at(c, "/image").unwrap_or_default().is_empty() {
                errs.push(FieldError::required(&format!("{base}.image"), ""));
            }
            if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
                for (j, m) in mounts.iter().enumerate() {
                    let vname = str_at(m, "/name").unwrap_or_default();
                    if !volumes.contains(vname) {
                        errs.push(FieldError::not_found(
                            &format!("{base}.volumeMounts[{j}].name"),
                            vname,
                        ));
                    }
                }
            }
        }
    }
    if let Some(rp) = str_at(pod, "/spec/restartPolicy")
        && !["Always", "OnFailure", "Never"].contains(&rp)
    {
        errs.push(FieldError::unsupported(
            "spec.restartPolicy",
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(sa) = str_at(pod, "/spec/serviceAccountName") {
        let p = dns1123_subdomain(sa);
        if !sa.is_empty() && !p.is_empty() {
            errs.push(FieldError::invalid(
                "spec.serviceAccountName",
                sa,
                &p.join("; "),
            ));
        }
    }
    if let Some(ads) = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        && ads < 1
    {
        errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &ads.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
}

/// Pod updates may change only images, activeDeadlineSeconds, tolerations (and graceful-deletion
/// bookkeeping); anything else in `spec` is forbidden, as in kube-apiserver.
fn validate_pod_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let strip = |pod: &Value| -> Value {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("image");
                    }
                }
            }
        }
        if let Some(m) = spec.as_object_mut() {
            m.remove("activeDeadlineSeconds");
            m.remove("tolerations");
            m.remove("terminationGracePeriodSeconds");
        }
        spec
    };
    if strip(new) != strip(old) {
        errs.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

fn validate_secret(secret: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let data = secret.get("data").and_then(Value::as_object);
    let mut total = 0usize;
    if let Some(d) = data {
        for (k, v) in d {
            let p = config_key(k);
            if !p.is_empty() {
                errs.push(FieldError::invalid("data", k, &p.join("; ")));
            }
            total += v.as_str().map(|s| s.len() * 3 / 4).unwrap_or_default();
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError {
            cause_type: "FieldValueTooLong",
            field: "data".to_owned(),
            body: "Too long: must have at most 1048576 bytes".to_owned(),
        });
    }
    let ty = str_at(secret, "/type").unwrap_or("Opaque");
    let required = match ty {
        "kubernetes.io/dockercfg" => Some(".dockercfg"),
        "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
        _ => None,
    };
    if let Some(key) = required
        && !data.is_some_and(|d| d.contains_key(key))
    {
        errs.push(FieldError::required(&format!("data[{key}]"), ""));
    }
    if let Some(old) = old {
        let old_ty = str_at(old, "/type").unwrap_or("Opaque");
        if old_ty != ty {
            errs.push(FieldError::invalid("type", ty, "field is immutable"));
        }
        if old.get("immutable") == Some(&Value::Bool(true))
            && (old.get("data") != secret.get("data"))
        {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

fn validate_binding(rt: &ResourceType, b: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let kind = str_at(b, "/roleRef/kind").unwrap_or_default();
    let allowed: &[&str] = if rt.plural == "rolebindings" {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !allowed.contains(&kind) {
        errs.push(FieldError::unsupported("roleRef.kind", kind, allowed));
    }
    if str_at(b, "/roleRef/name").unwrap_or_default().is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    }
    if let Some(old) = old
        && old.get("roleRef") != b.get("roleRef")
    {
        errs.push(FieldError::invalid(
            "roleRef",
            &b.get("roleRef").map(Value::to_string).unwrap_or_default(),
            "cannot change roleRef",
        ));
    }
    if let Some(subjects) = b.get("subjects").and_then(Value::as_array) {
        for (i, s) in subjects.iter().enumerate() {
            let k = str_at(s, "/kind").unwrap_or_default();
            if !["User", "Group", "ServiceAccount"].contains(&k) {
                errs.push(FieldError::unsupported(
                    &format!("subjects[{i}].kind"),
                    k,
                    &["ServiceAccount", "User", "Group"],
                ));
            }
            if k == "ServiceAccount"
                && rt.plural == "clusterrolebindings"
                && str_at(s, "/namespace").unwrap_or_default().is_empty()
            {
                errs.push(FieldError::required(
                    &format!("subjects[{i}].namespace"),
                    "",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;
    use serde_json::json;

    #[test]
    fn pod_without_containers_and_bad_name() {
        let pods = find("", "v1", "pods").expect("pods");
        let err = validate(
            pods,
            &json!({"metadata":{"name":"Bad_Name"},"spec":{}}),
            None,
        )
        .expect_err("invalid");
        assert_eq!(err.code, 422);
        assert!(err.message.starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", err.message);
        assert!(
            err.message.ends_with("spec.containers: Required value]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn volume_mounts_must_name_a_volume() {
        let pods = find("", "v1", "pods").expect("pods");
        let pod = json!({"metadata":{"name":"p"},"spec":{"containers":[
            {"name":"c","image":"i","volumeMounts":[{"name":"repo","mountPath":"/builds"}]}]}});
        let err = validate(pods, &pod, None).expect_err("invalid");
        assert_eq!(
            err.message,
            "Pod \"p\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"repo\""
        );
    }

    #[test]
    fn label_values_longer_than_63_are_invalid() {
        let cms = find("", "v1", "configmaps").expect("cm");
        let long = "a".repeat(64);
        let err = validate(
            cms,
            &json!({"metadata":{"name":"c","labels":{"k":long}}}),
            None,
        )
        .expect_err("invalid");
        assert!(
            err.message.contains("must be no more than 63 characters"),
            "{}",
            err.message
        );
    }
}

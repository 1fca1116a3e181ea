//! Defaulting as kube-apiserver's scheme defaults do it for the fields clients read back: pod
//! policies, container pull policies and termination messages, the pod's QoS class and `Pending`
//! phase, namespace finalizers and phase, service cluster IPs and ports, secret types.

use serde_json::{Map, Value, json};

/// The object under `key`, made an empty object if it is missing or not an object.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let entry = m.entry(key.to_owned()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("the entry was just made an object"),
    }
}

fn set_default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_owned(), value);
    }
}

/// Apply create-time defaults for `resource` (plural) in place; `obj` is a JSON object.
pub fn apply(resource: &str, obj: &mut Value, next_cluster_ip: &mut dyn FnMut() -> String) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match resource {
        "pods" => pod(root),
        "namespaces" => {
            let meta = child(root, "metadata");
            let name = meta.get("name").cloned().unwrap_or(Value::Null);
            child(meta, "labels").insert("kubernetes.io/metadata.name".into(), name);
            set_default(child(root, "spec"), "finalizers", json!(["kubernetes"]));
            set_default(child(root, "status"), "phase", json!("Active"));
        }
        "services" => {
            let spec = child(root, "spec");
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            if spec
                .get("clusterIP")
                .is_none_or(|v| v.as_str().unwrap_or_default().is_empty())
            {
                let ip = next_cluster_ip();
                spec.insert("clusterIP".into(), json!(ip));
                spec.insert("clusterIPs".into(), json!([ip]));
            } else if spec.get("clusterIPs").is_none() {
                let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if let Some(pm) = p.as_object_mut() {
                        set_default(pm, "protocol", json!("TCP"));
                        let port = pm.get("port").cloned().unwrap_or(Value::Null);
                        set_default(pm, "targetPort", port);
                    }
                }
            }
            set_default(child(root, "status"), "loadBalancer", json!({}));
        }
        "secrets" => {
            set_default(root, "type", json!("Opaque"));
            // stringData is write-only: it is merged into data, as the apiserver's conversion does.
            if let Some(Value::Object(sd)) = root.remove("stringData") {
                use base64::Engine as _;
                let data = child(root, "data");
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
        _ => {}
    }
}

fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn pod(root: &mut Map<String, Value>) {
    let spec = child(root, "spec");
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    // The ServiceAccount admission plugin defaults the account (and the deprecated alias).
    set_default(spec, "serviceAccountName", json!("default"));
    let sa = spec
        .get("serviceAccountName")
        .cloned()
        .unwrap_or(Value::Null);
    set_default(spec, "serviceAccount", sa);
    let mut requests = false;
    let mut all_guaranteed = true;
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let Some(cm) = c.as_object_mut() else {
                    continue;
                };
                let image = cm
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                set_default(cm, "imagePullPolicy", json!(pull_policy(&image)));
                set_default(cm, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(cm, "terminationMessagePolicy", json!("File"));
                set_default(cm, "resources", json!({}));
                let res = cm.get("resources").cloned().unwrap_or(Value::Null);
                let req = res.get("requests").and_then(Value::as_object);
                let lim = res.get("limits").and_then(Value::as_object);
                if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
                    requests = true;
                }
                let guaranteed = lim
                    .is_some_and(|l| l.contains_key("cpu") && l.contains_key("memory"))
                    && req.is_none_or(|r| {
                        r.iter().all(|(k, v)| lim.and_then(|l| l.get(k)) == Some(v))
                    });
                all_guaranteed &= guaranteed;
                if let Some(ports) = cm.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if let Some(pm) = p.as_object_mut() {
                            set_default(pm, "protocol", json!("TCP"));
                        }
                    }
                }
            }
        }
    }
    if spec.get("tolerations").is_none() {
        spec.insert(
            "tolerations".into(),
            json!([
                {"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},
                {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}
            ]),
        );
    }
    let qos = if !requests {
        "BestEffort"
    } else if all_guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    };
    let status = child(root, "status");
    set_default(status, "phase", json!("Pending"));
    set_default(status, "qosClass", json!(qos));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_the_apiserver_defaults() {
        let mut pod = json!({"metadata":{"name":"p"},"spec":{"containers":[
            {"name":"a","image":"alpine"},{"name":"b","image":"reg.io:5000/x/y:1.2"}]}});
        apply("pods", &mut pod, &mut || unreachable!());
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let mut s = json!({"metadata":{"name":"s"},"stringData":{"k":"v"}});
        apply("secrets", &mut s, &mut || unreachable!());
        assert_eq!(
            s,
            json!({"metadata":{"name":"s"},"type":"Opaque","data":{"k":"dg=="}})
        );
    }

    #[test]
    fn namespaces_get_phase_finalizer_and_name_label() {
        let mut ns = json!({"metadata":{"name":"ci"}});
        apply("namespaces", &mut ns, &mut || unreachable!());
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "ci"
        );
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    }
}

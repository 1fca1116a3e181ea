//! A container's environment as the kubelet builds it: `envFrom` then `env` (values, secret and
//! config map keys, the downward API), `$(VAR)` references expanded against what is defined so
//! far (`$$` escapes a `$`), the `KUBERNETES_SERVICE_*` variables, and the errors that become
//! `CreateContainerConfigError` (`secret "x" not found`, `couldn't find key K in Secret ns/x`).

use super::quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;
use std::collections::BTreeMap;

/// Reads a secret or config map of the pod's namespace (`"secrets"`/`"configmaps"`, name).
pub(crate) type Lookup<'a> = &'a dyn Fn(&str, &str) -> Option<Value>;

/// An environment that keeps the order variables were first defined in.
#[derive(Default, Clone)]
pub(crate) struct Env {
    order: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Env {
    pub fn set(&mut self, name: &str, value: String) {
        if !self.values.contains_key(name) {
            self.order.push(name.to_owned());
        }
        self.values.insert(name.to_owned(), value);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn pairs(&self) -> Vec<(String, String)> {
        self.order
            .iter()
            .filter_map(|k| self.values.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

/// Expand `$(VAR)` references in `input` from `lookup`; unknown references stay as written and
/// `$$` is a literal `$`.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn data_value(obj: &Value, key: &str, secret: bool) -> Option<String> {
    use base64::Engine as _;
    let esc = key.replace('~', "~0").replace('/', "~1");
    if secret {
        let text = obj.pointer(&format!("/data/{esc}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        if let Some(v) = obj.pointer(&format!("/data/{esc}")).and_then(Value::as_str) {
            return Some(v.to_owned());
        }
        let text = obj.pointer(&format!("/binaryData/{esc}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// All keys of a secret or config map, decoded.
pub(crate) fn all_data(obj: &Value, secret: bool) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    if let Some(m) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in m {
            let text = v.as_str().unwrap_or_default();
            if secret {
                if let Ok(bytes) = b64.decode(text) {
                    out.push((k.clone(), bytes));
                }
            } else {
                out.push((k.clone(), text.as_bytes().to_vec()));
            }
        }
    }
    if !secret && let Some(m) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in m {
            if let Ok(bytes) = b64.decode(v.as_str().unwrap_or_default()) {
                out.push((k.clone(), bytes));
            }
        }
    }
    out
}

fn kind_word(secret: bool) -> &'static str {
    if secret { "Secret" } else { "ConfigMap" }
}

fn not_found(secret: bool, name: &str) -> String {
    if secret {
        format!("secret \"{name}\" not found")
    } else {
        format!("configmap \"{name}\" not found")
    }
}

/// What a downward-API `fieldRef` reads.
pub(crate) fn field_ref(pod: &Value, path: &str) -> Result<String, String> {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let in_map = |map: &str, key: &str| {
        pod.pointer(&format!("/metadata/{map}"))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match path {
        "metadata.name" => Ok(s("/metadata/name")),
        "metadata.namespace" => Ok(s("/metadata/namespace")),
        "metadata.uid" => Ok(s("/metadata/uid")),
        "spec.nodeName" => Ok(s("/spec/nodeName")),
        "spec.serviceAccountName" => Ok(s("/spec/serviceAccountName")),
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => {
            Ok("127.0.0.1".to_owned())
        }
        p => {
            for map in ["labels", "annotations"] {
                let prefix = format!("metadata.{map}['");
                if let Some(key) = p.strip_prefix(&prefix).and_then(|k| k.strip_suffix("']")) {
                    return Ok(in_map(map, key));
                }
            }
            Err(format!("unsupported fieldPath: {p}"))
        }
    }
}

/// What a `resourceFieldRef` reads (`limits.memory` in bytes, `limits.cpu` in whole cores
/// rounded up, divided by `divisor`); unset limits are the node's allocatable.
pub(crate) fn resource_ref(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_cpu: &str,
    node_memory: &str,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource:?}"))?;
    let res = container.resources.as_ref();
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {resource:?}")),
    };
    let text = map.and_then(|m| m.get(name)).map(|q| q.0.clone());
    let cpu = name == "cpu";
    let fallback = if cpu { node_cpu } else { node_memory };
    let text = text.unwrap_or_else(|| {
        if kind == "limits" {
            fallback.to_owned()
        } else {
            "0".to_owned()
        }
    });
    let milli = quantity::parse_milli(&text).ok_or_else(|| format!("invalid quantity {text:?}"))?;
    let div = quantity::parse_milli(divisor.unwrap_or("1"))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let v = (milli + div - 1) / div;
    Ok(v.to_string())
}

/// What a container's environment is built from.
pub(crate) struct Context<'a> {
    pub pod_json: &'a Value,
    pub pod: &'a Pod,
    pub image_env: &'a [(String, String)],
    pub service_env: &'a [(String, String)],
    pub lookup: Lookup<'a>,
    /// The node's allocatable CPU and memory (limits that are not set read as these).
    pub node_cpu: &'a str,
    pub node_memory: &'a str,
}

/// The container's environment (image env first, then the kubelet's variables), or the
/// CreateContainerConfigError message.
pub(crate) fn resolve(ctx: &Context<'_>, container: &Container) -> Result<Env, String> {
    let Context {
        pod_json,
        pod,
        image_env,
        service_env,
        lookup,
        node_cpu,
        node_memory,
    } = *ctx;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut defined = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (secret, name, optional) = if let Some(s) = &from.secret_ref {
            (true, s.name.clone(), s.optional.unwrap_or(false))
        } else if let Some(c) = &from.config_map_ref {
            (false, c.name.clone(), c.optional.unwrap_or(false))
        } else {
            continue;
        };
        let plural = if secret { "secrets" } else { "configmaps" };
        match lookup(plural, &name) {
            Some(obj) => {
                for (k, v) in all_data(&obj, secret) {
                    defined.set(
                        &format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => return Err(not_found(secret, &name)),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(src) = &var.value_from {
            if let Some(r) = &src.secret_key_ref {
                key_ref(
                    lookup,
                    true,
                    &r.name,
                    &r.key,
                    r.optional.unwrap_or(false),
                    ns,
                )?
            } else if let Some(r) = &src.config_map_key_ref {
                key_ref(
                    lookup,
                    false,
                    &r.name,
                    &r.key,
                    r.optional.unwrap_or(false),
                    ns,
                )?
            } else if let Some(f) = &src.field_ref {
                Some(field_ref(pod_json, &f.field_path)?)
            } else if let Some(r) = &src.resource_field_ref {
                Some(resource_ref(
                    container,
                    &r.resource,
                    r.divisor.as_ref().map(|q| q.0.as_str()),
                    node_cpu,
                    node_memory,
                )?)
            } else {
                None
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            Some(expand(&raw, &|name| {
                defined.get(name).map(str::to_owned).or_else(|| {
                    service_env
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                })
            }))
        };
        // An optional reference to a missing key defines nothing.
        if let Some(v) = value {
            defined.set(&var.name, v);
        }
    }
    let mut env = Env::default();
    for (k, v) in image_env {
        env.set(k, v.clone());
    }
    for (k, v) in service_env {
        if defined.get(k).is_none() {
            env.set(k, v.clone());
        }
    }
    for (k, v) in defined.pairs() {
        env.set(&k, v);
    }
    Ok(env)
}

fn key_ref(
    lookup: Lookup<'_>,
    secret: bool,
    name: &str,
    key: &str,
    optional: bool,
    ns: &str,
) -> Result<Option<String>, String> {
    let plural = if secret { "secrets" } else { "configmaps" };
    let Some(obj) = lookup(plural, name) else {
        return if optional {
            Ok(None)
        } else {
            Err(not_found(secret, name))
        };
    };
    match data_value(&obj, key, secret) {
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => Err(format!(
            "couldn't find key {key} in {} {ns}/{name}",
            kind_word(secret)
        )),
    }
}

/// Command and args as the runtime runs them: the image's entrypoint/cmd unless overridden,
/// `$(VAR)` expanded from the container's environment.
pub(crate) fn argv(
    container: &Container,
    entrypoint: &[String],
    cmd: &[String],
    env: &Env,
) -> Vec<String> {
    let lookup = |name: &str| env.get(name).map(str::to_owned);
    let exp = |v: &Vec<String>| -> Vec<String> { v.iter().map(|s| expand(s, &lookup)).collect() };
    match (&container.command, &container.args) {
        (Some(c), Some(a)) => exp(c).into_iter().chain(exp(a)).collect(),
        (Some(c), None) => exp(c),
        (None, Some(a)) => entrypoint.iter().cloned().chain(exp(a)).collect(),
        (None, None) => entrypoint.iter().chain(cmd.iter()).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup_none(_: &str, _: &str) -> Option<Value> {
        None
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let look = |n: &str| (n == "A").then(|| "1".to_owned());
        assert_eq!(expand("x$(A)y", &look), "x1y");
        assert_eq!(expand("$(B)", &look), "$(B)");
        assert_eq!(expand("$$(A)", &look), "$(A)");
        assert_eq!(expand("cost $5 $$", &look), "cost $5 $");
        assert_eq!(expand("$(A", &look), "$(A");
    }

    #[test]
    fn missing_sources_are_config_errors() {
        let pod_json = json!({"metadata":{"name":"p","namespace":"ci"},"spec":{"containers":[
            {"name":"c","image":"i","env":[{"name":"X","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]}]}});
        let pod: Pod = serde_json::from_value(pod_json.clone()).expect("pod");
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let ctx = |lookup: Lookup<'_>| -> Result<Env, String> {
            resolve(
                &Context {
                    pod_json: &pod_json,
                    pod: &pod,
                    image_env: &[],
                    service_env: &[],
                    lookup,
                    node_cpu: "1",
                    node_memory: "1Gi",
                },
                c,
            )
        };
        let err = ctx(&lookup_none).err().expect("error");
        assert_eq!(err, "secret \"s\" not found");
        let with_secret =
            |plural: &str, _: &str| (plural == "secrets").then(|| json!({"data":{"other":"eA=="}}));
        let err = ctx(&with_secret).err().expect("error");
        assert_eq!(err, "couldn't find key k in Secret ci/s");
    }

    #[test]
    fn values_refs_and_order() {
        let pod_json = json!({"metadata":{"name":"p","namespace":"ci","labels":{"app":"web"}},"spec":{"containers":[
            {"name":"c","image":"i",
             "envFrom":[{"configMapRef":{"name":"cm"},"prefix":"CM_"}],
             "env":[{"name":"A","value":"a"},{"name":"B","value":"$(A)-$(CM_k)-$$(A)"},
                    {"name":"POD","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}},
                    {"name":"APP","valueFrom":{"fieldRef":{"fieldPath":"metadata.labels['app']"}}},
                    {"name":"MEM","valueFrom":{"resourceFieldRef":{"resource":"limits.memory","divisor":"1Mi"}}}],
             "resources":{"limits":{"memory":"64Mi"}}}]}});
        let pod: Pod = serde_json::from_value(pod_json.clone()).expect("pod");
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let cm =
            |plural: &str, _: &str| (plural == "configmaps").then(|| json!({"data":{"k":"v"}}));
        let env = resolve(
            &Context {
                pod_json: &pod_json,
                pod: &pod,
                image_env: &[("PATH".into(), "/bin".into())],
                service_env: &[("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into())],
                lookup: &cm,
                node_cpu: "1",
                node_memory: "1Gi",
            },
            c,
        )
        .expect("env");
        assert_eq!(env.get("B"), Some("a-v-$(A)"));
        assert_eq!(env.get("POD"), Some("p"));
        assert_eq!(env.get("APP"), Some("web"));
        assert_eq!(env.get("MEM"), Some("64"));
        assert_eq!(env.pairs()[0].0, "PATH");
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("127.0.0.1"));
    }
}

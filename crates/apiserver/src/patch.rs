//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and a strategic merge patch
//! subset.
//!
//! The strategic merge subset covers what a runner and `kubectl apply` send: maps merge recursively and
//! `null` deletes a key; lists of objects merge by key where Kubernetes declares a merge key
//! (`containers`/`initContainers`/`ephemeralContainers`/`volumes`/`env`/`imagePullSecrets`/`secrets` by
//! `name`, `ports` by `containerPort` or `port`, `volumeMounts` by `mountPath`, `volumeDevices` by
//! `devicePath`, `ownerReferences` by `uid`, `hostAliases` by `ip`, `conditions` by `type`); `finalizers`
//! merge as a set; every other list is replaced. Directives: `$patch: replace|delete|merge` on maps
//! and list elements, `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` and `$retainKeys`
//! are accepted and ignored (order is kept as merged).

use crate::status::ApiError;
use serde_json::{Map, Value};

/// A PATCH content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    /// The patch type of a `Content-Type`; server-side apply and unknown types are refused with 415.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::StrategicMerge),
            _ => Err(ApiError::unsupported_media_type("")),
        }
    }
}

/// Apply `patch` (the request body) to `current`.
pub fn apply(current: &Value, patch_type: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &ops.0).map_err(|e| {
                ApiError::invalid_patch(&format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = parse_object(body)?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::StrategicMerge => {
            let p = parse_object(body)?;
            Ok(strategic_merge(current, &p))
        }
    }
}

impl ApiError {
    fn invalid_patch(message: &str) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: message.to_owned(),
            details: None,
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "error decoding patch: a JSON object is required",
        ));
    }
    Ok(v)
}

/// Strategic merge of `patch` into `original` (the subset in the module docs).
pub fn strategic_merge(original: &Value, patch: &Value) -> Value {
    match merge_value(Some(original), patch, "") {
        Some(v) => v,
        None => Value::Object(Map::new()),
    }
}

/// Merge one value; `None` means "delete this value".
fn merge_value(original: Option<&Value>, patch: &Value, field: &str) -> Option<Value> {
    match patch {
        Value::Null => None,
        Value::Object(p) => {
            match p.get("$patch").and_then(Value::as_str) {
                Some("delete") => return None,
                Some("replace") => return Some(Value::Object(strip_directives(p))),
                _ => {}
            }
            let mut out = match original {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
                    continue;
                }
                if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(existing)), Value::Array(remove)) =
                        (out.get_mut(list_field), v)
                    {
                        existing.retain(|e| !remove.contains(e));
                    }
                    continue;
                }
                let merged = match v {
                    Value::Array(items) => merge_list(out.get(k), items, k),
                    other => merge_value(out.get(k), other, k),
                };
                match merged {
                    Some(m) => {
                        out.insert(k.clone(), m);
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => merge_list(original, items, field),
        other => Some(other.clone()),
    }
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The merge key Kubernetes declares for a list field, judged from the field name and its elements.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        "ports" => {
            let container = items.iter().any(|i| i.get("containerPort").is_some());
            Some(if container { "containerPort" } else { "port" })
        }
        _ => None,
    }
}

fn merge_list(original: Option<&Value>, items: &[Value], field: &str) -> Option<Value> {
    // `[{"$patch": "replace"}, …]` replaces the whole list.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let kept: Vec<Value> = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Some(Value::Array(kept));
    }
    let existing = match original {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    if field == "finalizers" {
        let mut out = existing;
        for i in items {
            if !out.contains(i) {
                out.push(i.clone());
            }
        }
        return Some(Value::Array(out));
    }
    let Some(key) = merge_key(field, items) else {
        let cleaned: Vec<Value> = items
            .iter()
            .map(|i| match i {
                Value::Object(m) => Value::Object(strip_directives(m)),
                other => other.clone(),
            })
            .collect();
        return Some(Value::Array(cleaned));
    };
    let mut out = existing;
    for item in items {
        let Some(id) = item.get(key) else {
            out.push(item.clone());
            continue;
        };
        let pos = out.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(p), true) => {
                out.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => {
                if let Some(m) = merge_value(Some(&out[p]), item, "") {
                    out[p] = m;
                }
            }
            (None, false) => {
                if let Some(m) = merge_value(None, item, "") {
                    out.push(m);
                }
            }
        }
    }
    Some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let orig = json!({"spec":{"containers":[
            {"name":"build","image":"a","env":[{"name":"X","value":"1"},{"name":"Y","value":"2"}]},
            {"name":"helper","image":"h"}]}});
        let patch = json!({"spec":{"containers":[
            {"name":"build","image":"b","env":[{"name":"Y","value":"3"},{"name":"X","$patch":"delete"}]}]}});
        let out = strategic_merge(&orig, &patch);
        assert_eq!(
            out,
            json!({"spec":{"containers":[
                {"name":"build","image":"b","env":[{"name":"Y","value":"3"}]},
                {"name":"helper","image":"h"}]}})
        );
    }

    #[test]
    fn null_deletes_and_plain_lists_are_replaced() {
        let orig =
            json!({"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"tolerations":[{"key":"x"}]}});
        let patch = json!({"metadata":{"labels":{"a":null}},"spec":{"tolerations":[{"key":"y"}]}});
        assert_eq!(
            strategic_merge(&orig, &patch),
            json!({"metadata":{"labels":{"b":"2"}},"spec":{"tolerations":[{"key":"y"}]}})
        );
    }

    #[test]
    fn owner_references_merge_by_uid_and_finalizers_as_a_set() {
        let orig =
            json!({"metadata":{"finalizers":["a"],"ownerReferences":[{"uid":"1","name":"p"}]}});
        let patch =
            json!({"metadata":{"finalizers":["a","b"],"ownerReferences":[{"uid":"2","name":"q"}]}});
        assert_eq!(
            strategic_merge(&orig, &patch),
            json!({"metadata":{"finalizers":["a","b"],
                "ownerReferences":[{"uid":"1","name":"p"},{"uid":"2","name":"q"}]}})
        );
    }

    #[test]
    fn directives_replace_and_delete_from_primitive_lists() {
        let orig = json!({"data":{"a":"1"},"metadata":{"finalizers":["a","b"]}});
        let patch = json!({"data":{"$patch":"replace","z":"9"},
            "metadata":{"$deleteFromPrimitiveList/finalizers":["a"],"$setElementOrder/finalizers":["b"]}});
        assert_eq!(
            strategic_merge(&orig, &patch),
            json!({"data":{"z":"9"},"metadata":{"finalizers":["b"]}})
        );
    }

    #[test]
    fn json_and_merge_patches() {
        let orig = json!({"a":{"b":1},"l":[1,2]});
        let out = apply(
            &orig,
            PatchType::Json,
            br#"[{"op":"replace","path":"/a/b","value":2},{"op":"add","path":"/l/-","value":3}]"#,
        )
        .expect("json patch");
        assert_eq!(out, json!({"a":{"b":2},"l":[1,2,3]}));
        let out = apply(&orig, PatchType::Merge, br#"{"a":null,"l":[9]}"#).expect("merge");
        assert_eq!(out, json!({"l":[9]}));
        let err = apply(
            &orig,
            PatchType::Json,
            br#"[{"op":"test","path":"/a/b","value":5}]"#,
        )
        .expect_err("test op fails");
        assert_eq!(err.code, 422);
        assert!(PatchType::from_content_type("application/apply-patch+yaml").is_err());
    }
}

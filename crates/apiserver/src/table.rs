//! Server-side printing: `meta.k8s.io/v1` `Table` answers for clients that ask for
//! `as=Table` (plain `kubectl get`), with the columns kubectl users know for pods, events,
//! namespaces and secrets, and Name/Age for the rest.

use crate::request::Query;
use crate::resource::ResourceType;
use crate::store::str_at;
use http::HeaderMap;
use serde_json::{Value, json};

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

fn column(name: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0})
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    let name = column("Name", "name", "Name must be unique within a namespace.");
    let age = column(
        "Age",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match rt.plural {
        "pods" => vec![
            name,
            column(
                "Ready",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "",
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "",
                "The number of times the containers in this pod have been restarted.",
            ),
            age,
        ],
        "events" => vec![
            column("Last Seen", "", "Time since the most recent occurrence."),
            column("Type", "", "Type of this event (Normal, Warning)."),
            column("Reason", "", "Why the event happened."),
            column("Object", "", "The object this event is about."),
            column("Message", "", "A human-readable description of the event."),
        ],
        "namespaces" => vec![
            name,
            column("Status", "", "The status of the namespace"),
            age,
        ],
        "nodes" => vec![
            name,
            column("Status", "", "The status of the node"),
            column("Roles", "", "The roles of the node"),
            age,
            column("Version", "", "Kubelet Version reported by the node."),
        ],
        "secrets" => vec![
            name,
            column("Type", "", "The type of secret"),
            column("Data", "", "The number of entries in the secret"),
            age,
        ],
        _ => vec![name, age],
    }
}

/// A duration as kubectl prints ages (`45s`, `3m12s`, `5h`, `2d3h`).
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 730 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

fn age_of(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".to_owned(),
    }
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let name = str_at(obj, "/metadata/name");
    let age = age_of(str_at(obj, "/metadata/creationTimestamp"));
    match rt.plural {
        "pods" => {
            let statuses = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready") == Some(&Value::Bool(true)))
                .count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum();
            let waiting = statuses
                .iter()
                .find_map(|s| s.pointer("/state/waiting/reason").and_then(Value::as_str));
            let mut status = waiting
                .unwrap_or_else(|| str_at(obj, "/status/phase"))
                .to_owned();
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".to_owned();
            }
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts),
                json!(age),
            ]
        }
        "events" => {
            let last = match str_at(obj, "/lastTimestamp") {
                "" => str_at(obj, "/metadata/creationTimestamp"),
                t => t,
            };
            vec![
                json!(age_of(last)),
                json!(str_at(obj, "/type")),
                json!(str_at(obj, "/reason")),
                json!(format!(
                    "{}/{}",
                    str_at(obj, "/involvedObject/kind").to_ascii_lowercase(),
                    str_at(obj, "/involvedObject/name")
                )),
                json!(str_at(obj, "/message")),
            ]
        }
        "namespaces" => vec![json!(name), json!(str_at(obj, "/status/phase")), json!(age)],
        "nodes" => {
            let ready = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["status"].as_str());
            let mut status = match ready {
                Some("True") => "Ready",
                Some(_) => "NotReady",
                None => "Unknown",
            }
            .to_owned();
            if obj.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<&str> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            let roles = if roles.is_empty() {
                "<none>".to_owned()
            } else {
                roles.join(",")
            };
            vec![
                json!(name),
                json!(status),
                json!(roles),
                json!(age),
                json!(str_at(obj, "/status/nodeInfo/kubeletVersion")),
            ]
        }
        "secrets" => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, serde_json::Map::len);
            vec![
                json!(name),
                json!(str_at(obj, "/type")),
                json!(n),
                json!(age),
            ]
        }
        _ => vec![json!(name), json!(age)],
    }
}

fn row(rt: &ResourceType, obj: &Value, query: &Query) -> Value {
    let mut r = json!({"cells": cells(rt, obj)});
    match query.get("includeObject") {
        Some("None") => {}
        Some("Object") => r["object"] = obj.clone(),
        _ => {
            r["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))});
        }
    }
    r
}

/// A Table of `items`; `meta` is the list metadata (resourceVersion, continue).
pub fn list(rt: &ResourceType, items: &[Value], meta: &Value, query: &Query) -> Value {
    let rows: Vec<Value> = items.iter().map(|o| row(rt, o, query)).collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns(rt), "rows": rows})
}

/// A Table of one object.
pub fn single(rt: &ResourceType, obj: &Value, query: &Query) -> Value {
    let meta = json!({"resourceVersion": str_at(obj, "/metadata/resourceVersion")});
    list(rt, std::slice::from_ref(obj), &meta, query)
}

/// The object of a watch event for a Table watch.
pub fn watch_object(rt: &ResourceType, obj: &Value, query: &Query) -> Value {
    single(rt, obj, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(190), "3m10s");
        assert_eq!(human_duration(3600 * 5), "5h");
        assert_eq!(human_duration(86400 * 3 + 3600), "3d1h");
    }
}

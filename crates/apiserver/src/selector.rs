//! Label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and field selectors
//! (`f=v`, `f==v`, `f!=v`, comma-separated), parsed and matched as kube-apiserver does.

use crate::resource::ResourceType;
use crate::status::ApiError;
use crate::store::{str_at, strs_at};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_label_req(part).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{part}', expected: valid label selector"
                ))
            })?);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). `None` when a label value
    /// is not a string or an operator is unknown: such a selector selects nothing.
    pub fn from_object(sel: &Value) -> Option<Self> {
        let mut reqs = Vec::new();
        let labels = sel.get("matchLabels").and_then(Value::as_object);
        for (k, v) in labels.into_iter().flatten() {
            reqs.push(LabelReq::Eq(k.clone(), v.as_str()?.to_owned()));
        }
        let expressions = sel.get("matchExpressions").and_then(Value::as_array);
        for e in expressions.into_iter().flatten() {
            let key = str_at(e, "/key").to_owned();
            let values = || strs_at(e, "/values").map(str::to_owned).collect();
            reqs.push(match str_at(e, "/operator") {
                "In" => LabelReq::In(key, values()),
                "NotIn" => LabelReq::NotIn(key, values()),
                "Exists" => LabelReq::Exists(key),
                "DoesNotExist" => LabelReq::NotExists(key),
                _ => return None,
            });
        }
        Some(Self(reqs))
    }

    /// Match an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches(&labels_of(obj))
    }
}

/// `metadata.labels` of an object as a map.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// Split on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn parse_label_req(part: &str) -> Option<LabelReq> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return valid_key(key).then(|| LabelReq::NotExists(key.to_owned()));
    }
    for (op, neg) in [(" notin ", true), (" in ", false)] {
        if let Some(idx) = part.find(op) {
            let key = part[..idx].trim();
            let rest = part[idx + op.len()..].trim();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            if !valid_key(key) {
                return None;
            }
            return Some(if neg {
                LabelReq::NotIn(key.to_owned(), values)
            } else {
                LabelReq::In(key.to_owned(), values)
            });
        }
    }
    if let Some((k, v)) = part.split_once("!=") {
        let k = k.trim();
        return valid_key(k).then(|| LabelReq::NotEq(k.to_owned(), v.trim().to_owned()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        let k = k.trim();
        return valid_key(k).then(|| LabelReq::Eq(k.to_owned(), v.trim().to_owned()));
    }
    valid_key(part).then(|| LabelReq::Exists(part.to_owned()))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A parsed `fieldSelector`: terms ANDed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, negate, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            terms.push((field.trim().to_owned(), negate, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// The name an exact `metadata.name=` term pins (used for authorization, as the apiserver does).
    pub fn exact_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, neg, _)| f == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }

    /// Refuse labels the resource does not support (400, like the apiserver).
    pub fn check(&self, rt: &ResourceType) -> Result<(), ApiError> {
        let probe = Value::Object(Default::default());
        for (field, _, _) in &self.0 {
            if rt.field_value(&probe, field).is_none() {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
        }
        Ok(())
    }

    pub fn matches(&self, rt: &ResourceType, obj: &Value) -> bool {
        self.0.iter().all(|(field, negate, want)| {
            let have = rt.field_value(obj, field).unwrap_or_default();
            (have == *want) != *negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors_support_equality_and_sets() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "app in (web, db)",
            "env notin (prod)",
            "tier",
            "!env",
            "app=web,tier in (front)",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).expect(s).matches(&l), "{s}");
        }
        let no = [
            "app=db",
            "app notin (web)",
            "env",
            "!tier",
            "app=web,tier=back",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).expect(s).matches(&l), "{s}");
        }
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn selector_objects_match_labels_and_expressions() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let matches = |sel: Value| LabelSelector::from_object(&sel).is_some_and(|s| s.matches(&l));
        let yes = [
            serde_json::json!({}),
            serde_json::json!({"matchLabels": {"app": "web"}}),
            serde_json::json!({"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["db", "web"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "tier", "operator": "Exists"},
                {"key": "env", "operator": "DoesNotExist"}]}),
        ];
        for sel in yes {
            assert!(matches(sel.clone()), "{sel}");
        }
        let no = [
            serde_json::json!({"matchLabels": {"app": "db"}}),
            serde_json::json!({"matchLabels": {"app": 1}}),
            serde_json::json!({"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In"}]}),
            serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}),
        ];
        for sel in no {
            assert!(!matches(sel.clone()), "{sel}");
        }
    }

    #[test]
    fn field_selectors_and_exact_names() {
        let fs = FieldSelector::parse("metadata.name=x,status.phase!=Running").expect("parse");
        assert_eq!(fs.exact_name(), Some("x"));
        let pods = crate::resource::find("", "v1", "pods").expect("pods");
        let pod = serde_json::json!({"metadata":{"name":"x"},"status":{"phase":"Pending"}});
        assert!(fs.matches(pods, &pod));
        assert!(
            FieldSelector::parse("spec.bogus=1")
                .expect("parse")
                .check(pods)
                .is_err()
        );
    }
}

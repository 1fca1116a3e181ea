//! Kubernetes `Status` errors with the exact `message`/`reason`/`details`/`code` shapes kube-apiserver
//! produces (k8s.io/apimachinery `api/errors`), so clients' error handling is exercised for real.

use serde_json::{Value, json};

/// A group-qualified resource as the apiserver names it in messages: `pods`,
/// `roles.rbac.authorization.k8s.io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }

    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// One field error of an `Invalid` (422) status (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`, …
    pub cause_type: &'static str,
    pub field: String,
    /// What follows `field: ` in the message, e.g. `Required value`.
    pub body: String,
}

impl FieldError {
    pub fn required(field: &str, detail: &str) -> Self {
        let body = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            cause_type: "FieldValueRequired",
            field: field.to_owned(),
            body,
        }
    }

    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self {
            cause_type: "FieldValueInvalid",
            field: field.to_owned(),
            body: format!("Invalid value: {}: {detail}", go_quote(value)),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            cause_type: "FieldValueForbidden",
            field: field.to_owned(),
            body: format!("Forbidden: {detail}"),
        }
    }

    pub fn duplicate(field: &str, value: &str) -> Self {
        Self {
            cause_type: "FieldValueDuplicate",
            field: field.to_owned(),
            body: format!("Duplicate value: {}", go_quote(value)),
        }
    }

    pub fn not_found(field: &str, value: &str) -> Self {
        Self {
            cause_type: "FieldValueNotFound",
            field: field.to_owned(),
            body: format!("Not found: {}", go_quote(value)),
        }
    }

    pub fn unsupported(field: &str, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        Self {
            cause_type: "FieldValueNotSupported",
            field: field.to_owned(),
            body: format!(
                "Unsupported value: {}: supported values: {}",
                go_quote(value),
                list.join(", ")
            ),
        }
    }
}

/// An API error answered as a `Status` object. It is also what the in-process store API returns, so a
/// test sees the same error a client would.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code} {reason})")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` as JSON (`None`: omitted).
    pub details: Option<Value>,
}

impl ApiError {
    fn with(code: u16, reason: &'static str, message: String, details: Option<Value>) -> Self {
        Self {
            code,
            reason,
            message,
            details,
        }
    }

    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::with(
            404,
            "NotFound",
            format!("{} {} not found", gr.qualified(), go_quote(name)),
            Some(details(gr, name)),
        )
    }

    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::with(
            409,
            "AlreadyExists",
            format!("{} {} already exists", gr.qualified(), go_quote(name)),
            Some(details(gr, name)),
        )
    }

    /// Optimistic-lock failure of an update (stale `resourceVersion`).
    pub fn conflict(gr: &GroupResource, name: &str, cause: &str) -> Self {
        Self::with(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {cause}",
                gr.qualified(),
                go_quote(name)
            ),
            Some(details(gr, name)),
        )
    }

    pub fn stale_update(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `<resource> "<name>" is forbidden: <cause>`; `name` empty for collections; `gr` empty (no
    /// resource) for non-resource URLs.
    pub fn forbidden(gr: Option<&GroupResource>, name: &str, cause: &str) -> Self {
        let (message, details) = match gr {
            None => (format!("forbidden: {cause}"), json!({})),
            Some(gr) if name.is_empty() => (
                format!("{} is forbidden: {cause}", gr.qualified()),
                details(gr, ""),
            ),
            Some(gr) => (
                format!(
                    "{} {} is forbidden: {cause}",
                    gr.qualified(),
                    go_quote(name)
                ),
                details(gr, name),
            ),
        };
        Self::with(403, "Forbidden", message, Some(details))
    }

    /// 422 Invalid. `group`/`kind` name the kind (`Pod`), not the resource.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.body))
            .collect();
        let message = match rendered.len() {
            0 => format!("{qualified} {} is invalid", go_quote(name)),
            1 => format!("{qualified} {} is invalid: {}", go_quote(name), rendered[0]),
            _ => format!(
                "{qualified} {} is invalid: [{}]",
                go_quote(name),
                rendered.join(", ")
            ),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.cause_type, "message": e.body, "field": e.field}))
            .collect();
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        d.insert("causes".into(), Value::Array(causes));
        Self::with(422, "Invalid", message, Some(Value::Object(d)))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with(400, "BadRequest", message.into(), None)
    }

    pub fn unauthorized() -> Self {
        Self::with(401, "Unauthorized", "Unauthorized".to_owned(), None)
    }

    pub fn method_not_supported(gr: &GroupResource, action: &str) -> Self {
        Self::with(
            405,
            "MethodNotAllowed",
            format!(
                "{action} is not supported on resources of kind {}",
                go_quote(&gr.qualified())
            ),
            Some(details(gr, "")),
        )
    }

    /// The 404 for a path nothing serves.
    pub fn no_route() -> Self {
        Self::with(
            404,
            "NotFound",
            "the server could not find the requested resource".to_owned(),
            Some(json!({})),
        )
    }

    /// The watch-cache 410 for a resourceVersion older than the retained history.
    pub fn expired(message: String) -> Self {
        Self::with(410, "Expired", message, None)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::with(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                if content_type.is_empty() {
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
                } else {
                    content_type
                }
            ),
            None,
        )
    }

    pub fn request_entity_too_large(limit: usize) -> Self {
        Self::with(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        )
    }

    /// 429 TooManyRequests (`errors.NewTooManyRequests`): `retryAfterSeconds` only when positive,
    /// then the `causes` as (type, message) pairs.
    pub fn too_many_requests(
        message: impl Into<String>,
        retry_after_seconds: u32,
        causes: &[(&str, String)],
    ) -> Self {
        let mut d = serde_json::Map::new();
        if retry_after_seconds > 0 {
            d.insert("retryAfterSeconds".into(), json!(retry_after_seconds));
        }
        if !causes.is_empty() {
            let causes: Vec<Value> = causes
                .iter()
                .map(|(t, m)| json!({"reason": t, "message": m}))
                .collect();
            d.insert("causes".into(), Value::Array(causes));
        }
        Self::with(
            429,
            "TooManyRequests",
            message.into(),
            Some(Value::Object(d)),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::with(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
            Some(json!({"causes": [{"message": message}]})),
        )
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = serde_json::Map::new();
        s.insert("kind".into(), json!("Status"));
        s.insert("apiVersion".into(), json!("v1"));
        s.insert("metadata".into(), json!({}));
        s.insert("status".into(), json!("Failure"));
        s.insert("message".into(), json!(self.message));
        s.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            s.insert("details".into(), d.clone());
        }
        s.insert("code".into(), json!(self.code));
        Value::Object(s)
    }
}

fn details(gr: &GroupResource, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !gr.group.is_empty() {
        d.insert("group".into(), json!(gr.group));
    }
    d.insert("kind".into(), json!(gr.resource));
    Value::Object(d)
}

/// A success `Status` (what deletes of most resources answer).
pub fn success_status(gr: &GroupResource, name: &str, uid: &str) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("name".into(), json!(name));
    if !gr.group.is_empty() {
        d.insert("group".into(), json!(gr.group));
    }
    d.insert("kind".into(), json!(gr.resource));
    if !uid.is_empty() {
        d.insert("uid".into(), json!(uid));
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

/// Go's `%q` for the strings that occur in API messages (names, paths, user names).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_the_apiserver_shape() {
        let e = ApiError::not_found(&GroupResource::new("", "pods"), "x");
        assert_eq!(
            e.to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"pods \"x\" not found","reason":"NotFound",
                   "details":{"name":"x","kind":"pods"},"code":404})
        );
    }

    #[test]
    fn grouped_resources_are_qualified_in_messages() {
        let e = ApiError::already_exists(
            &GroupResource::new("rbac.authorization.k8s.io", "roles"),
            "r",
        );
        assert_eq!(
            e.message,
            "roles.rbac.authorization.k8s.io \"r\" already exists"
        );
        assert_eq!(
            e.details,
            Some(json!({"name":"r","group":"rbac.authorization.k8s.io","kind":"roles"}))
        );
    }

    #[test]
    fn invalid_lists_several_causes_in_brackets() {
        let e = ApiError::invalid(
            "",
            "Pod",
            "p",
            &[
                FieldError::required("spec.containers", ""),
                FieldError::invalid("metadata.name", "P", "bad"),
            ],
        );
        assert_eq!(
            e.message,
            "Pod \"p\" is invalid: [spec.containers: Required value, metadata.name: Invalid value: \"P\": bad]"
        );
        assert_eq!(e.code, 422);
    }

    #[test]
    fn forbidden_for_paths_has_empty_details() {
        let e = ApiError::forbidden(None, "", "User \"u\" cannot get path \"/x\"");
        assert_eq!(e.message, "forbidden: User \"u\" cannot get path \"/x\"");
        assert_eq!(e.details, Some(json!({})));
    }
}

//! The resource catalogue: every resource the server knows (group, version, plural, kind, scope, verbs,
//! subresources), how its JSON is validated (decoded into the k8s-openapi type, the JSON kept), and which
//! field selectors it supports.

use crate::status::{ApiError, GroupResource};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How a resource is served.
#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Subresources as (name, kind, verbs).
    pub subresources: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// PUT of a missing object creates it (RBAC objects, events).
    pub create_on_update: bool,
    /// DELETE answers the object rather than a success `Status`.
    pub returns_deleted_object: bool,
    /// `status` is owned by the status subresource: main-resource writes keep the old status.
    pub has_status: bool,
    /// Create-only review resources (nothing is stored).
    pub review: bool,
    /// Decode into the k8s-openapi type; answers unknown field paths or the decode error.
    decode: fn(&Value) -> Result<Vec<String>, String>,
    /// Field-selector labels beyond `metadata.name`/`metadata.namespace`.
    fields: &'static [&'static str],
    /// `v1`, `rbac.authorization.k8s.io/v1`.
    api_version: &'static str,
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CRUD_NO_DC: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

use k8s_openapi::api::{
    authentication::v1 as authn, authorization::v1 as authz, core::v1 as core,
    policy::v1 as policy, rbac::v1 as rbac,
};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Whether a k8s-openapi scope is namespaced.
trait Scope {
    const NAMESPACED: bool;
}

impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

impl ResourceType {
    /// A plain CRUD resource served as k8s-openapi's `K` (names, scope and decoding come from the
    /// type); table entries set only what differs.
    const fn typed<K>() -> Self
    where
        K: k8s_openapi::Resource + DeserializeOwned,
        K::Scope: Scope,
    {
        Self {
            group: K::GROUP,
            version: K::VERSION,
            plural: K::URL_PATH_SEGMENT,
            kind: K::KIND,
            namespaced: K::Scope::NAMESPACED,
            short_names: &[],
            categories: &[],
            verbs: CRUD,
            subresources: &[],
            create_on_update: false,
            returns_deleted_object: false,
            has_status: false,
            review: false,
            decode: decode_as::<K>,
            fields: &[],
            api_version: K::API_VERSION,
        }
    }
}

static RESOURCES: &[ResourceType] = &[
    ResourceType {
        short_names: &["ns"],
        verbs: CRUD_NO_DC,
        subresources: &[
            ("finalize", "Namespace", &["update"]),
            ("status", "Namespace", STATUS_VERBS),
        ],
        returns_deleted_object: true,
        has_status: true,
        fields: &["status.phase"],
        ..ResourceType::typed::<core::Namespace>()
    },
    // The process kubelet registers its one node here; the scheduler reads labels and taints.
    ResourceType {
        short_names: &["no"],
        subresources: &[("status", "Node", STATUS_VERBS)],
        returns_deleted_object: true,
        has_status: true,
        fields: &["spec.unschedulable"],
        ..ResourceType::typed::<core::Node>()
    },
    ResourceType {
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            ("attach", "PodAttachOptions", &["create", "get"]),
            ("binding", "Binding", &["create"]),
            ("eviction", "Eviction", &["create"]),
            ("exec", "PodExecOptions", &["create", "get"]),
            ("log", "Pod", &["get"]),
            ("portforward", "PodPortForwardOptions", &["create", "get"]),
            ("status", "Pod", STATUS_VERBS),
        ],
        returns_deleted_object: true,
        has_status: true,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..ResourceType::typed::<core::Pod>()
    },
    ResourceType {
        fields: &["type"],
        ..ResourceType::typed::<core::Secret>()
    },
    ResourceType {
        short_names: &["cm"],
        ..ResourceType::typed::<core::ConfigMap>()
    },
    ResourceType {
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[
            (
                "proxy",
                "ServiceProxyOptions",
                &["create", "delete", "get", "patch", "update"],
            ),
            ("status", "Service", STATUS_VERBS),
        ],
        returns_deleted_object: true,
        has_status: true,
        ..ResourceType::typed::<core::Service>()
    },
    ResourceType {
        short_names: &["sa"],
        subresources: &[("token", "TokenRequest", &["create"])],
        returns_deleted_object: true,
        ..ResourceType::typed::<core::ServiceAccount>()
    },
    ResourceType {
        short_names: &["ev"],
        create_on_update: true,
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ..ResourceType::typed::<core::Event>()
    },
    ResourceType {
        create_on_update: true,
        ..ResourceType::typed::<rbac::Role>()
    },
    ResourceType {
        create_on_update: true,
        ..ResourceType::typed::<rbac::RoleBinding>()
    },
    ResourceType {
        create_on_update: true,
        ..ResourceType::typed::<rbac::ClusterRole>()
    },
    ResourceType {
        create_on_update: true,
        ..ResourceType::typed::<rbac::ClusterRoleBinding>()
    },
    ResourceType {
        short_names: &["pdb"],
        subresources: &[("status", "PodDisruptionBudget", STATUS_VERBS)],
        has_status: true,
        ..ResourceType::typed::<policy::PodDisruptionBudget>()
    },
    ResourceType {
        verbs: &["create"],
        review: true,
        ..ResourceType::typed::<authz::SelfSubjectAccessReview>()
    },
    ResourceType {
        verbs: &["create"],
        review: true,
        ..ResourceType::typed::<authn::SelfSubjectReview>()
    },
];

/// Every served resource.
pub fn all() -> &'static [ResourceType] {
    RESOURCES
}

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource by group and plural (any version).
pub fn by_plural(group: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// The resource whose objects have this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The resource of a k8s-openapi type.
pub fn of<K: k8s_openapi::Resource>() -> Option<&'static ResourceType> {
    find(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
}

/// The API groups served, in discovery order: (group, version).
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

impl ResourceType {
    /// `v1`, `rbac.authorization.k8s.io/v1`.
    pub fn api_version(&self) -> &'static str {
        self.api_version
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.group, self.plural)
    }

    /// The store key's resource part: `pods`, `roles.rbac.authorization.k8s.io`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|(name, _, _)| *name == sub)
    }

    pub fn supports_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Validate `obj` as this resource's k8s-openapi type. Returns unknown field paths (for
    /// `fieldValidation`), or a 400 with the apiserver's "cannot be handled as" message.
    pub fn decode(&self, obj: &Value) -> Result<Vec<String>, ApiError> {
        (self.decode)(obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version {} cannot be handled as a {}: {e}",
                self.kind,
                crate::status::go_quote(self.version),
                self.kind
            ))
        })
    }

    /// The value of a field-selector label on `obj`, or `None` if the label is not supported.
    pub fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let text = |ptr: &str| -> String {
            match obj.pointer(ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        };
        match field {
            "metadata.name" => Some(text("/metadata/name")),
            "metadata.namespace" => Some(text("/metadata/namespace")),
            f if !self.fields.contains(&f) => None,
            "spec.hostNetwork" => Some(match obj.pointer("/spec/hostNetwork") {
                Some(Value::Bool(true)) => "true".to_owned(),
                _ => "false".to_owned(),
            }),
            "source" => Some(text("/source/component")),
            f => Some(text(&format!("/{}", f.replace('.', "/")))),
        }
    }
}

fn decode_as<T: DeserializeOwned>(obj: &Value) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    let result: Result<T, _> = serde_ignored::deserialize(obj, |path| {
        unknown.push(render_path(&path));
    });
    match result {
        Ok(_) => Ok(unknown),
        Err(e) => Err(e.to_string()),
    }
}

fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        Path::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let pods = find("", "v1", "pods").expect("pods");
        let unknown = pods
            .decode(
                &json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
                "spec":{"containers":[{"name":"c","image":"i","bogus":1}],"extra":true}}),
            )
            .expect("decodes");
        assert_eq!(unknown, vec!["spec.containers[0].bogus", "spec.extra"]);
    }

    #[test]
    fn type_errors_are_bad_requests() {
        let pods = find("", "v1", "pods").expect("pods");
        let err = pods
            .decode(&json!({"spec":{"containers":"no"}}))
            .expect_err("must fail");
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("Pod in version \"v1\" cannot be handled as a Pod: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn field_selectors_know_their_labels() {
        let events = find("", "v1", "events").expect("events");
        let ev = json!({"involvedObject":{"name":"p"},"type":"Warning"});
        assert_eq!(
            events.field_value(&ev, "involvedObject.name").as_deref(),
            Some("p")
        );
        assert_eq!(events.field_value(&ev, "type").as_deref(), Some("Warning"));
        assert_eq!(events.field_value(&ev, "status.phase"), None);
    }
}

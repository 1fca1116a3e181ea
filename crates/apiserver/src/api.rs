//! The REST API: dispatch of an authenticated, authorized request to discovery, the object verbs
//! (get, list, watch, create, update, patch, delete, deletecollection), the status subresource, the
//! review resources (SelfSubjectAccessReview, SelfSubjectReview), `serviceaccounts/token`,
//! `pods/binding` and `pods/eviction` (which respects PodDisruptionBudgets), and the pluggable streaming subresources (`pods/log`,
//! `pods/exec`, `pods/attach`, `pods/portforward`).

use crate::auth::UserInfo;
use crate::discovery;
use crate::patch::{self, PatchType};
use crate::rbac::{Attributes, Authorizer};
use crate::request::{Query, RequestInfo};
use crate::resource::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{Body, Response, Shared, SubresourceRequest};
use crate::status::{self, ApiError, FieldError};
use crate::store::{
    self, DeleteOptions, Deleted, FieldValidation, Propagation, WriteOptions, str_at,
};
use crate::table;
use crate::watch;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) fn json_response(code: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = http::Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.to_status())
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", status::go_quote(w));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn text_response(text: &'static str) -> Response {
    let mut resp = http::Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Non-resource paths: version, health, discovery, OpenAPI.
pub(crate) fn non_resource(shared: &Shared, path: &str) -> Response {
    let path = path.trim_end_matches('/');
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let found = match parts.as_slice() {
        ["version"] => Some(discovery::version(shared.options.version)),
        ["healthz"] | ["livez"] | ["readyz"] => return text_response("ok"),
        ["api"] => Some(discovery::api_versions(&shared.server_address)),
        ["api", v] => discovery::resource_list("", v),
        ["apis"] => Some(discovery::api_group_list()),
        ["apis", g] => discovery::api_group(g),
        ["apis", g, v] => discovery::resource_list(g, v),
        ["openapi", "v3"] => Some(discovery::openapi_v3_root()),
        ["openapi", "v3", rest @ ..] => {
            discovery::openapi_v3_doc(&rest.join("/"), shared.options.version)
        }
        _ => None,
    };
    match found {
        Some(v) => json_response(200, &v),
        None => error_response(&ApiError::no_route()),
    }
}

/// The context of one resource request.
pub(crate) struct Call<'a> {
    pub shared: &'a Arc<Shared>,
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub user: &'a UserInfo,
    pub headers: &'a HeaderMap,
}

/// Serve a resource request.
pub(crate) async fn resource(call: Call<'_>, req: http::Request<Incoming>) -> Response {
    match resource_inner(call, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn resource_inner(
    call: Call<'_>,
    req: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let info = call.info;
    let Some(rt) = resource::find(&info.group, &info.version, &info.resource) else {
        return Err(ApiError::no_route());
    };
    if !info.extra.is_empty() {
        return Err(ApiError::no_route());
    }
    if !info.subresource.is_empty() && !rt.has_subresource(&info.subresource) {
        return Err(ApiError::no_route());
    }
    // Cluster-scoped resources have no namespace (a namespace object's own name aside).
    let namespace = if rt.namespaced {
        info.namespace.clone()
    } else {
        if !info.namespace.is_empty() && rt.plural != "namespaces" {
            return Err(ApiError::no_route());
        }
        String::new()
    };
    let store = &call.shared.store;
    let gr = rt.group_resource();

    // Streaming subresources belong to the kubelet part.
    if matches!(
        info.subresource.as_str(),
        "log" | "exec" | "attach" | "portforward"
    ) {
        return Ok(streaming(call.shared, rt, &namespace, info, call.user, req).await);
    }

    if !rt.supports_verb(&info.verb) && info.subresource.is_empty() {
        return Err(ApiError::method_not_supported(&gr, &info.verb));
    }
    if rt.namespaced && namespace.is_empty() && !matches!(info.verb.as_str(), "list" | "watch") {
        return Err(ApiError::no_route());
    }

    match (info.verb.as_str(), info.subresource.as_str()) {
        ("get", "" | "status") => {
            let obj = store
                .get(&rt.qualified(), &namespace, &info.name)
                .ok_or_else(|| ApiError::not_found(&gr, &info.name))?;
            if table::wanted(call.headers) {
                return Ok(json_response(200, &table::single(rt, &obj, call.query)));
            }
            Ok(json_response(200, &obj))
        }
        ("list", "") => list(call.shared, rt, &namespace, call.query, call.headers),
        ("watch", "") => {
            let params = watch::Params::from_query(call.query, info)?;
            params.check(rt)?;
            let ns = (!namespace.is_empty()).then_some(namespace);
            let as_table = table::wanted(call.headers).then(|| call.query.clone());
            Ok(watch::serve(call.shared.clone(), rt, ns, params, as_table))
        }
        ("create", "") => {
            let body = read_json(req).await?;
            if rt.review {
                return review(call.shared, rt, call.user, body);
            }
            let opts = write_options(call.query)?;
            let w = store.create(rt, &namespace, body, &opts)?;
            Ok(with_warnings(json_response(201, &w.object), &w.warnings))
        }
        ("create", "token") => token_request(call.shared, &namespace, &info.name, req).await,
        ("create", "binding") => binding(call.shared, rt, &namespace, &info.name, req).await,
        ("create", "eviction") => eviction(call.shared, rt, &namespace, &info.name, req).await,
        ("update", sub @ ("" | "status")) => {
            let body = read_json(req).await?;
            let opts = write_options(call.query)?;
            let sub = (!sub.is_empty()).then_some(sub);
            let w = store.update(rt, &namespace, &info.name, body, sub, &opts)?;
            let code = if w.created { 201 } else { 200 };
            Ok(with_warnings(json_response(code, &w.object), &w.warnings))
        }
        ("patch", sub @ ("" | "status")) => {
            let patch_type = PatchType::from_content_type(
                call.headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
            )?;
            let body = read_body(req).await?;
            let opts = write_options(call.query)?;
            let current = store
                .get(&rt.qualified(), &namespace, &info.name)
                .ok_or_else(|| ApiError::not_found(&gr, &info.name))?;
            let patched = patch::apply(&current, patch_type, &body)?;
            let sub = (!sub.is_empty()).then_some(sub);
            let w = store.update(rt, &namespace, &info.name, patched, sub, &opts)?;
            Ok(with_warnings(json_response(200, &w.object), &w.warnings))
        }
        ("delete", "") => {
            let body = read_body(req).await?;
            let opts = delete_options(call.query, &body)?;
            match store.delete(rt, &namespace, &info.name, &opts)? {
                Deleted::Gone(obj) if !rt.returns_deleted_object => Ok(json_response(
                    200,
                    &status::success_status(&gr, &info.name, str_at(&obj, "/metadata/uid")),
                )),
                Deleted::Gone(obj) | Deleted::Pending(obj) => Ok(json_response(200, &obj)),
            }
        }
        ("deletecollection", "") => {
            let body = read_body(req).await?;
            let opts = delete_options(call.query, &body)?;
            let labels = LabelSelector::parse(call.query.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(call.query.get("fieldSelector").unwrap_or_default())?;
            fields.check(rt)?;
            let (items, _) = store.list(rt, Some(&namespace));
            let mut deleted = Vec::new();
            for obj in items
                .into_iter()
                .filter(|o| labels.matches_object(o) && fields.matches(rt, o))
            {
                let name = str_at(&obj, "/metadata/name").to_owned();
                match store.delete(rt, &namespace, &name, &opts) {
                    Ok(Deleted::Gone(o) | Deleted::Pending(o)) => deleted.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let rv = store.resource_version().to_string();
            Ok(json_response(
                200,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": rv}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_supported(
            &gr,
            &format!("{} on {}", info.verb, info.subresource),
        )),
    }
}

fn list(
    shared: &Shared,
    rt: &'static ResourceType,
    namespace: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?;
    fields.check(rt)?;
    let ns = (!namespace.is_empty()).then_some(namespace);
    let (items, rv) = shared.store.list(rt, ns);
    if query.get("resourceVersionMatch") == Some("Exact")
        && let Some(want) = query.get("resourceVersion")
        && want != rv.to_string()
    {
        // Only the latest state is kept, so an exact older read cannot be served.
        return Err(ApiError::expired(format!(
            "too old resource version: {want} ({rv})"
        )));
    }
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches(rt, o))
        .collect();
    // Pagination: `continue` is the key to start after.
    if let Some(token) = query.get("continue").filter(|t| !t.is_empty()) {
        let after = decode_continue(token)?;
        items.retain(|o| object_key(o) > after);
    }
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(limit) = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            meta["continue"] = json!(encode_continue(&object_key(last)));
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    if table::wanted(headers) {
        return Ok(json_response(200, &table::list(rt, &items, &meta, query)));
    }
    Ok(json_response(
        200,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
            "metadata": meta, "items": items}),
    ))
}

fn object_key(obj: &Value) -> String {
    format!(
        "{}/{}",
        str_at(obj, "/metadata/namespace"),
        str_at(obj, "/metadata/name")
    )
}

fn encode_continue(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<String, ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(bad)
}

pub(crate) fn write_options(query: &Query) -> Result<WriteOptions, ApiError> {
    let field_validation = match query.get("fieldValidation") {
        None | Some("") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Warn") => FieldValidation::Warn,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {}",
                status::go_quote(other)
            )));
        }
    };
    Ok(WriteOptions {
        field_validation,
        dry_run: query.get("dryRun") == Some("All"),
    })
}

fn delete_options(query: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else if body.starts_with(b"k8s\x00") {
        crate::proto::decode_object(body)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let propagation = query
        .get("propagationPolicy")
        .map(str::to_owned)
        .or_else(|| {
            parsed
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    opts.propagation = match propagation.as_deref() {
        None | Some("") | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[FieldError::unsupported(
                    "propagationPolicy",
                    other,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
    };
    if parsed.get("orphanDependents") == Some(&Value::Bool(true)) {
        opts.propagation = Propagation::Orphan;
    }
    opts.grace_period_seconds = query
        .get("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| parsed.get("gracePeriodSeconds").and_then(Value::as_i64));
    opts.precondition_uid = parsed
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_owned);
    opts.precondition_resource_version = parsed
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let dry = parsed
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    opts.dry_run = dry || query.get("dryRun") == Some("All");
    Ok(opts)
}

pub(crate) async fn read_body(req: http::Request<Incoming>) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::request_entity_too_large(MAX_BODY))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error reading the request body: {e}"
        ))),
    }
}

async fn read_json(req: http::Request<Incoming>) -> Result<Value, ApiError> {
    let yaml = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("yaml"));
    let proto = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("protobuf"));
    let body = read_body(req).await?;
    if proto {
        return crate::proto::decode_object(&body);
    }
    if yaml {
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// SelfSubjectAccessReview and SelfSubjectReview: answered, never stored.
fn review(
    shared: &Shared,
    rt: &ResourceType,
    user: &UserInfo,
    mut body: Value,
) -> Result<Response, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the review must be a JSON object"));
    }
    rt.decode(&body)?;
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    let meta = store::meta_mut(&mut body);
    meta.insert("creationTimestamp".into(), Value::Null);
    match rt.plural {
        "selfsubjectreviews" => {
            let mut info = json!({"username": user.username, "groups": user.groups});
            if !user.uid.is_empty() {
                info["uid"] = json!(user.uid);
            }
            body["status"] = json!({"userInfo": info});
            Ok(json_response(201, &body))
        }
        _ => {
            let spec = body.get("spec").cloned().unwrap_or(json!({}));
            let ra = spec.get("resourceAttributes").filter(|v| !v.is_null());
            let nra = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
            let attrs = match (ra, nra) {
                (Some(ra), None) => Attributes::resource(
                    user,
                    str_at(ra, "/verb"),
                    str_at(ra, "/group"),
                    str_at(ra, "/resource"),
                    str_at(ra, "/subresource"),
                    str_at(ra, "/namespace"),
                    str_at(ra, "/name"),
                ),
                (None, Some(nra)) => {
                    Attributes::non_resource(user, str_at(nra, "/verb"), str_at(nra, "/path"))
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt.group,
                        rt.kind,
                        "",
                        &[FieldError::invalid(
                            "spec.resourceAttributes",
                            "null",
                            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                        )],
                    ));
                }
            };
            let decision = Authorizer::new(&shared.store).authorize(&attrs);
            let mut status = json!({"allowed": decision.allowed});
            if !decision.reason.is_empty() {
                status["reason"] = json!(decision.reason);
            }
            body["status"] = status;
            Ok(json_response(201, &body))
        }
    }
}

/// `serviceaccounts/<name>/token`: a bound token for the account, as `kubectl create token` asks.
async fn token_request(
    shared: &Shared,
    namespace: &str,
    name: &str,
    req: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let body = read_json(req).await?;
    if shared
        .store
        .get("serviceaccounts", namespace, name)
        .is_none()
    {
        return Err(ApiError::not_found(
            &status::GroupResource::new("", "serviceaccounts"),
            name,
        ));
    }
    let expiration = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let token = shared.authn.add_service_account_token(namespace, name);
    let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
    spec["expirationSeconds"] = json!(expiration);
    if spec.get("audiences").is_none() {
        spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    Ok(json_response(
        201,
        &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": store::now_rfc3339(0)},
            "spec": spec,
            "status": {"token": token.expose(), "expirationTimestamp": store::now_rfc3339(expiration)}}),
    ))
}

/// `pods/<name>/binding`: assign the pod to a node (what a scheduler does).
async fn binding(
    shared: &Shared,
    rt: &'static ResourceType,
    namespace: &str,
    name: &str,
    req: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let body = read_json(req).await?;
    let node = str_at(&body, "/target/name").to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            &[FieldError::required("target.name", "")],
        ));
    }
    let pod = shared
        .store
        .get(&rt.qualified(), namespace, name)
        .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
    let current = str_at(&pod, "/spec/nodeName");
    if !current.is_empty() {
        return Err(ApiError::conflict(
            &rt.group_resource(),
            name,
            &format!(
                "pod {name} is already assigned to node {}",
                status::go_quote(current)
            ),
        ));
    }
    shared.store.mutate(rt, namespace, name, |p| {
        p["spec"]["nodeName"] = json!(node);
    })?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `pods/<name>/eviction`, as kube-apiserver's eviction REST does it: a pod that is pending,
/// finished or already being deleted is evicted at once; otherwise the PodDisruptionBudgets of its
/// namespace that select it are checked (more than one is a 500, as there). With no disruption
/// controller here, a budget's status is computed on the spot from the pods it selects: healthy pods
/// are running, Ready and not being deleted; `minAvailable` or `maxUnavailable` (a number or a
/// percentage of the selected pods) gives how many must stay healthy. An eviction that would leave
/// fewer answers 429 `TooManyRequests` with the `DisruptionBudget` cause; an unhealthy pod may go
/// while the budget is met. An allowed eviction sets the pod's `DisruptionTarget=True` condition
/// (`EvictionByEvictionAPI`, "Eviction API: evicting") and deletes it with the eviction's options.
async fn eviction(
    shared: &Shared,
    rt: &'static ResourceType,
    namespace: &str,
    name: &str,
    req: http::Request<Incoming>,
) -> Result<Response, ApiError> {
    let body = read_json(req).await?;
    let opts_body = body
        .get("deleteOptions")
        .map(|d| serde_json::to_vec(d).unwrap_or_default())
        .unwrap_or_default();
    let opts = delete_options(&Query::default(), &opts_body)?;
    let pod = shared
        .store
        .get(&rt.qualified(), namespace, name)
        .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
    if !can_ignore_budgets(&pod) {
        check_budgets(shared, rt, namespace, &pod)?;
    }
    if !opts.dry_run {
        let now = store::now_rfc3339(0);
        shared.store.mutate(rt, namespace, name, |p| {
            crate::kubelet::set_condition(
                p,
                "DisruptionTarget",
                "True",
                Some("EvictionByEvictionAPI"),
                Some("Eviction API: evicting"),
                &now,
            );
        })?;
    }
    shared.store.delete(rt, namespace, name, &opts)?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Pods an eviction deletes without asking their budgets: not running yet, finished, or already
/// being deleted.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(
        str_at(pod, "/status/phase"),
        "" | "Pending" | "Succeeded" | "Failed"
    ) || !str_at(pod, "/metadata/deletionTimestamp").is_empty()
}

/// Running, Ready and not being deleted: what a disruption budget counts as available.
fn healthy(pod: &Value) -> bool {
    str_at(pod, "/status/phase") == "Running"
        && str_at(pod, "/metadata/deletionTimestamp").is_empty()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
            })
}

/// A budget's `spec.selector` (policy/v1: an empty selector selects every pod, a missing one none).
fn budget_selector(budget: &Value) -> Option<LabelSelector> {
    budget
        .pointer("/spec/selector")
        .filter(|s| s.is_object())
        .and_then(LabelSelector::from_object)
}

/// A `minAvailable`/`maxUnavailable` value against `total` pods (percentages round up, as the
/// disruption controller does).
fn scaled(value: &Value, total: i64) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return Some(n);
    }
    let pct: i64 = value.as_str()?.strip_suffix('%')?.trim().parse().ok()?;
    Some((pct * total + 99) / 100)
}

/// The disruption-budget check of an eviction of `pod`.
fn check_budgets(
    shared: &Shared,
    rt: &'static ResourceType,
    namespace: &str,
    pod: &Value,
) -> Result<(), ApiError> {
    let Some(budgets_rt) = resource::by_plural("policy", "poddisruptionbudgets") else {
        return Ok(());
    };
    let labels = crate::selector::labels_of(pod);
    let (budgets, _) = shared.store.list(budgets_rt, Some(namespace));
    let matching: Vec<(&Value, LabelSelector)> = budgets
        .iter()
        .filter_map(|b| Some((b, budget_selector(b)?)))
        .filter(|(_, selector)| selector.matches(&labels))
        .collect();
    let (budget, selector) = match matching.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let (pods, _) = shared.store.list(rt, Some(namespace));
    let selected: Vec<&Value> = pods
        .iter()
        .filter(|p| selector.matches(&crate::selector::labels_of(p)))
        .collect();
    let expected = i64::try_from(selected.len()).unwrap_or(i64::MAX);
    let current = i64::try_from(selected.iter().filter(|p| healthy(p)).count()).unwrap_or(i64::MAX);
    let spec = budget.get("spec").cloned().unwrap_or(Value::Null);
    let desired = if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        (expected - scaled(max, expected).unwrap_or(0)).max(0)
    } else if let Some(min) = spec.get("minAvailable").filter(|v| !v.is_null()) {
        scaled(min, expected).unwrap_or(0)
    } else {
        0
    };
    // An unhealthy pod does not lower the healthy count: it may go while the budget is met.
    if !healthy(pod) && current >= desired {
        return Ok(());
    }
    if current - desired > 0 {
        return Ok(());
    }
    let budget_name = str_at(budget, "/metadata/name");
    Err(ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
        0,
        &[(
            "DisruptionBudget",
            format!(
                "The disruption budget {budget_name} needs {desired} healthy pods and has {current} currently"
            ),
        )],
    ))
}

async fn streaming(
    shared: &Arc<Shared>,
    rt: &'static ResourceType,
    namespace: &str,
    info: &RequestInfo,
    user: &UserInfo,
    req: http::Request<Incoming>,
) -> Response {
    let key = (rt.plural.to_owned(), info.subresource.clone());
    let Some(handler) = shared.handlers.get(&key).cloned() else {
        return error_response(&ApiError::bad_request(format!(
            "{}/{} is not served: no kubelet is attached to this test API server (register a handler with Options::subresource_handler)",
            rt.plural, info.subresource
        )));
    };
    if shared
        .store
        .get(&rt.qualified(), namespace, &info.name)
        .is_none()
    {
        return error_response(&ApiError::not_found(&rt.group_resource(), &info.name));
    }
    handler
        .handle(SubresourceRequest {
            request: req,
            user: user.clone(),
            namespace: namespace.to_owned(),
            name: info.name.clone(),
            subresource: info.subresource.clone(),
            store: shared.store.clone(),
        })
        .await
}

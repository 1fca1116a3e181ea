//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) for the kinds kubectl's typed
//! clients send that way — SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectReview
//! (`kubectl auth whoami`), TokenRequest (`kubectl create token`), and the simple objects of
//! `kubectl create namespace|serviceaccount|secret generic|configmap` — decoded into the same JSON
//! the rest of the server works with. Responses stay JSON, which those clients accept.

use crate::status::ApiError;
use serde_json::{Map, Value, json};

/// How a protobuf field maps to JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    RepeatedStr,
    /// `map<string,string>` (repeated entries of key = 1, value = 2).
    MapStr,
    /// `map<string,bytes>`, base64 in JSON.
    MapBytes,
    RepeatedMsg(&'static [Field]),
    Msg(&'static [Field]),
}

type Field = (u64, &'static str, Kind);

const OBJECT_META: &[Field] = &[
    (1, "name", Kind::Str),
    (2, "generateName", Kind::Str),
    (3, "namespace", Kind::Str),
    (11, "labels", Kind::MapStr),
    (12, "annotations", Kind::MapStr),
    (14, "finalizers", Kind::RepeatedStr),
];
const LOCAL_REF: &[Field] = &[(1, "name", Kind::Str)];
const OBJECT_REF: &[Field] = &[
    (1, "kind", Kind::Str),
    (2, "namespace", Kind::Str),
    (3, "name", Kind::Str),
];
const NAMESPACE: &[Field] = &[(1, "metadata", Kind::Msg(OBJECT_META))];
const SERVICE_ACCOUNT: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "secrets", Kind::RepeatedMsg(OBJECT_REF)),
    (3, "imagePullSecrets", Kind::RepeatedMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", Kind::Bool),
];
const CONFIG_MAP: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapStr),
    (3, "binaryData", Kind::MapBytes),
    (4, "immutable", Kind::Bool),
];
const SECRET: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "data", Kind::MapBytes),
    (3, "type", Kind::Str),
    (4, "stringData", Kind::MapStr),
    (5, "immutable", Kind::Bool),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    (1, "namespace", Kind::Str),
    (2, "verb", Kind::Str),
    (3, "group", Kind::Str),
    (4, "version", Kind::Str),
    (5, "resource", Kind::Str),
    (6, "subresource", Kind::Str),
    (7, "name", Kind::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[(1, "path", Kind::Str), (2, "verb", Kind::Str)];
const SSAR_SPEC: &[Field] = &[
    (1, "resourceAttributes", Kind::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Kind::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
];
const SSAR: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(SSAR_SPEC)),
];
const SSR: &[Field] = &[(1, "metadata", Kind::Msg(OBJECT_META))];
const BOUND_OBJECT: &[Field] = &[
    (1, "kind", Kind::Str),
    (2, "apiVersion", Kind::Str),
    (3, "name", Kind::Str),
    (4, "uid", Kind::Str),
];
const TOKEN_SPEC: &[Field] = &[
    (1, "audiences", Kind::RepeatedStr),
    (3, "boundObjectRef", Kind::Msg(BOUND_OBJECT)),
    (4, "expirationSeconds", Kind::Int),
];
const TOKEN_REQUEST: &[Field] = &[
    (1, "metadata", Kind::Msg(OBJECT_META)),
    (2, "spec", Kind::Msg(TOKEN_SPEC)),
];
const TYPE_META: &[Field] = &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)];
const DELETE_OPTIONS: &[Field] = &[
    (1, "gracePeriodSeconds", Kind::Int),
    (4, "propagationPolicy", Kind::Str),
    (5, "dryRun", Kind::RepeatedStr),
];

const MAGIC: &[u8] = b"k8s\x00";

fn bad(detail: &str) -> ApiError {
    ApiError::bad_request(format!("unable to decode the protobuf body: {detail}"))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        let end = self.pos.checked_add(len).ok_or_else(|| bad("length"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated field"))?;
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            _ => Err(bad("unsupported wire type")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), ApiError> {
        if self.pos + n > self.buf.len() {
            return Err(bad("truncated field"));
        }
        self.pos += n;
        Ok(())
    }
}

fn decode(buf: &[u8], schema: &[Field]) -> Result<Map<String, Value>, ApiError> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Map::new();
    while r.pos < buf.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, name, kind)) = schema.iter().find(|(n, _, _)| *n == num) else {
            r.skip(wire)?;
            continue;
        };
        let value = match (kind, wire) {
            (Kind::Str, 2) => {
                // Go's generated code writes empty strings too; JSON omits them.
                let text = String::from_utf8_lossy(r.bytes()?).into_owned();
                if text.is_empty() {
                    continue;
                }
                json!(text)
            }
            (Kind::Int, 0) => json!(r.varint()? as i64),
            (Kind::Bool, 0) => json!(r.varint()? != 0),
            (Kind::MapStr | Kind::MapBytes, 2) => {
                let (key, raw) = map_entry(r.bytes()?)?;
                let value = if matches!(kind, Kind::MapBytes) {
                    use base64::Engine as _;
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(String::from_utf8_lossy(raw))
                };
                let map = out.entry((*name).to_owned()).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, value);
                }
                continue;
            }
            (Kind::RepeatedMsg(inner), 2) => {
                let item = Value::Object(decode(r.bytes()?, inner)?);
                let entry = out.entry((*name).to_owned()).or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(item);
                }
                continue;
            }
            (Kind::RepeatedStr, 2) => {
                let s = json!(String::from_utf8_lossy(r.bytes()?));
                let entry = out.entry((*name).to_owned()).or_insert_with(|| json!([]));
                if let Some(a) = entry.as_array_mut() {
                    a.push(s);
                }
                continue;
            }
            (Kind::Msg(inner), 2) => Value::Object(decode(r.bytes()?, inner)?),
            _ => return Err(bad(&format!("field {name} has an unexpected wire type"))),
        };
        out.insert((*name).to_owned(), value);
    }
    Ok(out)
}

/// One map entry: key = 1, value = 2 (bytes kept as they are).
fn map_entry(buf: &[u8]) -> Result<(String, &[u8]), ApiError> {
    let mut r = Reader { buf, pos: 0 };
    let (mut key, mut value): (String, &[u8]) = (String::new(), &[]);
    while r.pos < buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => key = String::from_utf8_lossy(r.bytes()?).into_owned(),
            (2, 2) => value = r.bytes()?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value))
}

/// The `runtime.Unknown` envelope: its type meta and the raw object bytes.
fn envelope(buf: &[u8]) -> Result<(Map<String, Value>, &[u8]), ApiError> {
    let mut r = Reader { buf, pos: 0 };
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    while r.pos < buf.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => type_meta = decode(r.bytes()?, TYPE_META)?,
            (2, 2) => raw = r.bytes()?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((type_meta, raw))
}

/// Decode a protobuf-encoded object (with the `k8s\0` envelope) of one of the supported kinds.
pub fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the body does not start with the Kubernetes protobuf magic"))?;
    let (type_meta, raw) = envelope(inner)?;
    let text = |k: &str| {
        type_meta
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let schema = match kind.as_str() {
        "SelfSubjectAccessReview" => SSAR,
        "SelfSubjectReview" => SSR,
        "TokenRequest" => TOKEN_REQUEST,
        "DeleteOptions" => DELETE_OPTIONS,
        "Namespace" => NAMESPACE,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "application/json, application/yaml",
            ));
        }
    };
    let mut obj = decode(raw, schema)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_self_subject_access_review() {
        let attrs = [
            field(1, b"ci-jobs"),
            field(2, b"create"),
            field(5, b"pods"),
            field(6, b"attach"),
        ]
        .concat();
        let spec = field(1, &attrs);
        let raw = [field(1, &[]), field(2, &spec)].concat();
        let type_meta = [
            field(1, b"authorization.k8s.io/v1"),
            field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let unknown = [field(1, &type_meta), field(2, &raw)].concat();
        let body = [MAGIC, &unknown].concat();
        let v = decode_object(&body).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","metadata":{},
                "spec":{"resourceAttributes":{"namespace":"ci-jobs","verb":"create","resource":"pods","subresource":"attach"}}})
        );
    }

    #[test]
    fn unsupported_kinds_are_415() {
        let type_meta = [field(1, b"v1"), field(2, b"Pod")].concat();
        let body = [MAGIC, &field(1, &type_meta)].concat();
        assert_eq!(decode_object(&body).expect_err("pod").code, 415);
    }

    #[test]
    fn decodes_a_secret_with_binary_data() {
        let meta = [
            field(1, b"s"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"\x00\x01")].concat()),
            field(3, b"Opaque"),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [MAGIC, &[field(1, &type_meta), field(2, &raw)].concat()].concat();
        assert_eq!(
            decode_object(&body).expect("secret"),
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","labels":{"app":"x"}},
                "data":{"k":"AAE="},"type":"Opaque"})
        );
    }
}

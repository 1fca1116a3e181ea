//! Authentication as kube-apiserver does it: a verified client certificate (CN = user, O = groups)
//! first, then a bearer token (static user tokens, or service-account tokens that resolve to
//! `system:serviceaccount:<ns>:<name>` while the account exists); anonymous requests are refused with
//! 401. Impersonation headers (`Impersonate-User`/`-Group`) are honoured for callers allowed to
//! `impersonate`, which is how `kubectl --as` works.

use crate::MutexExt as _;
use crate::pki::ClientCertificate;
use crate::rbac::{Attributes, Authorizer};
use crate::status::{ApiError, GroupResource};
use crate::store::{Store, str_at};
use glrunner_protocol::Secret;
use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;

pub const AUTHENTICATED: &str = "system:authenticated";

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(username: &str, groups: &[&str]) -> Self {
        Self {
            username: username.to_owned(),
            uid: String::new(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The user of a service account, with the groups the token authenticator gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: String::new(),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }
    }

    /// Add `system:authenticated`, as the authentication filter does for every user it accepts.
    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_owned());
        }
        self
    }
}

/// How an identity proves itself.
#[derive(Debug, Clone)]
pub enum Credential {
    ClientCertificate(ClientCertificate),
    Token(Secret),
}

/// A user of the test cluster and the credential that authenticates as them.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserInfo,
    pub credential: Credential,
}

impl Identity {
    /// The bearer token, if this identity uses one.
    pub fn token(&self) -> Option<&Secret> {
        match &self.credential {
            Credential::Token(t) => Some(t),
            Credential::ClientCertificate(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
enum TokenOwner {
    User(UserInfo),
    ServiceAccount { namespace: String, name: String },
}

/// The token table.
#[derive(Default)]
pub(crate) struct Authenticator {
    tokens: Mutex<HashMap<String, TokenOwner>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: only their number is shown.
        let n = self.tokens.lock().map(|t| t.len()).unwrap_or_default();
        f.debug_struct("Authenticator").field("tokens", &n).finish()
    }
}

fn new_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

impl Authenticator {
    pub fn add_user_token(&self, user: UserInfo) -> Secret {
        let token = new_token("glrunner-apiserver-");
        self.tokens
            .locked()
            .insert(token.clone(), TokenOwner::User(user));
        Secret::new(token)
    }

    pub fn add_service_account_token(&self, namespace: &str, name: &str) -> Secret {
        let token = new_token("sa.");
        self.tokens.locked().insert(
            token.clone(),
            TokenOwner::ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
        );
        Secret::new(token)
    }

    /// The user of a request: its verified certificate subject, else its bearer token.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert_subject: Option<&(String, Vec<String>)>,
        store: &Store,
    ) -> Result<UserInfo, ApiError> {
        if let Some((user, groups)) = cert_subject {
            return Ok(UserInfo {
                username: user.clone(),
                uid: String::new(),
                groups: groups.clone(),
            }
            .authenticated());
        }
        let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized());
        };
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(ApiError::unauthorized)?;
        let owner = self
            .tokens
            .locked()
            .get(token)
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        match owner {
            TokenOwner::User(u) => Ok(u.authenticated()),
            TokenOwner::ServiceAccount { namespace, name } => {
                // A service-account token is only good while its account exists.
                let sa = store
                    .get("serviceaccounts", &namespace, &name)
                    .ok_or_else(ApiError::unauthorized)?;
                let mut user = UserInfo::service_account(&namespace, &name);
                user.uid = str_at(&sa, "/metadata/uid").to_owned();
                Ok(user.authenticated())
            }
        }
    }
}

/// Apply `Impersonate-User`/`Impersonate-Group` headers: each needs `impersonate` permission.
pub(crate) fn impersonate(
    headers: &HeaderMap,
    requester: UserInfo,
    authorizer: &Authorizer<'_>,
) -> Result<UserInfo, ApiError> {
    let user = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let Some(username) = user else {
        if groups.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::internal(format!(
            "requested groups {groups:?} without impersonating a user"
        )));
    };
    let check = |resource: &str, namespace: &str, name: &str| -> Result<(), ApiError> {
        let attrs =
            Attributes::resource(&requester, "impersonate", "", resource, "", namespace, name);
        if authorizer.authorize(&attrs).allowed {
            Ok(())
        } else {
            let cause = crate::rbac::forbidden_cause(&attrs);
            Err(ApiError::forbidden(
                Some(&GroupResource::new("", resource)),
                name,
                &cause,
            ))
        }
    };
    let mut out = if let Some(rest) = username.strip_prefix("system:serviceaccount:") {
        let (ns, name) = rest.split_once(':').unwrap_or((rest, ""));
        check("serviceaccounts", ns, name)?;
        UserInfo::service_account(ns, name)
    } else {
        check("users", "", &username)?;
        UserInfo {
            username: username.clone(),
            uid: String::new(),
            groups: Vec::new(),
        }
    };
    for g in groups {
        check("groups", "", &g)?;
        if !out.groups.contains(&g) {
            out.groups.push(g);
        }
    }
    Ok(out.authenticated())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use http::HeaderValue;

    #[test]
    fn anonymous_and_unknown_tokens_are_unauthorized() {
        let a = Authenticator::default();
        let store = Store::new(StoreOptions::default());
        let err = a
            .authenticate(&HeaderMap::new(), None, &store)
            .expect_err("anonymous");
        assert_eq!(err.to_status()["message"], "Unauthorized");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(
            a.authenticate(&h, None, &store).expect_err("unknown").code,
            401
        );
    }

    #[test]
    fn user_tokens_map_to_their_user_and_groups() {
        let a = Authenticator::default();
        let store = Store::new(StoreOptions::default());
        let t = a.add_user_token(UserInfo::new("jane", &["dev"]));
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).expect("header");
        h.insert(http::header::AUTHORIZATION, v);
        let u = a.authenticate(&h, None, &store).expect("authenticated");
        assert_eq!(u.username, "jane");
        assert_eq!(u.groups, vec!["dev", AUTHENTICATED]);
    }
}

//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`), as upstream's `WithImpersonation`
//! filter: each `Impersonate-*` header is its own `impersonate` request the real user must be
//! allowed (users, groups, serviceaccounts, uids, userextras), and the request then runs as
//! the impersonated user.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::{Attributes, Authorizer, User};
use crate::status::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// The user a request acts as: `requester` itself without `Impersonate-*` headers, else the
/// impersonated user once every part of the impersonation is authorized.
pub fn resolve(
    authorizer: &Authorizer,
    requester: User,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let text = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let user = text(USER).into_iter().next().filter(|u| !u.is_empty());
    let groups = text(GROUP);
    let uid = text(UID).into_iter().next().filter(|u| !u.is_empty());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX)
            && let Ok(value) = value.to_str()
        {
            let key = percent_decode(key).unwrap_or_else(|| key.to_owned());
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    let Some(name) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::internal(
            "requested impersonation of groups, extra or a UID without impersonating a user",
        ));
    };
    let check = |attributes: Attributes| authorizer.check(&requester, &attributes);
    let impersonate = |group: &str, resource: &str, namespace: &str, name: &str| Attributes {
        verb: "impersonate".into(),
        resource_request: true,
        api_group: group.into(),
        api_version: if group.is_empty() { "" } else { "v1" }.into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Attributes::default()
    };
    let mut impersonated = User {
        name: name.clone(),
        ..User::default()
    };
    match service_account(&name) {
        Some((namespace, account)) => {
            check(impersonate("", "serviceaccounts", namespace, account))?;
            // A ServiceAccount's groups are fixed, unless groups are impersonated too.
            if groups.is_empty() {
                impersonated.groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                ];
            }
        }
        None => check(impersonate("", "users", "", &name))?,
    }
    for group in &groups {
        check(impersonate("", "groups", "", group))?;
        impersonated.groups.push(group.clone());
    }
    for (key, values) in &extra {
        for value in values {
            check(Attributes {
                subresource: key.clone(),
                ..impersonate("authentication.k8s.io", "userextras", "", value)
            })?;
        }
    }
    impersonated.extra = extra;
    if let Some(uid) = uid {
        check(impersonate("authentication.k8s.io", "uids", "", &uid))?;
        impersonated.uid = uid;
    }
    let (authenticated, unauthenticated) = ("system:authenticated", "system:unauthenticated");
    let marked = |g: &String| g == authenticated || g == unauthenticated;
    if name == "system:anonymous" {
        if !impersonated.groups.iter().any(|g| g == unauthenticated) {
            impersonated.groups.push(unauthenticated.into());
        }
    } else if !impersonated.groups.iter().any(marked) {
        impersonated.groups.push(authenticated.into());
    }
    Ok(impersonated)
}

/// `system:serviceaccount:<namespace>:<name>` split, as upstream's `SplitUsername`.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// Extra keys travel percent-encoded in header names (upstream's `unescapeExtraKey`).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames_split_into_namespace_and_name() {
        assert_eq!(
            service_account("system:serviceaccount:kube-system:default"),
            Some(("kube-system", "default"))
        );
        assert_eq!(service_account("system:serviceaccount:kube-system"), None);
        assert_eq!(service_account("jane"), None);
    }

    #[test]
    fn extra_keys_are_percent_decoded() {
        assert_eq!(
            percent_decode("example.com%2fscopes").as_deref(),
            Some("example.com/scopes")
        );
        assert_eq!(percent_decode("bad%zz"), None);
    }
}

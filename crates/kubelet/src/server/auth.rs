//! Who may call the kubelet API, as upstream's kubelet decides with webhook authorization: the
//! client certificate's CN is the user and its O the groups; `system:masters` may do anything;
//! anyone else is asked about in a `SubjectAccessReview` for the verb of the HTTP method on
//! `nodes/<subresource>` of this node, the subresource chosen from the path
//! (upstream's `pkg/kubelet/server/auth.go`, fine-grained authorization on).

use http::Method;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use r8s_cluster::tls::Identity;

/// What a request asks for: a verb on `nodes/<subresource>` of one node. When several
/// subresources are listed, any one of them allowed is enough (the narrow one first, then
/// `proxy`, which covers every path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: &'static str,
    pub node: String,
    pub subresources: Vec<&'static str>,
}

fn is_subpath(path: &str, of: &str) -> bool {
    path == of
        || path
            .strip_prefix(of)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The attributes upstream's kubelet checks for `method` on `path`.
pub fn attributes(method: &Method, path: &str, node: &str) -> Attributes {
    let verb = match *method {
        Method::POST => "create",
        Method::GET => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let mut subresources = Vec::new();
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    } else if is_subpath(path, "/statusz") {
        subresources.push("statusz");
    }
    subresources.push(if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    Attributes {
        verb,
        node: node.to_owned(),
        subresources,
    }
}

/// Answers whether `identity` may have one verb on one subresource of a node.
pub trait AccessReviewer {
    fn allowed(
        &self,
        identity: &Identity,
        verb: &str,
        node: &str,
        subresource: &str,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;
}

/// Why a request is refused; the text is the response body, as upstream's kubelet writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no client certificate from the cluster CA.
    Unauthorized,
    /// 403: nothing in the attributes is allowed.
    Forbidden(String),
    /// 500: the review itself failed.
    ReviewFailed(String),
}

impl Refusal {
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::Unauthorized => http::StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => http::StatusCode::FORBIDDEN,
            Refusal::ReviewFailed(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthorized => "Unauthorized".into(),
            Refusal::Forbidden(message) | Refusal::ReviewFailed(message) => message.clone(),
        }
    }
}

/// Decides a request from `identity` (None: no client certificate) for `attributes`.
pub async fn authorize(
    reviewer: &impl AccessReviewer,
    identity: Option<&Identity>,
    attributes: &Attributes,
) -> Result<(), Refusal> {
    let Some(identity) = identity else {
        return Err(Refusal::Unauthorized);
    };
    if identity.is_master() {
        return Ok(());
    }
    for subresource in &attributes.subresources {
        match reviewer
            .allowed(identity, attributes.verb, &attributes.node, subresource)
            .await
        {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(user = %identity.user, "kubelet authorization: {e:#}");
                return Err(Refusal::ReviewFailed(format!(
                    "Authorization error (user={}, verb={}, resource=nodes, subresource={subresource})",
                    identity.user, attributes.verb
                )));
            }
        }
    }
    Err(Refusal::Forbidden(format!(
        "Forbidden (user={}, verb={}, resource=nodes, subresource(s)=[{}])\n",
        identity.user,
        attributes.verb,
        attributes.subresources.join(" ")
    )))
}

/// Reviews through the API server, as upstream's webhook authorizer does.
impl AccessReviewer for kube::Client {
    async fn allowed(
        &self,
        identity: &Identity,
        verb: &str,
        node: &str,
        subresource: &str,
    ) -> anyhow::Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(identity.user.clone()),
                groups: Some(identity.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_owned()),
                    name: Some(node.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.clone())
            .create(&PostParams::default(), &review)
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Allows what is listed, and records what it was asked.
    #[derive(Default)]
    struct Reviews {
        allow: Vec<(&'static str, &'static str)>,
        asked: Mutex<Vec<String>>,
    }

    impl AccessReviewer for Reviews {
        async fn allowed(
            &self,
            identity: &Identity,
            verb: &str,
            node: &str,
            subresource: &str,
        ) -> anyhow::Result<bool> {
            self.asked.lock().unwrap().push(format!(
                "{} {verb} nodes/{subresource} {node}",
                identity.user
            ));
            Ok(self
                .allow
                .iter()
                .any(|&(v, s)| v == verb && s == subresource))
        }
    }

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn paths_map_to_node_subresources_as_upstream() {
        let sub = |method: &Method, path: &str| attributes(method, path, "n1").subresources;
        assert_eq!(sub(&Method::GET, "/containerLogs/ns/p/c"), ["proxy"]);
        assert_eq!(sub(&Method::GET, "/pods"), ["pods", "proxy"]);
        assert_eq!(sub(&Method::GET, "/pods/"), ["pods", "proxy"]);
        assert_eq!(sub(&Method::GET, "/healthz"), ["healthz", "proxy"]);
        assert_eq!(sub(&Method::GET, "/stats/summary"), ["stats"]);
        assert_eq!(sub(&Method::GET, "/metrics/cadvisor"), ["metrics"]);
        assert_eq!(sub(&Method::GET, "/logs/syslog"), ["log"]);
        assert_eq!(sub(&Method::GET, "/podsx"), ["proxy"]);
        let exec = attributes(&Method::POST, "/exec/ns/p/c", "n1");
        assert_eq!((exec.verb, exec.node.as_str()), ("create", "n1"));
    }

    #[tokio::test]
    async fn no_certificate_is_unauthorized() {
        let attributes = attributes(&Method::GET, "/healthz", "n1");
        let refusal = authorize(&Reviews::default(), None, &attributes)
            .await
            .unwrap_err();
        assert_eq!(refusal, Refusal::Unauthorized);
        assert_eq!(refusal.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn system_masters_is_allowed_without_a_review() {
        let reviews = Reviews::default();
        let apiserver = user(
            "kube-apiserver-kubelet-client",
            &["system:masters", "system:authenticated"],
        );
        let attributes = attributes(&Method::GET, "/containerLogs/ns/p/c", "n1");
        authorize(&reviews, Some(&apiserver), &attributes)
            .await
            .unwrap();
        assert!(reviews.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn others_are_reviewed_narrow_subresource_first_then_proxy() {
        let reviews = Reviews {
            allow: vec![("get", "proxy")],
            ..Default::default()
        };
        let jane = user("jane", &["system:authenticated"]);
        authorize(
            &reviews,
            Some(&jane),
            &attributes(&Method::GET, "/pods", "n1"),
        )
        .await
        .unwrap();
        assert_eq!(
            *reviews.asked.lock().unwrap(),
            ["jane get nodes/pods n1", "jane get nodes/proxy n1"]
        );
    }

    #[tokio::test]
    async fn denial_is_forbidden_and_names_user_verb_and_subresources() {
        let jane = user("jane", &["system:authenticated"]);
        let refusal = authorize(
            &Reviews::default(),
            Some(&jane),
            &attributes(&Method::GET, "/healthz", "n1"),
        )
        .await
        .unwrap_err();
        assert_eq!(refusal.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(
            refusal.message(),
            "Forbidden (user=jane, verb=get, resource=nodes, subresource(s)=[healthz proxy])\n"
        );
    }
}

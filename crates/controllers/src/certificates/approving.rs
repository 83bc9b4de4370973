//! csrapproving: approves the CertificateSigningRequests a kubelet makes, so nodes get and renew
//! their certificates without an administrator.
//!
//! - `kubernetes.io/kube-apiserver-client-kubelet`: a node client request (O `system:nodes`, CN
//!   `system:node:…`, no names, signing + client auth) is approved when a SubjectAccessReview
//!   lets its requester `create` `certificatesigningrequests/selfnodeclient` (a node renewing its
//!   own certificate: the requester is the CN) or `…/nodeclient` (a bootstrap token asking for
//!   a node), as upstream's `sarapprove.go` does. Otherwise the request waits.
//! - `kubernetes.io/kubelet-serving`: upstream leaves these to an external approver; r8s
//!   approves a node's request for itself (requester `system:node:<n>` in `system:nodes`, CN the
//!   requester) when every DNS and IP name in it is one of Node `<n>`'s addresses, as k3s and
//!   kubelet-csr-approver do, so a node joined with `r8s agent` gets a serving certificate
//!   without a manual `kubectl certificate approve`. A node cannot claim another's names.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::request::{
    CertificateRequest, NODE_USER_PREFIX, NODES_GROUP, usage_set, validate_kubelet_client,
    validate_kubelet_serving,
};
use super::{APPROVED, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING, approval, issued};
use crate::clock::Clock;

pub const REASON: &str = "AutoApproved";
pub const SERVING_MESSAGE: &str =
    "Auto approving kubelet serving certificate: its names are the node's addresses.";
const RETRY: Duration = Duration::from_secs(2);
/// A refused review is asked again now and then: RBAC may have changed since (upstream
/// requeues it with backoff).
const REVIEW_AGAIN: Duration = Duration::from_secs(60);

/// A kind of kubelet client request, the permission that approves it, and what the approval
/// says (upstream's recognizers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recognizer {
    pub subresource: &'static str,
    pub message: &'static str,
}

pub const SELF_NODE_CLIENT: Recognizer = Recognizer {
    subresource: "selfnodeclient",
    message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
};
pub const NODE_CLIENT: Recognizer = Recognizer {
    subresource: "nodeclient",
    message: "Auto approving kubelet client certificate after SubjectAccessReview.",
};

/// What approving a request takes.
#[derive(Debug)]
pub enum Plan {
    /// Not this controller's to approve: decided or issued already, another signer, another
    /// shape, or no requester to ask about.
    Nothing,
    /// A kubelet client request: approved by the first of these the requester may use.
    Review(Vec<Recognizer>),
    /// Node `node`'s serving request: approved if its names are the node's addresses.
    Serving {
        node: String,
        request: Box<CertificateRequest>,
    },
}

pub fn plan(csr: &CertificateSigningRequest) -> Plan {
    let (approved, denied) = approval(csr);
    if issued(csr) || approved || denied {
        return Plan::Nothing;
    }
    let spec = &csr.spec;
    let username = spec.username.as_deref().unwrap_or_default();
    let groups = spec.groups.as_deref().unwrap_or_default();
    // A review needs someone to ask about; the API server records the requester.
    if username.is_empty() && groups.is_empty() {
        return Plan::Nothing;
    }
    let Ok(request) = CertificateRequest::parse(&spec.request.0) else {
        return Plan::Nothing;
    };
    let usages = usage_set(spec.usages.as_deref().unwrap_or_default());
    match spec.signer_name.as_str() {
        KUBE_APISERVER_CLIENT_KUBELET => {
            if validate_kubelet_client(&request, &usages).is_err() {
                return Plan::Nothing;
            }
            let mut recognizers = Vec::new();
            if username == request.common_name {
                recognizers.push(SELF_NODE_CLIENT);
            }
            recognizers.push(NODE_CLIENT);
            Plan::Review(recognizers)
        }
        KUBELET_SERVING => {
            let node = username
                .strip_prefix(NODE_USER_PREFIX)
                .filter(|node| !node.is_empty());
            let acceptable = groups.iter().any(|g| g == NODES_GROUP)
                && request.common_name == username
                && validate_kubelet_serving(&request, &usages).is_ok();
            match node {
                Some(node) if acceptable => Plan::Serving {
                    node: node.to_owned(),
                    request: Box::new(request),
                },
                _ => Plan::Nothing,
            }
        }
        _ => Plan::Nothing,
    }
}

/// The review of whether `csr`'s requester may `create` `certificatesigningrequests/<subresource>`.
pub fn subject_access_review(
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> SubjectAccessReview {
    let spec = &csr.spec;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                verb: Some("create".into()),
                subresource: Some(subresource.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The names in a serving request that are not among the node's addresses: DNS names must be
/// its Hostname or DNS addresses, IPs its InternalIP or ExternalIP (how the kubelet turns
/// addresses into names). Empty: every name is the node's.
pub fn names_not_of_node(request: &CertificateRequest, node: &Node) -> Vec<String> {
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_deref())
        .unwrap_or_default();
    let of_kind = |kinds: &[&str]| -> Vec<&str> {
        addresses
            .iter()
            .filter(|a| kinds.contains(&a.type_.as_str()))
            .map(|a| a.address.as_str())
            .collect()
    };
    let dns_addresses = of_kind(&["Hostname", "InternalDNS", "ExternalDNS"]);
    let ip_addresses: Vec<IpAddr> = of_kind(&["InternalIP", "ExternalIP"])
        .into_iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let dns = request
        .dns_names
        .iter()
        .filter(|name| !dns_addresses.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .cloned();
    let ips = request
        .ips
        .iter()
        .filter(|ip| !ip_addresses.contains(ip))
        .map(IpAddr::to_string);
    dns.chain(ips).collect()
}

/// Whether `csr` is a pending serving request of the node whose user is `node_user`, which a
/// change of that Node may let through.
fn awaits_node(csr: &CertificateSigningRequest, node_user: &str) -> bool {
    let (approved, denied) = approval(csr);
    csr.spec.signer_name == KUBELET_SERVING
        && csr.spec.username.as_deref() == Some(node_user)
        && !approved
        && !denied
        && !issued(csr)
}

#[derive(Debug, thiserror::Error)]
#[error("CertificateSigningRequest {name}: {action}: {source}")]
pub struct Error {
    name: String,
    action: &'static str,
    source: kube::Error,
}

struct Context {
    client: Client,
    clock: Arc<dyn Clock>,
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = csr.name_any();
    let err = |action| {
        let name = name.clone();
        move |source| Error {
            name,
            action,
            source,
        }
    };
    match plan(&csr) {
        Plan::Nothing => Ok(Action::await_change()),
        Plan::Review(recognizers) => {
            let reviews = Api::<SubjectAccessReview>::all(ctx.client.clone());
            for recognizer in recognizers {
                let review = subject_access_review(&csr, recognizer.subresource);
                let answer = reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(err("create a SubjectAccessReview"))?;
                if answer.status.is_some_and(|s| s.allowed) {
                    return approve(&ctx, &csr, recognizer.message).await;
                }
            }
            tracing::debug!(
                csr = name,
                "recognized as a kubelet client request but the SubjectAccessReview was not approved"
            );
            Ok(Action::requeue(REVIEW_AGAIN))
        }
        Plan::Serving { node, request } => {
            let nodes = Api::<Node>::all(ctx.client.clone());
            // A Node that is not there yet, or not with these addresses, brings the request back
            // when it changes (see `run`).
            let Some(node) = nodes.get_opt(&node).await.map_err(err("get its Node"))? else {
                return Ok(Action::await_change());
            };
            let strangers = names_not_of_node(&request, &node);
            if !strangers.is_empty() {
                tracing::debug!(
                    csr = name,
                    names = strangers.join(", "),
                    "kubelet serving request names what is not the node's address"
                );
                return Ok(Action::await_change());
            }
            approve(&ctx, &csr, SERVING_MESSAGE).await
        }
    }
}

async fn approve(
    ctx: &Context,
    csr: &CertificateSigningRequest,
    message: &str,
) -> Result<Action, Error> {
    let name = csr.name_any();
    let approved = super::with_condition(csr, APPROVED, REASON, message, ctx.clock.now());
    let requests = Api::<CertificateSigningRequest>::all(ctx.client.clone());
    match requests
        .replace_subresource("approval", &name, &PostParams::default(), &approved)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Gone, or changed meanwhile: the watch brings the new version, if any.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Action::await_change())
        }
        Err(source) => Err(Error {
            name,
            action: "approve",
            source,
        }),
    }
}

fn error_policy(_csr: Arc<CertificateSigningRequest>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "csrapproving");
    Action::requeue(RETRY)
}

pub async fn run(client: Client, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let controller = Controller::new(
        Api::<CertificateSigningRequest>::all(client.clone()),
        watcher::Config::default(),
    );
    let requests = controller.store();
    controller
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |node: Node| {
                let user = format!("{NODE_USER_PREFIX}{}", node.name_any());
                requests
                    .state()
                    .iter()
                    .filter(|csr| awaits_node(csr, &user))
                    .map(|csr| ObjectRef::from_obj(&**csr))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, Arc::new(Context { client, clock }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::request::tests::request_pem;
    use crate::certificates::tests::{csr, with};
    use crate::certificates::{DENIED, KUBE_APISERVER_CLIENT};
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

    const CLIENT: [&str; 2] = ["digital signature", "client auth"];
    const SERVING: [&str; 2] = ["digital signature", "server auth"];

    fn node_client(username: &str, groups: &[&str]) -> CertificateSigningRequest {
        let pem = request_pem("system:node:n1", &[NODES_GROUP], &[]);
        csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            &pem,
            &CLIENT,
            username,
            groups,
        )
    }

    fn serving(sans: &[&str]) -> CertificateSigningRequest {
        let pem = request_pem("system:node:n1", &[NODES_GROUP], sans);
        csr(
            KUBELET_SERVING,
            &pem,
            &SERVING,
            "system:node:n1",
            &[NODES_GROUP],
        )
    }

    fn recognizers(csr: &CertificateSigningRequest) -> Vec<Recognizer> {
        match plan(csr) {
            Plan::Review(recognizers) => recognizers,
            other => panic!("expected a review, got {other:?}"),
        }
    }

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(kind, address)| NodeAddress {
                            type_: kind.to_string(),
                            address: address.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_renewing_its_own_client_certificate_asks_selfnodeclient_then_nodeclient() {
        let request = node_client("system:node:n1", &[NODES_GROUP]);
        assert_eq!(recognizers(&request), [SELF_NODE_CLIENT, NODE_CLIENT]);
    }

    #[test]
    fn a_bootstrap_token_asking_for_a_node_asks_nodeclient() {
        let request = node_client("system:bootstrap:abcdef", &["system:bootstrappers"]);
        assert_eq!(recognizers(&request), [NODE_CLIENT]);
    }

    #[test]
    fn the_review_asks_about_the_requester_creating_the_subresource() {
        let mut request = node_client("system:bootstrap:abcdef", &["system:bootstrappers"]);
        request.spec.uid = Some("u-1".into());
        let review = subject_access_review(&request, "nodeclient");
        assert_eq!(review.spec.user.as_deref(), Some("system:bootstrap:abcdef"));
        assert_eq!(review.spec.uid.as_deref(), Some("u-1"));
        assert_eq!(
            review.spec.groups.as_deref(),
            Some(&["system:bootstrappers".to_string()][..])
        );
        let attributes = review.spec.resource_attributes.unwrap();
        assert_eq!(attributes.verb.as_deref(), Some("create"));
        assert_eq!(attributes.group.as_deref(), Some("certificates.k8s.io"));
        assert_eq!(
            attributes.resource.as_deref(),
            Some("certificatesigningrequests")
        );
        assert_eq!(attributes.subresource.as_deref(), Some("nodeclient"));
    }

    #[test]
    fn decided_issued_or_misshapen_client_requests_are_left_alone() {
        let request = node_client("system:node:n1", &[NODES_GROUP]);
        assert!(matches!(
            plan(&with(request.clone(), APPROVED)),
            Plan::Nothing
        ));
        assert!(matches!(
            plan(&with(request.clone(), DENIED)),
            Plan::Nothing
        ));
        let other_org = request_pem("system:node:n1", &["other"], &[]);
        let other_org = csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            &other_org,
            &CLIENT,
            "system:node:n1",
            &[],
        );
        assert!(matches!(plan(&other_org), Plan::Nothing));
        let named = request_pem("system:node:n1", &[NODES_GROUP], &["n1"]);
        let named = csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            &named,
            &CLIENT,
            "system:node:n1",
            &[],
        );
        assert!(matches!(plan(&named), Plan::Nothing));
        let server = request_pem("system:node:n1", &[NODES_GROUP], &[]);
        let server = csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            &server,
            &SERVING,
            "system:node:n1",
            &[],
        );
        assert!(matches!(plan(&server), Plan::Nothing));
    }

    #[test]
    fn other_signers_and_anonymous_requests_are_left_alone() {
        let pem = request_pem("system:node:n1", &[NODES_GROUP], &[]);
        let other = csr(
            KUBE_APISERVER_CLIENT,
            &pem,
            &CLIENT,
            "system:node:n1",
            &[NODES_GROUP],
        );
        assert!(matches!(plan(&other), Plan::Nothing));
        assert!(matches!(plan(&node_client("", &[])), Plan::Nothing));
        let garbage = csr(
            KUBE_APISERVER_CLIENT_KUBELET,
            "junk",
            &CLIENT,
            "system:node:n1",
            &[],
        );
        assert!(matches!(plan(&garbage), Plan::Nothing));
    }

    #[test]
    fn a_nodes_serving_request_for_itself_waits_on_its_node() {
        match plan(&serving(&["n1", "10.0.0.1"])) {
            Plan::Serving { node, request } => {
                assert_eq!(node, "n1");
                assert_eq!(request.dns_names, ["n1"]);
            }
            other => panic!("expected a serving plan, got {other:?}"),
        }
    }

    #[test]
    fn serving_requests_for_another_identity_are_left_alone() {
        // CN of another node than the requester.
        let pem = request_pem("system:node:n2", &[NODES_GROUP], &["n2"]);
        let other = csr(
            KUBELET_SERVING,
            &pem,
            &SERVING,
            "system:node:n1",
            &[NODES_GROUP],
        );
        assert!(matches!(plan(&other), Plan::Nothing));
        // Not in system:nodes.
        let pem = request_pem("system:node:n1", &[NODES_GROUP], &["n1"]);
        let outsider = csr(KUBELET_SERVING, &pem, &SERVING, "system:node:n1", &["dev"]);
        assert!(matches!(plan(&outsider), Plan::Nothing));
        // Not a node user at all.
        let pem = request_pem("jane", &[NODES_GROUP], &["n1"]);
        let jane = csr(KUBELET_SERVING, &pem, &SERVING, "jane", &[NODES_GROUP]);
        assert!(matches!(plan(&jane), Plan::Nothing));
        // Client usages on a serving request.
        let pem = request_pem("system:node:n1", &[NODES_GROUP], &["n1"]);
        let client = csr(
            KUBELET_SERVING,
            &pem,
            &CLIENT,
            "system:node:n1",
            &[NODES_GROUP],
        );
        assert!(matches!(plan(&client), Plan::Nothing));
        // No names at all.
        assert!(matches!(plan(&serving(&[])), Plan::Nothing));
        // An email name.
        assert!(matches!(plan(&serving(&["n1@example.com"])), Plan::Nothing));
    }

    #[test]
    fn serving_names_must_all_be_the_nodes_addresses() {
        let n1 = node(&[
            ("InternalIP", "10.0.0.1"),
            ("Hostname", "n1"),
            ("ExternalDNS", "n1.example.com"),
        ]);
        let request = |sans: &[&str]| {
            CertificateRequest::parse(
                request_pem("system:node:n1", &[NODES_GROUP], sans).as_bytes(),
            )
            .unwrap()
        };
        assert!(names_not_of_node(&request(&["n1", "N1.example.com", "10.0.0.1"]), &n1).is_empty());
        assert_eq!(
            names_not_of_node(&request(&["n1", "10.0.0.2", "kubernetes"]), &n1),
            ["kubernetes", "10.0.0.2"]
        );
        // An IP name matches only IP addresses.
        assert_eq!(
            names_not_of_node(&request(&["10.0.0.1"]), &node(&[("Hostname", "10.0.0.1")])),
            ["10.0.0.1"]
        );
        assert_eq!(names_not_of_node(&request(&["n1"]), &node(&[])), ["n1"]);
    }

    #[test]
    fn only_pending_serving_requests_of_that_node_wait_on_it() {
        let request = serving(&["n1"]);
        assert!(awaits_node(&request, "system:node:n1"));
        assert!(!awaits_node(&request, "system:node:n2"));
        assert!(!awaits_node(&with(request, APPROVED), "system:node:n1"));
        assert!(!awaits_node(
            &node_client("system:node:n1", &[NODES_GROUP]),
            "system:node:n1"
        ));
    }
}

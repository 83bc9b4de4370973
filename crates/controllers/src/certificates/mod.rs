//! The certificates controllers of upstream's kube-controller-manager, over
//! CertificateSigningRequests (certificates.k8s.io/v1):
//!
//! - [`approving`] (csrapproving) approves kubelet client certificates after a
//!   SubjectAccessReview, as upstream's `sarapprove.go` does, and — r8s's own choice — kubelet
//!   serving certificates whose names are the node's addresses;
//! - [`signing`] (csrsigning) issues approved requests of the `kubernetes.io/kube-apiserver-client`,
//!   `kube-apiserver-client-kubelet` and `kubelet-serving` signers with the cluster CA.

pub mod approving;
pub mod authority;
mod der;
pub mod request;
pub mod signing;

use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBE_APISERVER_CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

pub const APPROVED: &str = "Approved";
pub const DENIED: &str = "Denied";
pub const FAILED: &str = "Failed";

/// How long issued certificates live unless a request asks for less (upstream's
/// `--cluster-signing-duration`, 8760h).
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(8760 * 3600);

/// The CA csrsigning signs with (upstream's `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file`), and `--cluster-signing-duration`.
#[derive(Clone)]
pub struct SigningCa {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    pub duration: Duration,
}

impl std::fmt::Debug for SigningCa {
    // Keeps the private key out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .field("duration", &self.duration)
            .finish()
    }
}

fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// Upstream's `GetCertApprovalCondition`: (approved, denied), by condition type alone.
pub fn approval(csr: &CertificateSigningRequest) -> (bool, bool) {
    let has = |kind: &str| conditions(csr).iter().any(|c| c.type_ == kind);
    (has(APPROVED), has(DENIED))
}

/// Upstream's `HasTrueCondition(csr, Failed)`.
pub fn failed(csr: &CertificateSigningRequest) -> bool {
    conditions(csr)
        .iter()
        .any(|c| c.type_ == FAILED && c.status == "True")
}

/// Whether the certificate was issued already.
pub fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

/// `csr` with a new True condition, stamped `now` as upstream's registry stamps them.
fn with_condition(
    csr: &CertificateSigningRequest,
    kind: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: kind.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        });
    csr
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use kube::api::ObjectMeta;

    /// A request named `name` for `signer` with `pem` and `usages`, made by `username` in
    /// `groups`.
    pub(crate) fn csr(
        signer: &str,
        pem: &str,
        usages: &[&str],
        username: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some("req".into()),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                signer_name: signer.into(),
                request: ByteString(pem.as_bytes().to_vec()),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(username.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..Default::default()
            },
            status: None,
        }
    }

    pub(crate) fn with(
        mut csr: CertificateSigningRequest,
        kind: &str,
    ) -> CertificateSigningRequest {
        csr.status
            .get_or_insert_with(CertificateSigningRequestStatus::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: kind.into(),
                status: "True".into(),
                ..Default::default()
            });
        csr
    }

    #[test]
    fn approval_and_failure_are_read_from_the_conditions() {
        let pending = csr(KUBE_APISERVER_CLIENT, "", &[], "jane", &[]);
        assert_eq!(approval(&pending), (false, false));
        assert_eq!(approval(&with(pending.clone(), APPROVED)), (true, false));
        assert_eq!(approval(&with(pending.clone(), DENIED)), (false, true));
        assert!(failed(&with(pending.clone(), FAILED)));
        assert!(!issued(&pending));
    }

    #[test]
    fn a_new_condition_is_true_and_stamped() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let pending = csr(KUBE_APISERVER_CLIENT, "", &[], "jane", &[]);
        let approved = with_condition(&pending, APPROVED, "AutoApproved", "why", at);
        let condition = &conditions(&approved)[0];
        assert_eq!(condition.type_, APPROVED);
        assert_eq!(condition.status, "True");
        assert_eq!(condition.reason.as_deref(), Some("AutoApproved"));
        assert_eq!(condition.last_update_time, Some(Time(at)));
    }
}

//! csrsigning: issues approved CertificateSigningRequests of the
//! `kubernetes.io/kube-apiserver-client`, `kube-apiserver-client-kubelet` and `kubelet-serving`
//! signers with the cluster CA, as upstream's `pkg/controller/certificates/signer` does (one
//! controller here for its three). A request the signer's rules refuse gets a `Failed`
//! condition (reason `SignerValidationFailure`) instead of a certificate; so does one whose
//! signature does not match its key, since r8s's API server does not check that on create.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::authority::{Authority, SignError};
use super::request::{
    CertificateRequest, usage_set, validate_apiserver_client_usages, validate_kubelet_client,
    validate_kubelet_serving,
};
use super::{
    FAILED, KUBE_APISERVER_CLIENT, KUBE_APISERVER_CLIENT_KUBELET, KUBELET_SERVING, SigningCa,
    approval, failed, issued,
};
use crate::clock::Clock;

pub const FAILURE_REASON: &str = "SignerValidationFailure";
/// The shortest certificate issued, whatever a request asks (twice the backdate).
pub const MIN_DURATION: Duration = Duration::from_secs(600);
const RETRY: Duration = Duration::from_secs(2);

/// What a request needs from the signer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not approved, denied, failed or issued already, or another signer's.
    Nothing,
    /// The certificate, PEM.
    Issue(String),
    /// Why it will never be signed.
    Fail(String),
}

/// The lifetime of a certificate: what the request asks (spec.expirationSeconds) within
/// [10 minutes, `default`], or `default` (upstream's `signer.duration`).
pub fn duration(default: Duration, expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        None => default,
        Some(seconds) => Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
            .clamp(MIN_DURATION, default.max(MIN_DURATION)),
    }
}

/// Decides `csr`; an error is the CA's (expired, or its key failed), to retry.
pub fn step(
    csr: &CertificateSigningRequest,
    ca: &Authority,
    default_duration: Duration,
    now: Timestamp,
    serial: [u8; 16],
) -> Result<Step, SignError> {
    let (approved, denied) = approval(csr);
    if !approved || denied || failed(csr) || issued(csr) {
        return Ok(Step::Nothing);
    }
    let spec = &csr.spec;
    let signer = spec.signer_name.as_str();
    if ![
        KUBE_APISERVER_CLIENT,
        KUBE_APISERVER_CLIENT_KUBELET,
        KUBELET_SERVING,
    ]
    .contains(&signer)
    {
        return Ok(Step::Nothing);
    }
    let request = match CertificateRequest::parse(&spec.request.0) {
        Ok(request) => request,
        Err(why) => return Ok(Step::Fail(format!("unable to parse csr: {why}"))),
    };
    let usages = spec.usages.as_deref().unwrap_or_default();
    let shape = match signer {
        KUBELET_SERVING => validate_kubelet_serving(&request, &usage_set(usages)),
        KUBE_APISERVER_CLIENT_KUBELET => validate_kubelet_client(&request, &usage_set(usages)),
        _ => validate_apiserver_client_usages(&request, usages),
    };
    if let Err(why) = shape {
        return Ok(Step::Fail(why));
    }
    let lifetime = duration(default_duration, spec.expiration_seconds);
    match ca.sign(&request, usages, lifetime, now, serial) {
        Ok(pem) => Ok(Step::Issue(pem)),
        Err(SignError::Request(why)) => Ok(Step::Fail(why)),
        Err(error) => Err(error),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("CertificateSigningRequest {name}: {action}: {reason}")]
pub struct Error {
    name: String,
    action: &'static str,
    reason: String,
}

struct Context {
    client: Client,
    ca: Authority,
    duration: Duration,
    clock: Arc<dyn Clock>,
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = csr.name_any();
    let err = |action: &'static str| {
        let name = name.clone();
        move |reason: String| Error {
            name,
            action,
            reason,
        }
    };
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| err("draw a serial number")(e.to_string()))?;
    let now = ctx.clock.now();
    let updated = match step(&csr, &ctx.ca, ctx.duration, now, serial)
        .map_err(|e| err("sign")(e.to_string()))?
    {
        Step::Nothing => return Ok(Action::await_change()),
        Step::Fail(why) => {
            tracing::info!(csr = name, reason = why, "refused to sign");
            super::with_condition(&csr, FAILED, FAILURE_REASON, &why, now)
        }
        Step::Issue(pem) => {
            let mut issued = (*csr).clone();
            issued
                .status
                .get_or_insert_with(Default::default)
                .certificate = Some(ByteString(pem.into_bytes()));
            issued
        }
    };
    let requests = Api::<CertificateSigningRequest>::all(ctx.client.clone());
    match requests
        .replace_status(&name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Gone, or changed meanwhile: the watch brings the new version, if any.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(err("update its status")(e.to_string())),
    }
}

fn error_policy(_csr: Arc<CertificateSigningRequest>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "csrsigning");
    Action::requeue(RETRY)
}

pub async fn run(client: Client, ca: SigningCa, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let authority = Authority::from_pem(&ca.cert_pem, &ca.key_pem)
        .map_err(|why| anyhow::anyhow!("csrsigning: the cluster signing CA: {why}"))?;
    let ctx = Arc::new(Context {
        client: client.clone(),
        ca: authority,
        duration: ca.duration,
        clock,
    });
    Controller::new(
        Api::<CertificateSigningRequest>::all(client),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificates::authority::tests::{SERIAL, ca_pem, now, with_certificate};
    use crate::certificates::request::NODES_GROUP;
    use crate::certificates::request::tests::request_pem;
    use crate::certificates::tests::{csr, with};
    use crate::certificates::{APPROVED, DEFAULT_SIGNING_DURATION, DENIED};
    use k8s_openapi::jiff::SignedDuration;

    const CLIENT: [&str; 2] = ["digital signature", "client auth"];
    const SERVING: [&str; 2] = ["digital signature", "server auth"];

    fn ca() -> Authority {
        let (cert, key) = ca_pem(now() - SignedDuration::from_hours(24), 3650);
        Authority::from_pem(&cert, &key).unwrap()
    }

    fn decide(csr: &CertificateSigningRequest) -> Step {
        step(csr, &ca(), DEFAULT_SIGNING_DURATION, now(), SERIAL).unwrap()
    }

    fn approved(
        signer: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        usages: &[&str],
    ) -> CertificateSigningRequest {
        let pem = request_pem(cn, orgs, sans);
        with(csr(signer, &pem, usages, "someone", &[]), APPROVED)
    }

    fn failure(step: Step) -> String {
        match step {
            Step::Fail(why) => why,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_approved_apiserver_client_request_is_issued() {
        let request = approved(KUBE_APISERVER_CLIENT, "jane", &["dev"], &[], &CLIENT);
        let Step::Issue(pem) = decide(&request) else {
            panic!("expected a certificate");
        };
        with_certificate(&pem, |cert| {
            let cn: Vec<_> = cert
                .subject()
                .iter_common_name()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(cn, ["jane"]);
            assert!(
                cert.extended_key_usage()
                    .unwrap()
                    .unwrap()
                    .value
                    .client_auth
            );
            let validity = cert.validity();
            assert_eq!(
                validity.not_before.timestamp(),
                (now() - SignedDuration::from_mins(5)).as_second()
            );
            assert_eq!(
                validity.not_after.timestamp(),
                (now() + SignedDuration::from_hours(8760) - SignedDuration::from_mins(5))
                    .as_second()
            );
        });
    }

    #[test]
    fn node_client_and_serving_requests_of_the_right_shape_are_issued() {
        let client = approved(
            KUBE_APISERVER_CLIENT_KUBELET,
            "system:node:n1",
            &[NODES_GROUP],
            &[],
            &CLIENT,
        );
        assert!(matches!(decide(&client), Step::Issue(_)));
        let serving = approved(
            KUBELET_SERVING,
            "system:node:n1",
            &[NODES_GROUP],
            &["n1"],
            &SERVING,
        );
        assert!(matches!(decide(&serving), Step::Issue(_)));
    }

    #[test]
    fn pending_denied_failed_issued_and_foreign_requests_are_left_alone() {
        let pem = request_pem("jane", &[], &[]);
        let pending = csr(KUBE_APISERVER_CLIENT, &pem, &CLIENT, "jane", &[]);
        assert_eq!(decide(&pending), Step::Nothing);
        assert_eq!(
            decide(&with(with(pending.clone(), APPROVED), DENIED)),
            Step::Nothing
        );
        assert_eq!(
            decide(&with(with(pending.clone(), APPROVED), FAILED)),
            Step::Nothing
        );
        let mut done = with(pending.clone(), APPROVED);
        done.status.as_mut().unwrap().certificate = Some(ByteString(b"cert".to_vec()));
        assert_eq!(decide(&done), Step::Nothing);
        let foreign = with(
            csr("example.com/signer", &pem, &CLIENT, "jane", &[]),
            APPROVED,
        );
        assert_eq!(decide(&foreign), Step::Nothing);
    }

    #[test]
    fn a_node_client_request_of_another_organization_fails_validation() {
        let request = approved(
            KUBE_APISERVER_CLIENT_KUBELET,
            "system:node:n1",
            &["other"],
            &[],
            &CLIENT,
        );
        assert_eq!(
            failure(decide(&request)),
            "subject organization is not system:nodes"
        );
    }

    #[test]
    fn a_serving_request_without_names_fails_validation() {
        let request = approved(
            KUBELET_SERVING,
            "system:node:n1",
            &[NODES_GROUP],
            &[],
            &SERVING,
        );
        assert_eq!(
            failure(decide(&request)),
            "DNS or IP subjectAltName is required"
        );
    }

    #[test]
    fn an_apiserver_client_request_for_server_auth_fails_validation() {
        let request = approved(
            KUBE_APISERVER_CLIENT,
            "jane",
            &[],
            &[],
            &["client auth", "server auth"],
        );
        assert_eq!(
            failure(decide(&request)),
            "invalid usage for client certificate: server auth"
        );
    }

    #[test]
    fn a_request_that_is_no_certificate_request_fails() {
        let request = with(
            csr(KUBE_APISERVER_CLIENT, "junk", &CLIENT, "jane", &[]),
            APPROVED,
        );
        assert!(failure(decide(&request)).starts_with("unable to parse csr"));
    }

    #[test]
    fn a_short_expiration_is_honoured_and_a_long_one_capped() {
        assert_eq!(
            duration(DEFAULT_SIGNING_DURATION, None),
            DEFAULT_SIGNING_DURATION
        );
        assert_eq!(
            duration(DEFAULT_SIGNING_DURATION, Some(3600)),
            Duration::from_secs(3600)
        );
        assert_eq!(duration(DEFAULT_SIGNING_DURATION, Some(60)), MIN_DURATION);
        assert_eq!(
            duration(DEFAULT_SIGNING_DURATION, Some(i32::MAX)),
            DEFAULT_SIGNING_DURATION
        );
    }

    #[test]
    fn a_requested_expiration_sets_the_certificates_end() {
        let mut request = approved(KUBE_APISERVER_CLIENT, "jane", &[], &[], &CLIENT);
        request.spec.expiration_seconds = Some(3600);
        let Step::Issue(pem) = decide(&request) else {
            panic!("expected a certificate");
        };
        with_certificate(&pem, |cert| {
            assert_eq!(
                cert.validity().not_after.timestamp(),
                (now() + SignedDuration::from_hours(1)).as_second()
            );
        });
    }
}

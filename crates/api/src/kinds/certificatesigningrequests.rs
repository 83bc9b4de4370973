//! CertificateSigningRequests: what a requester may set (the request, never its outcome), the
//! `approval` subresource that approvers write (`kubectl certificate approve|deny`), the
//! `status` subresource that signers write, and the `kubectl get csr` table.

use serde_json::Value;
use time::OffsetDateTime;

use super::printing::{self, AGE, NAME, column, items, text};
use super::{Column, FieldError, Kind};

pub struct CertificateSigningRequests;

const APPROVAL_TYPES: [&str; 2] = ["Approved", "Denied"];

const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    column(
        "SignerName",
        "string",
        "Only one signer should be used per CSR.",
    ),
    column(
        "Requestor",
        "string",
        "Name of the user requesting the certificate.",
    ),
    column(
        "RequestedDuration",
        "string",
        "The requested duration of validity of the issued certificate.",
    ),
    column(
        "Condition",
        "string",
        "Approval status of the CSR and whether the certificate was issued.",
    ),
];

impl Kind for CertificateSigningRequests {
    // A requester cannot create a pre-approved (or pre-signed) request, nor claim to be
    // someone: upstream fills the requester's identity from the request's authentication.
    fn prepare_for_create(&self, object: &mut Value) {
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        if let Some(spec) = object["spec"].as_object_mut() {
            for claimed in ["username", "uid", "groups", "extra"] {
                spec.remove(claimed);
            }
        }
    }

    fn records_requester(&self) -> bool {
        true
    }

    // The request is fixed once made; updates of the main resource change only metadata.
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        new["spec"] = old["spec"].clone();
    }

    fn subresource_fields(&self, subresource: &str) -> Option<&'static [&'static str]> {
        matches!(subresource, "status" | "approval").then_some(&["status"][..])
    }

    fn prepare_for_subresource_update(&self, subresource: &str, new: &mut Value, old: &Value) {
        let approval = |c: &Value| APPROVAL_TYPES.contains(&text(&c["type"]));
        let (kept, from_new): (Vec<Value>, Vec<Value>) = match subresource {
            // Approvers decide; they cannot issue the certificate.
            "approval" => {
                new["status"]["certificate"] = old["status"]["certificate"].clone();
                split(old, new, |c| !approval(c))
            }
            // Signers issue; they cannot approve.
            "status" => split(old, new, approval),
            _ => return,
        };
        let conditions: Vec<Value> = kept.into_iter().chain(from_new).collect();
        if conditions.is_empty() {
            if let Some(status) = new["status"].as_object_mut() {
                status.remove("conditions");
            }
        } else {
            new["status"]["conditions"] = Value::Array(conditions);
        }
        if new["status"]["certificate"].is_null()
            && let Some(status) = new["status"].as_object_mut()
        {
            status.remove("certificate");
        }
    }

    fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let spec = &object["spec"];
        let request = spec["request"].as_str().unwrap_or_default();
        if request.is_empty() {
            problems.push(("spec.request".into(), "Required value".into()));
        } else if !decoded_pem(request).contains("-----BEGIN CERTIFICATE REQUEST-----") {
            problems.push((
                "spec.request".into(),
                "Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST".into(),
            ));
        }
        let signer = text(&spec["signerName"]);
        if signer.is_empty() {
            problems.push(("spec.signerName".into(), "Required value".into()));
        } else if !signer.contains('/') || signer.starts_with('/') || signer.ends_with('/') {
            problems.push((
                "spec.signerName".into(),
                format!(
                    "Invalid value: {signer:?}: must be a fully qualified domain and path of the form 'example.com/signer-name'"
                ),
            ));
        }
        if items(&spec["usages"]).is_empty() {
            problems.push(("spec.usages".into(), "Required value".into()));
        }
        let conditions = items(&object["status"]["conditions"]);
        let mut seen = Vec::new();
        for (i, condition) in conditions.iter().enumerate() {
            let kind = text(&condition["type"]);
            if kind.is_empty() {
                problems.push((
                    format!("status.conditions[{i}].type"),
                    "Required value".into(),
                ));
            } else if seen.contains(&kind) {
                problems.push((
                    format!("status.conditions[{i}].type"),
                    format!("Duplicate value: {kind:?}"),
                ));
            }
            seen.push(kind);
        }
        if seen.contains(&"Approved") && seen.contains(&"Denied") {
            problems.push((
                "status.conditions".into(),
                "Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive"
                    .into(),
            ));
        }
        problems
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

/// Conditions to keep from the stored object (those `keep` picks) and the rest from the write.
fn split(old: &Value, new: &Value, keep: impl Fn(&Value) -> bool) -> (Vec<Value>, Vec<Value>) {
    let kept = items(&old["status"]["conditions"])
        .iter()
        .filter(|c| keep(c))
        .cloned()
        .collect();
    let written = items(&new["status"]["conditions"])
        .iter()
        .filter(|c| !keep(c))
        .cloned()
        .collect();
    (kept, written)
}

/// `spec.request` is PEM sent base64-encoded (a `[]byte` field).
fn decoded_pem(request: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(request)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn row(csr: &Value, now: OffsetDateTime) -> Vec<Value> {
    let spec = &csr["spec"];
    let duration = match spec["expirationSeconds"].as_i64() {
        Some(seconds) => printing::human_duration(time::Duration::seconds(seconds)),
        None => "<none>".into(),
    };
    vec![
        printing::name(csr),
        printing::age(csr, now),
        text(&spec["signerName"]).into(),
        text(&spec["username"]).into(),
        duration.into(),
        condition(csr).into(),
    ]
}

/// As upstream prints it: `Denied` over `Approved` over `Pending`, then `,Failed` and
/// `,Issued` (condition types count whatever their status, as upstream's printer reads them).
fn condition(csr: &Value) -> String {
    let types: Vec<&str> = items(&csr["status"]["conditions"])
        .iter()
        .map(|c| text(&c["type"]))
        .collect();
    let mut state = if types.contains(&"Denied") {
        "Denied".to_owned()
    } else if types.contains(&"Approved") {
        "Approved".to_owned()
    } else {
        "Pending".to_owned()
    };
    if types.contains(&"Failed") {
        state.push_str(",Failed");
    }
    if csr["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
    {
        state.push_str(",Issued");
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn csr() -> Value {
        use base64::Engine;
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        json!({
            "metadata": { "name": "jane" },
            "spec": {
                "request": base64::engine::general_purpose::STANDARD.encode(pem),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"],
            },
        })
    }

    #[test]
    fn a_new_request_cannot_come_approved() {
        let mut object = csr();
        object["status"] = json!({ "conditions": [{ "type": "Approved", "status": "True" }] });
        CertificateSigningRequests.prepare_for_create(&mut object);
        assert!(object.get("status").is_none());
    }

    #[test]
    fn approval_cannot_issue_and_status_cannot_approve() {
        let old = csr();
        let mut approved = csr();
        approved["status"] = json!({
            "certificate": "Zm9v",
            "conditions": [{ "type": "Approved", "status": "True" }],
        });
        CertificateSigningRequests.prepare_for_subresource_update("approval", &mut approved, &old);
        assert!(approved["status"].get("certificate").is_none());
        assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
        let mut signed = approved.clone();
        signed["status"] = json!({ "certificate": "Zm9v", "conditions": [] });
        CertificateSigningRequests.prepare_for_subresource_update("status", &mut signed, &approved);
        assert_eq!(signed["status"]["certificate"], "Zm9v");
        assert_eq!(
            signed["status"]["conditions"][0]["type"], "Approved",
            "a signer keeps the approval it did not write"
        );
    }

    #[test]
    fn approved_and_denied_together_are_invalid() {
        let mut object = csr();
        object["status"] = json!({ "conditions": [
            { "type": "Approved", "status": "True" },
            { "type": "Denied", "status": "True" },
        ] });
        let problems = CertificateSigningRequests.validate(&object);
        assert!(
            problems
                .iter()
                .any(|(_, why)| why.contains("mutually exclusive"))
        );
    }

    #[test]
    fn a_request_that_is_not_a_csr_is_invalid() {
        let mut object = csr();
        object["spec"]["request"] = json!("bm90IGEgY3Ny");
        object["spec"]["signerName"] = json!("nodomain");
        let fields: Vec<String> = CertificateSigningRequests
            .validate(&object)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(fields, ["spec.request", "spec.signerName"]);
    }

    #[test]
    fn the_condition_column_reads_like_upstreams() {
        let mut object = csr();
        assert_eq!(condition(&object), "Pending");
        object["status"] = json!({
            "certificate": "Zm9v",
            "conditions": [{ "type": "Approved", "status": "True" }],
        });
        assert_eq!(condition(&object), "Approved,Issued");
        object["status"]["conditions"] = json!([
            { "type": "Approved", "status": "True" },
            { "type": "Failed", "status": "True" },
        ]);
        object["status"]["certificate"] = json!("");
        assert_eq!(condition(&object), "Approved,Failed");
        object["status"]["conditions"] = json!([
            { "type": "Approved", "status": "True" },
            { "type": "Denied", "status": "True" },
        ]);
        assert_eq!(condition(&object), "Denied");
    }
}

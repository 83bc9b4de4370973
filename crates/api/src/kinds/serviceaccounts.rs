//! ServiceAccounts: the `kubectl get serviceaccounts` table (how many secrets they list).

use serde_json::Value;
use time::OffsetDateTime;

use super::defaulting::drop_generation;
use super::printing::{self, AGE, NAME, column, items};
use super::{Column, Kind};

pub struct ServiceAccounts;

const COLUMNS: &[Column] = &[
    NAME,
    column(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret",
    ),
    AGE,
];

impl Kind for ServiceAccounts {
    fn returns_deleted_object(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, object: &mut Value) {
        drop_generation(object);
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(COLUMNS)
    }

    fn cells(&self, object: &Value) -> Vec<Value> {
        row(object, OffsetDateTime::now_utc())
    }
}

fn row(account: &Value, now: OffsetDateTime) -> Vec<Value> {
    vec![
        printing::name(account),
        (items(&account["secrets"]).len() as i64).into(),
        printing::age(account, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::printing::at;
    use serde_json::json;

    #[test]
    fn service_accounts_have_no_generation() {
        let mut object = json!({"metadata": {"name": "x", "generation": 1}});
        ServiceAccounts.prepare_for_create(&mut object);
        assert!(object["metadata"].get("generation").is_none());
    }

    #[test]
    fn a_service_account_counts_its_secrets() {
        let account = json!({
            "metadata": { "name": "default", "creationTimestamp": "2024-03-01T12:00:00Z" },
        });
        assert_eq!(
            json!(row(&account, at("2026-03-01T12:00:00Z"))),
            json!(["default", 0, "2y"])
        );
        let with_secret = json!({ "secrets": [{ "name": "token" }] });
        assert_eq!(row(&with_secret, at("2026-03-01T12:00:00Z"))[1], 1);
    }
}

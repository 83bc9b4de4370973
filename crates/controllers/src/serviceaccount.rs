//! The serviceaccount controller: every active namespace has a `default` ServiceAccount, made
//! when the namespace appears and made again if it is deleted, as upstream's
//! `ServiceAccountsController` keeps it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use r8s_informers::Informers;

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("namespace {namespace}: {action}: {source}")]
pub struct Error {
    namespace: String,
    action: &'static str,
    source: kube::Error,
}

struct Context {
    client: Client,
}

/// Whether the namespace should get a `default` ServiceAccount now: not while it is going.
pub fn wants_default(namespace: &Namespace, default_exists: bool) -> bool {
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating");
    !terminating && !default_exists
}

pub fn default_service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = namespace.name_any();
    let err = |action| {
        let namespace = name.clone();
        move |source| Error {
            namespace,
            action,
            source,
        }
    };
    let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name);
    let exists = accounts
        .get_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(err("get the default ServiceAccount"))?
        .is_some();
    if !wants_default(&namespace, exists) {
        return Ok(Action::await_change());
    }
    match accounts
        .create(&PostParams::default(), &default_service_account(&name))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        // Made meanwhile, or the namespace began terminating: both end the job.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(err("create the default ServiceAccount")(e)),
    }
}

fn error_policy(_namespace: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "serviceaccount controller");
    Action::requeue(RETRY)
}

pub async fn run(informers: Arc<Informers>) -> anyhow::Result<()> {
    let client = informers.client().clone();
    let accounts = Api::<ServiceAccount>::all(client.clone());
    // A `default` ServiceAccount going away is its namespace's business.
    let config = watcher::Config::default().fields("metadata.name=default");
    crate::controller_for::<Namespace>(&informers)
        .await
        .watches(accounts, config, |account| {
            account.namespace().map(|ns| ObjectRef::new(&ns))
        })
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn an_active_namespace_without_default_gets_one() {
        assert!(wants_default(&Namespace::default(), false));
        assert!(!wants_default(&Namespace::default(), true));
    }

    #[test]
    fn a_terminating_namespace_gets_none() {
        let mut deleting = Namespace::default();
        deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(!wants_default(&deleting, false));
        let terminating = Namespace {
            status: Some(NamespaceStatus {
                phase: Some("Terminating".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!wants_default(&terminating, false));
    }

    #[test]
    fn the_default_account_is_named_default_in_its_namespace() {
        let account = default_service_account("team-a");
        assert_eq!(account.metadata.name.as_deref(), Some("default"));
        assert_eq!(account.metadata.namespace.as_deref(), Some("team-a"));
    }
}

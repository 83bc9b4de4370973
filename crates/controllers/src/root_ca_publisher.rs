//! The root-ca-cert-publisher: every active namespace has a `kube-root-ca.crt` ConfigMap with
//! the cluster CA, which pods mount to trust the API server; one that is deleted or edited is
//! put back, as upstream's publisher does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("namespace {namespace}: {action} {CONFIG_MAP}: {source}")]
pub struct Error {
    namespace: String,
    action: &'static str,
    source: kube::Error,
}

struct Context {
    client: Client,
    ca_pem: String,
}

/// What a namespace's ConfigMap needs.
#[derive(Debug, PartialEq)]
pub enum Step {
    Nothing,
    Create(ConfigMap),
    Update(ConfigMap),
}

pub fn step(namespace: &Namespace, existing: Option<&ConfigMap>, ca_pem: &str) -> Step {
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Terminating");
    if terminating {
        return Step::Nothing;
    }
    let data = BTreeMap::from([("ca.crt".to_owned(), ca_pem.to_owned())]);
    let Some(existing) = existing else {
        return Step::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.to_owned()),
                namespace: namespace.metadata.name.clone(),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_owned(),
                    DESCRIPTION.to_owned(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        });
    };
    let described = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| d == DESCRIPTION);
    if existing.data.as_ref() == Some(&data) && described {
        return Step::Nothing;
    }
    // Other annotations and labels someone added stay; the data is ours alone.
    let mut fixed = existing.clone();
    fixed.data = Some(data);
    fixed.binary_data = None;
    fixed
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned());
    Step::Update(fixed)
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
    let maps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &name);
    let existing = maps.get_opt(CONFIG_MAP).await.map_err(err("get"))?;
    let written = match step(&namespace, existing.as_ref(), &ctx.ca_pem) {
        Step::Nothing => return Ok(Action::await_change()),
        Step::Create(map) => maps.create(&PostParams::default(), &map).await,
        Step::Update(map) => maps.replace(CONFIG_MAP, &PostParams::default(), &map).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        // Someone wrote it meanwhile (the next event looks again), or the namespace is going.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(err("write")(e)),
    }
}

fn error_policy(_namespace: Arc<Namespace>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "root-ca-cert-publisher");
    Action::requeue(RETRY)
}

pub async fn run(client: Client, ca_pem: String) -> anyhow::Result<()> {
    anyhow::ensure!(
        !ca_pem.trim().is_empty(),
        "root-ca-cert-publisher: no cluster CA was given"
    );
    let namespaces = Api::<Namespace>::all(client.clone());
    let maps = Api::<ConfigMap>::all(client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(maps, config, |map| {
            map.namespace().map(|ns| ObjectRef::new(&ns))
        })
        .run(
            reconcile,
            error_policy,
            Arc::new(Context { client, ca_pem }),
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_namespace_without_the_config_map_gets_it_with_the_ca_and_description() {
        let Step::Create(map) = step(&namespace("team"), None, CA) else {
            panic!("expected a create");
        };
        assert_eq!(map.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert_eq!(map.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(map.data.unwrap()["ca.crt"], CA);
        assert_eq!(
            map.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }

    #[test]
    fn an_intact_config_map_is_left_alone() {
        let Step::Create(map) = step(&namespace("team"), None, CA) else {
            panic!("expected a create");
        };
        assert_eq!(step(&namespace("team"), Some(&map), CA), Step::Nothing);
    }

    #[test]
    fn an_edited_config_map_gets_the_ca_back_and_keeps_other_annotations() {
        let Step::Create(mut map) = step(&namespace("team"), None, CA) else {
            panic!("expected a create");
        };
        map.data = Some(BTreeMap::from([("ca.crt".into(), "forged".into())]));
        map.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("note".into(), "mine".into());
        let Step::Update(fixed) = step(&namespace("team"), Some(&map), CA) else {
            panic!("expected an update");
        };
        assert_eq!(fixed.data.unwrap()["ca.crt"], CA);
        assert_eq!(fixed.metadata.annotations.unwrap()["note"], "mine");
    }

    #[test]
    fn a_terminating_namespace_is_left_alone() {
        let mut ns = namespace("going");
        ns.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(step(&ns, None, CA), Step::Nothing);
    }
}

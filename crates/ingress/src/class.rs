//! Which Ingresses this controller serves, by IngressClass as upstream defines it, and the
//! `r8s` IngressClass it makes sure exists.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressClassSpec};
use kube::api::{Api, ObjectMeta, PostParams};

/// The `spec.controller` of IngressClasses this controller implements.
pub const CONTROLLER: &str = "r8s.io/ingress";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// Deprecated since Ingress v1, still honoured by upstream controllers, and over the field.
const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Whether `ingress` is served by the controller of IngressClass `class`: its legacy
/// annotation names `class`; or it has none and `spec.ingressClassName` names `class` or
/// another IngressClass of [`CONTROLLER`]; or it names no class and ours is the default.
pub fn serves(ingress: &Ingress, classes: &[IngressClass], class: &str) -> bool {
    if let Some(legacy) = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
    {
        return legacy == class;
    }
    let named = ingress
        .spec
        .as_ref()
        .and_then(|spec| spec.ingress_class_name.as_deref());
    let ours = |c: &IngressClass| {
        c.metadata.name.as_deref() == Some(class)
            || c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
    };
    match named {
        Some(name) => {
            name == class
                || classes
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some(name) && ours(c))
        }
        None => classes.iter().any(|c| ours(c) && is_default(c)),
    }
}

fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The IngressClass `name` of [`CONTROLLER`], marked the cluster's default.
pub fn default_class(name: &str) -> IngressClass {
    IngressClass {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            annotations: Some(BTreeMap::from([(
                DEFAULT_CLASS_ANNOTATION.to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(IngressClassSpec {
            controller: Some(CONTROLLER.to_owned()),
            parameters: None,
        }),
    }
}

/// Creates the IngressClass `name` unless it exists. `Ok(true)` when there is nothing more to
/// do: created, already there (left as its owner made it), or not ours to create.
pub async fn ensure(client: kube::Client, name: &str) -> Result<bool, kube::Error> {
    let api = Api::<IngressClass>::all(client);
    match api
        .create(&PostParams::default(), &default_class(name))
        .await
    {
        Ok(_) => {
            tracing::info!("created IngressClass {name} (default, controller {CONTROLLER})");
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            tracing::info!(
                "may not create IngressClass {name} ({}); Ingresses must name an existing class",
                status.message
            );
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(class: Option<&str>, legacy: Option<&str>) -> Ingress {
        let mut annotations = serde_json::Map::new();
        if let Some(legacy) = legacy {
            annotations.insert(LEGACY_CLASS_ANNOTATION.into(), json!(legacy));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
            "spec": {"ingressClassName": class},
        }))
        .unwrap()
    }

    fn class(name: &str, controller: &str, default: bool) -> IngressClass {
        let mut class = default_class(name);
        class.spec.as_mut().unwrap().controller = Some(controller.into());
        if !default {
            class.metadata.annotations = None;
        }
        class
    }

    #[test]
    fn an_ingress_naming_the_class_is_served() {
        assert!(serves(&ingress(Some("r8s"), None), &[], "r8s"));
        assert!(!serves(&ingress(Some("nginx"), None), &[], "r8s"));
    }

    #[test]
    fn an_ingress_naming_another_class_of_this_controller_is_served() {
        let classes = [class("internal", CONTROLLER, false)];
        assert!(serves(&ingress(Some("internal"), None), &classes, "r8s"));
    }

    #[test]
    fn an_ingress_without_class_is_served_only_when_ours_is_the_default() {
        let unnamed = ingress(None, None);
        assert!(serves(&unnamed, &[class("r8s", CONTROLLER, true)], "r8s"));
        assert!(!serves(&unnamed, &[class("r8s", CONTROLLER, false)], "r8s"));
        assert!(!serves(
            &unnamed,
            &[class("nginx", "k8s.io/nginx", true)],
            "r8s"
        ));
        assert!(!serves(&unnamed, &[], "r8s"));
    }

    #[test]
    fn the_legacy_annotation_decides_over_the_field() {
        assert!(serves(&ingress(None, Some("r8s")), &[], "r8s"));
        assert!(!serves(&ingress(Some("r8s"), Some("nginx")), &[], "r8s"));
    }
}

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::endpointslice::tests::cache;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn labels(app: &str) -> Option<BTreeMap<String, String>> {
    Some([("app".to_string(), app.to_string())].into())
}

fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            selector: Some(LabelSelector {
                match_labels: labels("web"),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: labels("web"),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn covered(pdb: &PodDisruptionBudget, pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    covered_pods(pdb, &cache(pods))
}

fn condition(status: &PodDisruptionBudgetStatus) -> (String, String) {
    let c = &status.conditions.as_ref().unwrap()[0];
    assert_eq!(c.type_, "DisruptionAllowed");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn pdb_allows_disruptions_above_min_available() {
    let pdb = budget(Some(IntOrString::Int(2)), None);
    let pods = covered(
        &pdb,
        vec![
            pod("a", true),
            pod("b", true),
            pod("c", true),
            pod("d", false),
        ],
    );
    let (status, _) = status(&pdb, &pods, None, at(100));
    assert_eq!(status.expected_pods, Some(4));
    assert_eq!(status.current_healthy, Some(3));
    assert_eq!(status.desired_healthy, Some(2));
    assert_eq!(status.disruptions_allowed, Some(1));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(condition(&status), ("True".into(), "SufficientPods".into()));
}

#[test]
fn pdb_at_min_available_allows_none() {
    let pdb = budget(Some(IntOrString::Int(2)), None);
    let pods = covered(&pdb, vec![pod("a", true), pod("b", true)]);
    let (status, _) = status(&pdb, &pods, None, at(100));
    assert_eq!(status.disruptions_allowed, Some(0));
    assert_eq!(
        condition(&status),
        ("False".into(), "InsufficientPods".into())
    );
}

#[test]
fn max_unavailable_percent_counts_from_the_controllers_scale() {
    let pdb = budget(None, Some(IntOrString::String("25%".into())));
    let pods = covered(&pdb, vec![pod("a", true), pod("b", true), pod("c", true)]);
    // Four replicas wanted, one missing: 25% of 4 rounds up to 1 unavailable, 3 desired.
    let (status, _) = status(&pdb, &pods, Some(4), at(100));
    assert_eq!(status.expected_pods, Some(4));
    assert_eq!(status.desired_healthy, Some(3));
    assert_eq!(status.disruptions_allowed, Some(0));
}

#[test]
fn min_available_percent_rounds_up() {
    let pdb = budget(Some(IntOrString::String("50%".into())), None);
    let pods = covered(&pdb, vec![pod("a", true), pod("b", true), pod("c", true)]);
    let (status, _) = status(&pdb, &pods, Some(3), at(100));
    assert_eq!(status.desired_healthy, Some(2));
    assert_eq!(status.disruptions_allowed, Some(1));
}

#[test]
fn evicted_pods_stay_out_of_the_healthy_count_until_gone_or_two_minutes_pass() {
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    pdb.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(
            [
                ("a".to_string(), Time(at(50))),
                ("b".to_string(), Time(at(100))),
                ("gone".to_string(), Time(at(100))),
            ]
            .into(),
        ),
        ..Default::default()
    });
    let pods = covered(&pdb, vec![pod("a", true), pod("b", true), pod("c", true)]);
    let (status, next) = status(&pdb, &pods, None, at(180));
    let kept: Vec<&String> = status.disrupted_pods.as_ref().unwrap().keys().collect();
    assert_eq!(kept, vec!["b"], "a expired at 170, gone has no pod");
    assert_eq!(status.current_healthy, Some(2));
    assert_eq!(next, Some(at(220)));
}

#[test]
fn a_budget_without_selector_covers_no_pods() {
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    pdb.spec.as_mut().unwrap().selector = None;
    assert!(covered(&pdb, vec![pod("a", true)]).is_empty());
}

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, Pod, PodCondition, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::slices::{self, MAX_ENDPOINTS_PER_SLICE, plan};
use super::*;

fn labels(app: &str) -> Option<BTreeMap<String, String>> {
    Some([("app".to_string(), app.to_string())].into())
}

pub fn service(target_port: IntOrString) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("svc-uid".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: labels("web"),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(target_port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            labels: labels("web"),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".into()),
            containers: vec![Container {
                name: "app".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("web".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn cache<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    writer.as_reader()
}

fn zone_node() -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            labels: Some([("topology.kubernetes.io/zone".to_string(), "z1".to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

fn conditions(slice: &EndpointSlice) -> Vec<(bool, bool, bool)> {
    slice
        .endpoints
        .iter()
        .flatten()
        .map(|e| {
            let c = e.conditions.clone().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        })
        .collect()
}

#[test]
fn a_service_gets_one_slice_with_its_ready_pods_and_named_ports() {
    let svc = service(IntOrString::String("web".into()));
    let pods = arcs(vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", true)]);
    let plan = plan(&svc, &pods, &cache(vec![zone_node()]), Vec::new());
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let ports = slice.ports.clone().unwrap();
    assert_eq!(ports[0].port, Some(8080));
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let endpoint = &slice.endpoints.as_ref().unwrap()[0];
    assert_eq!(endpoint.addresses, vec!["10.0.0.1"]);
    assert_eq!(endpoint.node_name.as_deref(), Some("node-a"));
    assert_eq!(endpoint.zone.as_deref(), Some("z1"));
    assert_eq!(
        endpoint.target_ref.as_ref().unwrap().name.as_deref(),
        Some("a")
    );
    assert_eq!(conditions(slice), vec![(true, true, false); 2]);
}

#[test]
fn endpoint_slices_mark_terminating_pods_not_ready() {
    let svc = service(IntOrString::Int(8080));
    let mut terminating = pod("a", "10.0.0.1", true);
    terminating.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(10).unwrap()));
    let plan = plan(
        &svc,
        &arcs(vec![terminating]),
        &cache(Vec::new()),
        Vec::new(),
    );
    assert_eq!(conditions(&plan.create[0]), vec![(false, true, true)]);
}

#[test]
fn unready_pods_are_listed_not_ready_unless_the_service_publishes_them() {
    let mut svc = service(IntOrString::Int(8080));
    let pods = arcs(vec![pod("a", "10.0.0.1", false)]);
    let hidden = plan(&svc, &pods, &cache(Vec::new()), Vec::new());
    assert_eq!(conditions(&hidden.create[0]), vec![(false, false, false)]);
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let published = plan(&svc, &pods, &cache(Vec::new()), Vec::new());
    assert_eq!(conditions(&published.create[0]), vec![(true, true, false)]);
}

#[test]
fn pods_without_an_address_or_finished_are_left_out() {
    let svc = service(IntOrString::Int(8080));
    let mut no_ip = pod("a", "10.0.0.1", true);
    no_ip.status.as_mut().unwrap().pod_ip = None;
    let mut done = pod("b", "10.0.0.2", true);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let plan = plan(
        &svc,
        &arcs(vec![no_ip, done]),
        &cache(Vec::new()),
        Vec::new(),
    );
    assert_eq!(plan.create.len(), 1, "one empty placeholder slice");
    assert!(plan.create[0].endpoints.as_ref().unwrap().is_empty());
    assert!(plan.create[0].ports.is_none());
}

#[test]
fn a_named_port_the_pod_does_not_declare_is_left_out_for_that_pod() {
    let svc = service(IntOrString::String("metrics".into()));
    let plan = plan(
        &svc,
        &arcs(vec![pod("a", "10.0.0.1", true)]),
        &cache(Vec::new()),
        Vec::new(),
    );
    assert!(plan.create[0].ports.is_none());
    assert_eq!(plan.create[0].endpoints.as_ref().unwrap().len(), 1);
}

#[test]
fn more_than_a_hundred_endpoints_fill_several_slices() {
    let svc = service(IntOrString::Int(8080));
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.{}.{}", i / 200, i % 200),
                true,
            )
        })
        .collect();
    let plan = plan(&svc, &arcs(pods), &cache(Vec::new()), Vec::new());
    let sizes: Vec<usize> = plan
        .create
        .iter()
        .map(|s| s.endpoints.as_ref().unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        vec![MAX_ENDPOINTS_PER_SLICE, MAX_ENDPOINTS_PER_SLICE, 50]
    );
}

fn existing(mut slice: EndpointSlice, name: &str) -> Arc<EndpointSlice> {
    slice.metadata.name = Some(name.into());
    slice.metadata.generate_name = None;
    Arc::new(slice)
}

#[test]
fn an_up_to_date_slice_is_left_alone() {
    let svc = service(IntOrString::Int(8080));
    let pods = arcs(vec![pod("a", "10.0.0.1", true)]);
    let first = plan(&svc, &pods, &cache(Vec::new()), Vec::new());
    let current = existing(first.create[0].clone(), "web-abcde");
    let again = plan(&svc, &pods, &cache(Vec::new()), vec![current]);
    assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
}

#[test]
fn scaling_down_removes_endpoints_from_the_slice_holding_them() {
    let svc = service(IntOrString::Int(8080));
    let three = arcs(vec![
        pod("a", "10.0.0.1", true),
        pod("b", "10.0.0.2", true),
        pod("c", "10.0.0.3", true),
    ]);
    let first = plan(&svc, &three, &cache(Vec::new()), Vec::new());
    let current = existing(first.create[0].clone(), "web-abcde");
    let one = vec![three[0].clone()];
    let next = plan(&svc, &one, &cache(Vec::new()), vec![current]);
    assert!(next.create.is_empty() && next.delete.is_empty());
    assert_eq!(next.update.len(), 1);
    assert_eq!(next.update[0].name_any(), "web-abcde");
    assert_eq!(next.update[0].endpoints.as_ref().unwrap().len(), 1);
}

#[test]
fn slices_whose_ports_are_no_longer_wanted_are_deleted() {
    let svc = service(IntOrString::Int(8080));
    let pods = arcs(vec![pod("a", "10.0.0.1", true)]);
    let first = plan(&svc, &pods, &cache(Vec::new()), Vec::new());
    let old = existing(first.create[0].clone(), "web-old");
    let moved = service(IntOrString::Int(9090));
    let next = plan(&moved, &pods, &cache(Vec::new()), vec![old]);
    assert_eq!(next.delete.len(), 1);
    assert_eq!(next.create.len(), 1);
    assert_eq!(next.create[0].ports.as_ref().unwrap()[0].port, Some(9090));
}

#[test]
fn a_pod_that_stops_matching_still_resyncs_the_service_listing_it() {
    let svc = service(IntOrString::Int(8080));
    let listed = existing(
        plan(
            &svc,
            &arcs(vec![pod("a", "10.0.0.1", true)]),
            &cache(Vec::new()),
            Vec::new(),
        )
        .create[0]
            .clone(),
        "web-abcde",
    );
    let mut relabelled = pod("a", "10.0.0.1", true);
    relabelled.metadata.labels = labels("other");
    let slices_cache = cache(vec![(*listed).clone()]);
    let refs = services_of(&relabelled, &cache(vec![svc]), &slices_cache);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "web");
    assert_eq!(
        slices::labels(&service(IntOrString::Int(1)))["kubernetes.io/service-name"],
        "web"
    );
}

use std::collections::{HashMap, HashSet};

use super::*;

fn resource(group: &str, version: &str, plural: &str) -> &'static Resource {
    find(group, version, plural)
        .unwrap_or_else(|| panic!("{group}/{version}/{plural} is missing from the catalogue"))
}

fn sorted(items: &[&str]) -> bool {
    items.windows(2).all(|pair| pair[0] < pair[1])
}

#[test]
fn no_two_resources_share_group_version_and_plural() {
    let mut seen = HashSet::new();
    for r in catalogue() {
        assert!(
            seen.insert((r.group, r.version, r.plural)),
            "{}/{} listed twice",
            r.api_version(),
            r.plural
        );
    }
}

#[test]
fn no_two_resources_share_group_version_and_kind() {
    let mut seen = HashSet::new();
    for r in catalogue() {
        assert!(
            seen.insert((r.group, r.version, r.kind)),
            "{} {} listed twice",
            r.api_version(),
            r.kind
        );
    }
}

/// A short name may be served in several groups or versions (`ev` for core and events.k8s.io
/// events, `hpa` in autoscaling v1 and v2) but always names the same plural.
#[test]
fn each_short_name_names_one_plural() {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for r in catalogue() {
        for &short in r.short_names {
            let plural = *owner.entry(short).or_insert(r.plural);
            assert_eq!(plural, r.plural, "short name {short:?} names two resources");
        }
    }
}

#[test]
fn no_short_name_is_another_resources_name() {
    for r in catalogue() {
        for &short in r.short_names {
            for other in catalogue().iter().filter(|o| o.plural != r.plural) {
                assert_ne!(short, other.plural, "{} short name", r.plural);
                assert_ne!(short, other.singular, "{} short name", r.plural);
            }
        }
    }
}

#[test]
fn singular_is_the_lowercased_kind() {
    for r in catalogue() {
        assert_eq!(r.singular, r.kind.to_lowercase(), "{}", r.plural);
    }
}

#[test]
fn every_resource_group_version_is_listed_in_groups() {
    let listed: HashSet<(&str, &str)> = groups()
        .into_iter()
        .flat_map(|g| g.versions.into_iter().map(move |v| (g.group, v)))
        .collect();
    for r in catalogue().iter().filter(|r| !r.is_core()) {
        assert!(
            listed.contains(&(r.group, r.version)),
            "{} is not in groups()",
            r.api_version()
        );
    }
}

#[test]
fn every_listed_group_version_serves_a_resource() {
    for g in groups() {
        for v in &g.versions {
            assert!(
                catalogue()
                    .iter()
                    .any(|r| r.group == g.group && r.version == *v),
                "{}/{v} serves nothing",
                g.group
            );
        }
    }
}

#[test]
fn groups_exclude_core_and_prefer_their_first_version() {
    let mut seen = HashSet::new();
    for g in groups() {
        assert!(!g.group.is_empty());
        assert!(seen.insert(g.group), "{} listed twice", g.group);
        assert_eq!(g.preferred, g.versions[0], "{}", g.group);
    }
}

#[test]
fn catalogue_lists_core_first_then_groups_in_discovery_order() {
    let order: Vec<(&str, &str)> = std::iter::once(("", "v1"))
        .chain(
            groups()
                .into_iter()
                .flat_map(|g| g.versions.into_iter().map(move |v| (g.group, v))),
        )
        .collect();
    let position = |r: &Resource| {
        order
            .iter()
            .position(|&gv| gv == (r.group, r.version))
            .unwrap_or_else(|| panic!("{} has no place in discovery order", r.api_version()))
    };
    for pair in catalogue().windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (pa, pb) = (position(a), position(b));
        assert!(
            pa < pb || (pa == pb && a.plural < b.plural),
            "{}/{} is listed before {}/{}",
            a.api_version(),
            a.plural,
            b.api_version(),
            b.plural
        );
    }
}

#[test]
fn verbs_and_subresources_are_sorted_as_discovery_sorts_them() {
    for r in catalogue() {
        assert!(sorted(r.verbs), "{} verbs", r.plural);
        let names: Vec<&str> = r.subresources.iter().map(|s| s.name).collect();
        assert!(sorted(&names), "{} subresources", r.plural);
        for s in r.subresources {
            assert!(sorted(s.verbs), "{}/{} verbs", r.plural, s.name);
        }
    }
}

#[test]
fn status_subresources_read_and_write_the_parent_kind() {
    for r in catalogue() {
        if let Some(status) = r.has_subresource("status") {
            assert_eq!(
                (status.group, status.version, status.kind),
                (r.group, r.version, r.kind),
                "{}/status",
                r.plural
            );
            assert_eq!(status.verbs, ["get", "patch", "update"]);
        }
    }
}

#[test]
fn categories_are_all_or_api_extensions() {
    let mut in_all: Vec<&str> = Vec::new();
    for r in catalogue() {
        for &category in r.categories {
            match category {
                "all" => in_all.push(r.plural),
                "api-extensions" => {}
                other => panic!("{} has unexpected category {other:?}", r.plural),
            }
        }
    }
    in_all.sort_unstable();
    in_all.dedup();
    assert_eq!(
        in_all,
        [
            "cronjobs",
            "daemonsets",
            "deployments",
            "horizontalpodautoscalers",
            "jobs",
            "pods",
            "replicasets",
            "replicationcontrollers",
            "services",
            "statefulsets",
        ]
    );
}

#[test]
fn find_and_find_kind_return_every_resource() {
    for r in catalogue() {
        assert!(std::ptr::eq(find(r.group, r.version, r.plural).unwrap(), r));
        assert!(std::ptr::eq(
            find_kind(r.group, r.version, r.kind).unwrap(),
            r
        ));
    }
}

#[test]
fn find_misses_unknown_and_mismatched_names() {
    assert!(find("", "v1", "widgets").is_none());
    assert!(find("apps", "v1", "pods").is_none());
    assert!(find("apps", "v1beta1", "deployments").is_none());
    assert!(find("", "v1", "pod").is_none(), "singular is not a plural");
    assert!(find_kind("", "v1", "Deployment").is_none());
    assert!(find_kind("policy", "v1beta1", "PodSecurityPolicy").is_none());
}

#[test]
fn storage_prefix_omits_only_the_core_group() {
    assert_eq!(
        resource("", "v1", "pods").storage_prefix(),
        "/registry/pods"
    );
    assert_eq!(
        resource("apps", "v1", "deployments").storage_prefix(),
        "/registry/apps/deployments"
    );
    for r in catalogue().iter().filter(|r| r.stored_as.is_none()) {
        let expected = if r.group.is_empty() {
            format!("/registry/{}", r.plural)
        } else {
            format!("/registry/{}/{}", r.group, r.plural)
        };
        assert_eq!(r.storage_prefix(), expected);
    }
}

#[test]
fn resources_stored_as_another_share_its_storage() {
    let events = resource("events.k8s.io", "v1", "events");
    assert!(std::ptr::eq(events.storage(), resource("", "v1", "events")));
    assert_eq!(events.storage_prefix(), "/registry/events");
    let v1 = resource("autoscaling", "v1", "horizontalpodautoscalers");
    assert_eq!(v1.storage().version, "v2");
    assert_eq!(
        v1.storage_prefix(),
        "/registry/autoscaling/horizontalpodautoscalers"
    );
    for r in catalogue() {
        let storage = r.storage();
        assert!(storage.stored_as.is_none(), "{} is stored once", r.plural);
        assert_eq!((storage.kind, storage.namespaced), (r.kind, r.namespaced));
        assert_eq!(storage.storage_prefix(), r.storage_prefix());
    }
}

#[test]
fn api_version_joins_group_and_version() {
    assert_eq!(resource("", "v1", "configmaps").api_version(), "v1");
    assert_eq!(
        resource("apps", "v1", "deployments").api_version(),
        "apps/v1"
    );
    assert_eq!(
        resource("autoscaling", "v2", "horizontalpodautoscalers").api_version(),
        "autoscaling/v2"
    );
}

#[test]
fn pods_are_namespaced_po_in_all_with_upstream_subresources() {
    let pods = resource("", "v1", "pods");
    assert!(pods.is_core() && pods.namespaced);
    assert_eq!(pods.kind, "Pod");
    assert_eq!(pods.short_names, ["po"]);
    assert_eq!(pods.categories, ["all"]);
    let names: Vec<&str> = pods.subresources.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    );
    let status = pods.has_subresource("status").unwrap();
    assert_eq!(
        (status.group, status.version, status.kind),
        ("", "v1", "Pod")
    );
    let eviction = pods.has_subresource("eviction").unwrap();
    assert_eq!(
        (eviction.group, eviction.version, eviction.kind),
        ("policy", "v1", "Eviction")
    );
    assert_eq!(eviction.verbs, ["create"]);
    assert_eq!(
        pods.has_subresource("exec").unwrap().verbs,
        ["create", "get"]
    );
    assert_eq!(pods.has_subresource("log").unwrap().verbs, ["get"]);
    assert!(pods.has_subresource("scale").is_none());
}

#[test]
fn workload_scale_subresources_are_autoscaling_v1_scale() {
    for (group, plural) in [
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("", "replicationcontrollers"),
    ] {
        let scale = resource(group, "v1", plural)
            .has_subresource("scale")
            .unwrap();
        assert_eq!(
            (scale.group, scale.version, scale.kind),
            ("autoscaling", "v1", "Scale"),
            "{plural}/scale"
        );
        assert_eq!(scale.verbs, ["get", "patch", "update"]);
    }
    assert_eq!(
        resource("apps", "v1", "deployments").short_names,
        ["deploy"]
    );
}

#[test]
fn namespaces_are_cluster_scoped_ns_without_deletecollection() {
    let namespaces = resource("", "v1", "namespaces");
    assert!(!namespaces.namespaced);
    assert_eq!(namespaces.short_names, ["ns"]);
    assert!(!namespaces.verbs.contains(&"deletecollection"));
    assert_eq!(
        namespaces.has_subresource("finalize").unwrap().verbs,
        ["update"]
    );
}

#[test]
fn events_are_served_in_core_and_events_k8s_io() {
    for group in ["", "events.k8s.io"] {
        let events = resource(group, "v1", "events");
        assert_eq!(events.kind, "Event");
        assert_eq!(events.short_names, ["ev"]);
        assert!(events.namespaced);
    }
}

#[test]
fn reviews_are_create_only() {
    assert_eq!(
        resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews").verbs,
        ["create"]
    );
    for (group, plural) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ("", "bindings"),
    ] {
        assert_eq!(resource(group, "v1", plural).verbs, ["create"], "{plural}");
    }
    assert_eq!(
        resource("", "v1", "componentstatuses").verbs,
        ["get", "list"]
    );
}

#[test]
fn autoscaling_prefers_v2_and_serves_hpa_in_both() {
    let autoscaling = groups()
        .into_iter()
        .find(|g| g.group == "autoscaling")
        .unwrap();
    assert_eq!(autoscaling.versions, ["v2", "v1"]);
    assert_eq!(autoscaling.preferred, "v2");
    for version in ["v2", "v1"] {
        let hpa = find_kind("autoscaling", version, "HorizontalPodAutoscaler").unwrap();
        assert_eq!(hpa.short_names, ["hpa"]);
        assert_eq!(hpa.categories, ["all"]);
    }
}

#[test]
fn discovery_starts_with_apiregistration_then_apps() {
    let names: Vec<&str> = groups().iter().map(|g| g.group).collect();
    assert_eq!(
        &names[..3],
        ["apiregistration.k8s.io", "apps", "events.k8s.io"]
    );
    // metrics.k8s.io last, where an aggregated metrics-server's APIService puts it.
    assert_eq!(
        &names[names.len() - 2..],
        ["storagemigration.k8s.io", "metrics.k8s.io"]
    );
}

#[test]
fn api_extension_kinds_carry_the_api_extensions_category() {
    for (group, plural) in [
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("apiregistration.k8s.io", "apiservices"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
        ),
        ("admissionregistration.k8s.io", "mutatingadmissionpolicies"),
        (
            "admissionregistration.k8s.io",
            "mutatingadmissionpolicybindings",
        ),
    ] {
        assert_eq!(
            resource(group, "v1", plural).categories,
            ["api-extensions"],
            "{plural}"
        );
    }
    assert_eq!(
        resource("apiextensions.k8s.io", "v1", "customresourcedefinitions").short_names,
        ["crd", "crds"]
    );
}

#[test]
fn dynamic_resource_allocation_is_served_at_v1() {
    for plural in [
        "deviceclasses",
        "devicetaintrules",
        "resourceclaims",
        "resourceclaimtemplates",
        "resourceslices",
    ] {
        resource("resource.k8s.io", "v1", plural);
    }
    assert!(resource("resource.k8s.io", "v1", "resourceclaims").namespaced);
    assert!(!resource("resource.k8s.io", "v1", "resourceslices").namespaced);
}

#[test]
fn service_serving_and_storage_classes_are_v1() {
    assert_eq!(
        resource("networking.k8s.io", "v1", "ipaddresses").short_names,
        ["ip"]
    );
    assert!(
        resource("networking.k8s.io", "v1", "servicecidrs")
            .has_subresource("status")
            .is_some()
    );
    assert_eq!(
        resource("storage.k8s.io", "v1", "volumeattributesclasses").short_names,
        ["vac"]
    );
    assert!(find("networking.k8s.io", "v1beta1", "ipaddresses").is_none());
}

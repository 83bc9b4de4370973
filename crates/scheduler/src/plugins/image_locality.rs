//! ImageLocality: prefers nodes that already hold the pod's images, scaled by how widely each
//! image is spread (so one node holding it doesn't attract every pod).

use crate::cache::{Cache, NodeInfo, PodInfo, normalized_image_name};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin};

pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Per image of the pod: its normalized name and the share of nodes holding it.
struct Spread(Vec<(String, f64)>);

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn score_weight(&self) -> i64 {
        1
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        _: &[&NodeInfo],
        cluster: &Cache,
        state: &mut CycleState,
    ) -> bool {
        if cluster.image_nodes.is_empty() {
            return false;
        }
        let spec = pod.spec();
        let total = cluster.nodes().len().max(1) as f64;
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter_map(|c| c.image.as_deref())
            .map(|image| {
                let name = normalized_image_name(image).into_owned();
                let share = cluster.image_nodes.get(&name).copied().unwrap_or(0) as f64 / total;
                (name, share)
            })
            .collect();
        state.write("ImageLocality", Spread(images));
        true
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        let Some(Spread(images)) = state.read::<Spread>("ImageLocality") else {
            return 0;
        };
        let sum: f64 = images
            .iter()
            .filter_map(|(name, share)| node.images.get(name).map(|size| *size as f64 * share))
            .sum();
        let containers = pod.spec().containers.len() as i64
            + pod
                .spec()
                .init_containers
                .as_ref()
                .map_or(0, |c| c.len() as i64);
        let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
        let sum = (sum as i64).clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{node, pod};
    use k8s_openapi::api::core::v1::ContainerImage;

    #[test]
    fn nodes_holding_the_image_score_higher() {
        let mut with_image = node("a", "1", "1Gi", "9");
        with_image.status.as_mut().unwrap().images = Some(vec![ContainerImage {
            names: Some(vec!["nginx:latest".into()]),
            size_bytes: Some(500 * MB),
        }]);
        let mut cache = Cache::default();
        cache.upsert_node(with_image);
        cache.upsert_node(node("b", "1", "1Gi", "9"));
        let p = PodInfo::new(pod("web", "", ""));
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = cache.nodes().iter().collect();
        assert!(ImageLocality.pre_score(&p, &nodes, &cache, &mut state));
        let a = ImageLocality.score(&p, cache.node("a").unwrap(), &state);
        let b = ImageLocality.score(&p, cache.node("b").unwrap(), &state);
        assert!(a > b, "{a} > {b}");
        assert_eq!(b, 0);
    }
}

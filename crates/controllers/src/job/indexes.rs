//! Completion indexes of an Indexed Job, and their compressed form in `status.completedIndexes`
//! (`"1,3-5,7"`, as upstream writes it).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The completion index a pod runs, from its annotation (or label), if valid.
pub fn of(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let text = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(INDEX_KEY))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(INDEX_KEY)))?;
    text.parse().ok().filter(|i: &i32| *i >= 0)
}

/// Parses `"1,3-5"`; entries that are not numbers or ranges below `limit` are ignored, as
/// upstream ignores indexes beyond `completions` after a scale down.
pub fn parse(text: &str, limit: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            set.extend((first.max(0)..=last.min(limit - 1)).filter(|i| *i < limit));
        }
    }
    set
}

/// Formats indexes as upstream does: ascending, consecutive runs as `a-b`.
pub fn format(set: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in set {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip_in_upstreams_compressed_form() {
        let set = parse("0,2-4,7", 10);
        assert_eq!(set, BTreeSet::from([0, 2, 3, 4, 7]));
        assert_eq!(format(&set), "0,2-4,7");
        assert_eq!(parse("0,2-4,7", 3), BTreeSet::from([0, 2]));
        assert_eq!(format(&BTreeSet::new()), "");
    }
}

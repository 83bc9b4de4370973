//! Label selectors compiled once per pod, so that matching them against thousands of pods and
//! nodes in a scheduling cycle only compares strings.

use std::collections::BTreeMap;
use std::hash::Hasher;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// Node selectors only: the label parses as an integer greater (less) than the value.
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn new(key: &str, operator: &str, values: &[String]) -> Self {
        let (operator, values) = match operator {
            "In" => (Operator::In, values.to_vec()),
            "NotIn" => (Operator::NotIn, values.to_vec()),
            "Exists" => (Operator::Exists, Vec::new()),
            "DoesNotExist" => (Operator::DoesNotExist, Vec::new()),
            "Gt" => (Operator::Gt, values.to_vec()),
            "Lt" => (Operator::Lt, values.to_vec()),
            // Validation rejects other operators; one that slipped through matches nothing
            // rather than everything.
            _ => (Operator::In, Vec::new()),
        };
        Requirement {
            key: key.to_owned(),
            operator,
            values,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(value), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    value > bound
                } else {
                    value < bound
                }
            }
        }
    }
}

/// A compiled `LabelSelector`. `None` (a missing selector) matches nothing; an empty one
/// matches everything, as upstream's `LabelSelectorAsSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
    pub nothing: bool,
    /// [`pair_hash`]es of the `key=value` pairs a matching object must have (the one-value
    /// `In` requirements): scoring tests a selector against thousands of pods per cycle, and
    /// most lack a pair, which a hash lookup tells without comparing strings.
    required_pairs: Vec<u64>,
}

/// A hash of one `key=value` label, the same for every object and selector of the process.
pub fn pair_hash(key: &str, value: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.write_u8(0xff);
    hasher.write(value.as_bytes());
    hasher.finish()
}

/// The sorted [`pair_hash`]es of a label map, for [`Selector::matches_with`].
pub fn pair_hashes(labels: &Labels) -> Vec<u64> {
    let mut hashes: Vec<u64> = labels.iter().map(|(k, v)| pair_hash(k, v)).collect();
    hashes.sort_unstable();
    hashes
}

fn required_pairs(requirements: &[Requirement]) -> Vec<u64> {
    requirements
        .iter()
        .filter(|r| r.operator == Operator::In && r.values.len() == 1)
        .map(|r| pair_hash(&r.key, &r.values[0]))
        .collect()
}

impl Selector {
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Self {
        let Some(selector) = selector else {
            return Selector {
                requirements: Vec::new(),
                nothing: true,
                required_pairs: Vec::new(),
            };
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In,
                values: vec![value.clone()],
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            requirements.push(Requirement::new(
                &expression.key,
                &expression.operator,
                expression.values.as_deref().unwrap_or_default(),
            ));
        }
        Selector::all_of(requirements)
    }

    /// A selector from a plain map (Service, ReplicationController): empty matches nothing.
    pub fn from_map(map: &Labels) -> Self {
        let requirements: Vec<Requirement> = map
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::In,
                values: vec![v.clone()],
            })
            .collect();
        Selector {
            required_pairs: required_pairs(&requirements),
            requirements,
            nothing: map.is_empty(),
        }
    }

    /// A selector of every one of `requirements`.
    pub fn all_of(requirements: Vec<Requirement>) -> Self {
        Selector {
            required_pairs: required_pairs(&requirements),
            requirements,
            nothing: false,
        }
    }

    /// Adds a requirement (keeping the pair hashes complete).
    pub fn require(&mut self, requirement: Requirement) {
        self.required_pairs
            .extend(required_pairs(std::slice::from_ref(&requirement)));
        self.requirements.push(requirement);
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`Selector::matches`] for labels whose [`pair_hashes`] are known: a missing pair
    /// refuses at once; otherwise the strings decide (a hash may collide).
    pub fn matches_with(&self, labels: &Labels, hashes: &[u64]) -> bool {
        !self.nothing
            && self
                .required_pairs
                .iter()
                .all(|pair| hashes.binary_search(pair).is_ok())
            && self.matches(labels)
    }

    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_selector_matches_nothing_and_empty_matches_everything() {
        assert!(!Selector::from_label_selector(None).matches(&labels(&[])));
        assert!(
            Selector::from_label_selector(Some(&LabelSelector::default())).matches(&labels(&[]))
        );
    }

    #[test]
    fn expressions_and_labels_are_anded() {
        let selector = Selector::from_label_selector(Some(&LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        }));
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!selector.matches(&labels(&[("tier", "front")])));
    }

    #[test]
    fn gt_and_lt_compare_integers() {
        let gt = Requirement::new("cores", "Gt", &["4".into()]);
        assert!(gt.matches(&labels(&[("cores", "8")])));
        assert!(!gt.matches(&labels(&[("cores", "4")])));
        assert!(!gt.matches(&labels(&[("cores", "many")])));
        let lt = Requirement::new("cores", "Lt", &["4".into()]);
        assert!(lt.matches(&labels(&[("cores", "2")])));
    }

    #[test]
    fn matching_with_pair_hashes_agrees_with_matching_strings() {
        let selectors = [
            Selector::from_label_selector(Some(&LabelSelector {
                match_labels: Some(labels(&[("app", "web"), ("hash", "1")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["db".into()]),
                }]),
            })),
            Selector::from_map(&labels(&[("app", "web")])),
            Selector::from_map(&labels(&[])),
            Selector::from_label_selector(None),
            Selector::from_label_selector(Some(&LabelSelector::default())),
            Selector::all_of(vec![Requirement::new(
                "app",
                "In",
                &["web".into(), "api".into()],
            )]),
        ];
        let objects = [
            labels(&[("app", "web"), ("hash", "1")]),
            labels(&[("app", "web"), ("hash", "1"), ("tier", "db")]),
            labels(&[("app", "web"), ("hash", "2")]),
            // The key of one pair with the value of another: no pair matches.
            labels(&[("app", "1"), ("hash", "web")]),
            labels(&[("app", "api")]),
            labels(&[]),
        ];
        for selector in &selectors {
            for object in &objects {
                assert_eq!(
                    selector.matches_with(object, &pair_hashes(object)),
                    selector.matches(object),
                    "{selector:?} on {object:?}"
                );
            }
        }
        // A pair the labels lack is refused by its hash alone.
        let web = Selector::from_map(&labels(&[("app", "web")]));
        assert!(!web.matches_with(&labels(&[("app", "web")]), &[]));
        // So is a pair required after the selector was built.
        let mut pinned = Selector::from_map(&labels(&[("app", "web")]));
        pinned.require(Requirement::new("hash", "In", &["1".into()]));
        let both = labels(&[("app", "web"), ("hash", "1")]);
        assert!(pinned.matches_with(&both, &pair_hashes(&both)));
        assert!(!pinned.matches_with(&both, &[pair_hash("app", "web")]));
    }
}

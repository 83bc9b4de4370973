//! Label selectors compiled once per pod, so that matching them against thousands of pods and
//! nodes in a scheduling cycle only compares strings.

use std::collections::BTreeMap;

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
}

impl Selector {
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Self {
        let Some(selector) = selector else {
            return Selector {
                requirements: Vec::new(),
                nothing: true,
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
        Selector {
            requirements,
            nothing: false,
        }
    }

    /// A selector from a plain map (Service, ReplicationController): empty matches nothing.
    pub fn from_map(map: &Labels) -> Self {
        Selector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::In,
                    values: vec![v.clone()],
                })
                .collect(),
            nothing: map.is_empty(),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
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
}

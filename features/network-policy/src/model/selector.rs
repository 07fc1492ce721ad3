//! Label selectors (`metav1.LabelSelector`): matchLabels and matchExpressions, ANDed.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    /// `matchLabels`: every key must be present with this value.
    pub labels: BTreeMap<String, String>,
    /// `matchExpressions`: every one must hold.
    pub exprs: Vec<Expr>,
}

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expr {
    /// The key is present and its value is one of these.
    In(String, Vec<String>),
    /// The key is absent, or its value is none of these.
    NotIn(String, Vec<String>),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    DoesNotExist(String),
    /// An operator the API does not define: matches nothing (fail closed).
    Invalid(String),
}

// === impl Selector ===

impl Selector {
    /// The selector that matches every object.
    pub fn everything() -> Selector {
        Selector::default()
    }

    /// Parses the API's form.
    pub fn from_api(s: &LabelSelector) -> Selector {
        let labels = s.match_labels.clone().unwrap_or_default();
        let exprs = s
            .match_expressions
            .iter()
            .flatten()
            .map(|r| {
                let mut values = r.values.clone().unwrap_or_default();
                values.sort();
                values.dedup();
                let key = r.key.clone();
                match r.operator.as_str() {
                    "In" => Expr::In(key, values),
                    "NotIn" => Expr::NotIn(key, values),
                    "Exists" => Expr::Exists(key),
                    "DoesNotExist" => Expr::DoesNotExist(key),
                    other => Expr::Invalid(format!("{key} {other}")),
                }
            })
            .collect();
        Selector { labels, exprs }
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|e| e.matches(labels))
    }

    /// Whether this is the empty selector.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.exprs.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_everything() {
            return f.write_str("*");
        }
        let mut parts: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(self.exprs.iter().map(|e| match e {
            Expr::In(k, v) => format!("{k} in ({})", v.join(",")),
            Expr::NotIn(k, v) => format!("{k} notin ({})", v.join(",")),
            Expr::Exists(k) => k.clone(),
            Expr::DoesNotExist(k) => format!("!{k}"),
            Expr::Invalid(s) => format!("invalid({s})"),
        }));
        f.write_str(&parts.join(","))
    }
}

// === impl Expr ===

impl Expr {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Expr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Expr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Expr::Exists(k) => labels.contains_key(k),
            Expr::DoesNotExist(k) => !labels.contains_key(k),
            Expr::Invalid(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    fn sel(ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> Selector {
        Selector::from_api(&LabelSelector {
            match_labels: (!ml.is_empty()).then(|| labels(ml)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        })
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel(&[], vec![]);
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
        assert_eq!(s.to_string(), "*");
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = sel(&[("pod", "a"), ("tier", "web")], vec![]);
        assert!(s.matches(&labels(&[("pod", "a"), ("tier", "web"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("pod", "a")])));
        assert!(!s.matches(&labels(&[("pod", "b"), ("tier", "web")])));
    }

    #[test]
    fn operators_follow_the_api() {
        let l = labels(&[("pod", "a")]);
        let none = labels(&[]);
        let in_ = sel(&[], vec![expr("pod", "In", &["a", "b"])]);
        assert!(in_.matches(&l));
        assert!(!in_.matches(&none));
        let not_in = sel(&[], vec![expr("pod", "NotIn", &["a"])]);
        assert!(!not_in.matches(&l));
        assert!(not_in.matches(&none), "NotIn matches an absent key");
        assert!(not_in.matches(&labels(&[("pod", "c")])));
        let exists = sel(&[], vec![expr("pod", "Exists", &[])]);
        assert!(exists.matches(&l));
        assert!(!exists.matches(&none));
        let dne = sel(&[], vec![expr("pod", "DoesNotExist", &[])]);
        assert!(!dne.matches(&l));
        assert!(dne.matches(&none));
        let bogus = sel(&[], vec![expr("pod", "Near", &["a"])]);
        assert!(!bogus.matches(&l), "unknown operators fail closed");
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = sel(&[("ns", "x")], vec![expr("pod", "In", &["a"])]);
        assert!(s.matches(&labels(&[("ns", "x"), ("pod", "a")])));
        assert!(!s.matches(&labels(&[("ns", "y"), ("pod", "a")])));
        assert_eq!(s.to_string(), "ns=x,pod in (a)");
    }
}

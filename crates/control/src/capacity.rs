//! Capacity providers: Fargate's two built-in ones, `FARGATE` and
//! `FARGATE_SPOT`, capacity provider strategies (checked as ECS checks
//! them) and placement by `base` then `weight`.
//!
//! Both providers run tasks the same way in ferry; the difference is that
//! an operator may reclaim a `FARGATE_SPOT` task (a spot interruption,
//! see `docs/services.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EcsError;

/// The on-demand provider.
pub const FARGATE: &str = "FARGATE";
/// The spot provider: its tasks may be interrupted.
pub const FARGATE_SPOT: &str = "FARGATE_SPOT";
/// The providers every account has, in the order ECS lists them.
pub const BUILT_IN: [&str; 2] = [FARGATE, FARGATE_SPOT];

/// `CapacityProviderStrategyItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyItem {
    /// `FARGATE` or `FARGATE_SPOT`.
    pub capacity_provider: String,
    /// 0..=1000 (ECS's default 0).
    #[serde(default)]
    pub weight: i64,
    /// 0..=100000 (ECS's default 0).
    #[serde(default)]
    pub base: i64,
}

/// Whether `name` is a provider this account has.
pub fn exists(name: &str) -> bool {
    BUILT_IN.contains(&name)
}

/// The `capacityProviders` list of a cluster: each must exist, once.
pub fn check_cluster_providers(names: &[String]) -> Result<(), EcsError> {
    for (i, n) in names.iter().enumerate() {
        if !exists(n) {
            return Err(EcsError::InvalidParameter(format!(
                "The specified capacity provider '{n}' does not exist. Specify a valid capacity provider and try again."
            )));
        }
        if names[..i].contains(n) {
            return Err(EcsError::InvalidParameter(format!(
                "The specified capacity providers contain '{n}' more than once."
            )));
        }
    }
    Ok(())
}

/// Checks a strategy against ECS's rules, with `associated` the cluster's
/// `capacityProviders` (every item must name one of them). An empty
/// strategy is valid (it means "none").
pub fn check_strategy(items: &[StrategyItem], associated: &[String]) -> Result<(), EcsError> {
    let bad = |m: &str| Err(EcsError::InvalidParameter(m.to_owned()));
    if items.is_empty() {
        return Ok(());
    }
    if items.len() > 20 {
        return bad("The capacity provider strategy can contain at most 20 capacity providers.");
    }
    for (i, it) in items.iter().enumerate() {
        if !exists(&it.capacity_provider) {
            return Err(EcsError::InvalidParameter(format!(
                "The specified capacity provider '{}' does not exist. Specify a valid capacity provider and try again.",
                it.capacity_provider
            )));
        }
        if !associated.contains(&it.capacity_provider) {
            return bad(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
            );
        }
        if items[..i]
            .iter()
            .any(|o| o.capacity_provider == it.capacity_provider)
        {
            return bad(
                "The specified capacity provider strategy cannot contain duplicate capacity providers.",
            );
        }
        if !(0..=1000).contains(&it.weight) {
            return Err(EcsError::InvalidParameter(format!(
                "The weight of capacity provider '{}' is {}: it must be between 0 and 1000.",
                it.capacity_provider, it.weight
            )));
        }
        if !(0..=100_000).contains(&it.base) {
            return Err(EcsError::InvalidParameter(format!(
                "The base of capacity provider '{}' is {}: it must be between 0 and 100000.",
                it.capacity_provider, it.base
            )));
        }
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return bad(
            "The specified capacity provider strategy cannot contain more than one capacity provider with a base value greater than 0.",
        );
    }
    if items.iter().all(|i| i.weight == 0) {
        return bad(
            "The specified capacity provider strategy must contain at least one capacity provider with a weight greater than 0.",
        );
    }
    Ok(())
}

/// Where the next task of a strategy goes, given how many tasks each
/// provider already has (`placed`): first the provider with a `base` until
/// it has that many, then the rest spread in proportion to the weights
/// (the provider furthest below its share first, ties in strategy order).
/// `None` for an empty strategy.
pub fn next(items: &[StrategyItem], placed: &BTreeMap<String, u32>) -> Option<String> {
    let count = |n: &str| i64::from(placed.get(n).copied().unwrap_or(0));
    if let Some(b) = items
        .iter()
        .find(|i| i.base > 0 && count(&i.capacity_provider) < i.base)
    {
        return Some(b.capacity_provider.clone());
    }
    // Compare beyond-base counts as fractions c/w by cross-multiplying.
    let mut best: Option<(&StrategyItem, i64)> = None;
    for it in items.iter().filter(|i| i.weight > 0) {
        let beyond = (count(&it.capacity_provider) - it.base).max(0);
        best = match best {
            Some((b, bc)) if bc * it.weight <= beyond * b.weight => Some((b, bc)),
            _ => Some((it, beyond)),
        };
    }
    best.map(|(i, _)| i.capacity_provider.clone())
}

/// How the tasks of one launch choose their provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The strategy (empty: launch type FARGATE, no provider named).
    pub strategy: Vec<StrategyItem>,
    /// Tasks each provider already has (a service's running tasks).
    pub placed: BTreeMap<String, u32>,
}

/// The strategy a RunTask or a service uses: the one given, or none when a
/// launch type is given, or else the cluster's default strategy (empty:
/// launch type FARGATE). ECS's rules: not both; the providers must be the
/// cluster's.
pub fn resolve(
    launch_type: Option<&str>,
    strategy: &[StrategyItem],
    cluster_providers: &[String],
    cluster_default: &[StrategyItem],
) -> Result<Vec<StrategyItem>, EcsError> {
    match (launch_type, strategy.is_empty()) {
        (Some(_), false) => Err(EcsError::InvalidParameter(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.".into(),
        )),
        (Some("FARGATE"), true) => Ok(vec![]),
        (Some(other), true) => Err(EcsError::InvalidParameter(format!(
            "launchType {other} is not supported: ferry runs tasks on FARGATE only."
        ))),
        (None, false) => {
            check_strategy(strategy, cluster_providers)?;
            Ok(strategy.to_vec())
        }
        (None, true) => Ok(cluster_default.to_vec()),
    }
}

/// Providers for `n` new tasks, after those already `placed`.
pub fn place(items: &[StrategyItem], placed: &BTreeMap<String, u32>, n: u32) -> Vec<String> {
    let mut placed = placed.clone();
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let Some(p) = next(items, &placed) else {
            break;
        };
        *placed.entry(p.clone()).or_default() += 1;
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: &str, weight: i64, base: i64) -> StrategyItem {
        StrategyItem {
            capacity_provider: p.into(),
            weight,
            base,
        }
    }

    fn both() -> Vec<String> {
        vec![FARGATE.into(), FARGATE_SPOT.into()]
    }

    fn counts(v: &[String]) -> (usize, usize) {
        (
            v.iter().filter(|p| *p == FARGATE).count(),
            v.iter().filter(|p| *p == FARGATE_SPOT).count(),
        )
    }

    #[test]
    fn base_first_then_weights() {
        let s = [item(FARGATE, 1, 2), item(FARGATE_SPOT, 3, 0)];
        let v = place(&s, &BTreeMap::new(), 10);
        // Two for the base, then 8 split 1:3.
        assert_eq!(&v[..2], &[FARGATE, FARGATE]);
        assert_eq!(counts(&v), (4, 6));
        // Only the weighted part after the base.
        let s = [item(FARGATE, 0, 3), item(FARGATE_SPOT, 1, 0)];
        assert_eq!(counts(&place(&s, &BTreeMap::new(), 7)), (3, 4));
        // Fewer tasks than the base: all base.
        let s = [item(FARGATE_SPOT, 1, 5), item(FARGATE, 1, 0)];
        assert_eq!(counts(&place(&s, &BTreeMap::new(), 3)), (0, 3));
    }

    #[test]
    fn existing_tasks_count() {
        let s = [item(FARGATE, 1, 0), item(FARGATE_SPOT, 1, 0)];
        let placed = BTreeMap::from([(FARGATE.to_owned(), 3)]);
        assert_eq!(counts(&place(&s, &placed, 3)), (0, 3));
        assert_eq!(counts(&place(&s, &placed, 5)), (1, 4));
        assert!(place(&[], &BTreeMap::new(), 2).is_empty());
    }

    #[test]
    fn resolution() {
        let s = vec![item(FARGATE_SPOT, 1, 0)];
        let d = vec![item(FARGATE, 1, 0)];
        let err = resolve(Some("FARGATE"), &s, &both(), &d).unwrap_err();
        assert_eq!(err.code(), "InvalidParameterException");
        assert!(err.to_string().starts_with("Specifying both a launch type"));
        assert_eq!(resolve(Some("FARGATE"), &[], &both(), &d).unwrap(), vec![]);
        assert!(resolve(Some("EC2"), &[], &both(), &d).is_err());
        assert_eq!(resolve(None, &s, &both(), &d).unwrap(), s);
        assert_eq!(resolve(None, &[], &both(), &d).unwrap(), d);
        assert!(resolve(None, &s, &[FARGATE.into()], &d).is_err());
    }

    #[test]
    fn strategy_rules() {
        let msg = |s: &[StrategyItem], a: &[String]| check_strategy(s, a).unwrap_err().to_string();
        assert!(check_strategy(&[], &[]).is_ok());
        assert!(
            check_strategy(
                &[item(FARGATE, 1, 100_000), item(FARGATE_SPOT, 1000, 0)],
                &both()
            )
            .is_ok()
        );
        assert!(msg(&[item(FARGATE_SPOT, 1, 0)], &[FARGATE.into()]).contains("not associated"));
        assert!(msg(&[item("EC2", 1, 0)], &both()).contains("'EC2' does not exist"));
        assert!(
            msg(&[item(FARGATE, 1, 1), item(FARGATE_SPOT, 1, 1)], &both())
                .contains("more than one")
        );
        assert!(msg(&[item(FARGATE, 1001, 0)], &both()).contains("between 0 and 1000"));
        assert!(msg(&[item(FARGATE, 1, 100_001)], &both()).contains("between 0 and 100000"));
        assert!(msg(&[item(FARGATE, -1, 0)], &both()).contains("between 0 and 1000"));
        assert!(msg(&[item(FARGATE, 0, 1)], &both()).contains("weight greater than 0"));
        assert!(msg(&[item(FARGATE, 1, 0), item(FARGATE, 1, 0)], &both()).contains("duplicate"));
        assert!(check_cluster_providers(&both()).is_ok());
        assert!(check_cluster_providers(&["X".into()]).is_err());
        assert!(check_cluster_providers(&[FARGATE.into(), FARGATE.into()]).is_err());
    }
}

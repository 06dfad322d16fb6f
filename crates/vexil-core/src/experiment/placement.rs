//! Deterministic placement of a user into an experiment's variant: targeting first, then the
//! traffic allocation and weights of SPEC 2, hashed over the experiment's salt.
//!
//! Placement is pure and exact; making it sticky (storing the first assignment) is the
//! service's job.

use super::model::Experiment;
use crate::allocation::Allocation;
use crate::condition::CompiledCondition;
use crate::context::{unit_bytes, AttributePath, Context};
use crate::error::{FieldPath, ValidationErrors};
use crate::flagset::FlagSet;
use crate::hash::SaltedHasher;
use crate::model::Condition;
use serde_json::{Map, Value};

/// Where a user falls in an experiment, before any stickiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In the experiment, in the variant with this index.
    Variant(usize),
    /// The targeting condition does not match.
    NotTargeted,
    /// Outside the traffic allocation.
    NotInTraffic,
    /// The bucketing attribute is missing (or not a string, number or boolean).
    MissingBucketingAttribute,
}

/// An experiment compiled against a flag set's segments, ready to place users.
#[derive(Debug)]
pub struct CompiledExperiment {
    source: Experiment,
    targeting: Option<CompiledCondition>,
    allocation: Allocation,
    salt: SaltedHasher,
    bucket_by: AttributePath,
    filters: Vec<Option<CompiledCondition>>,
}

impl CompiledExperiment {
    /// Compiles targeting and metric filters (segments resolve against `flags`).
    pub fn compile(experiment: Experiment, flags: &FlagSet) -> Result<CompiledExperiment, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let mut compile = |condition: &Condition, path: &str| match flags.compile_condition(condition, path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.0.extend(e.0);
                None
            }
        };
        let targeting = experiment.targeting.as_ref().map(|t| compile(t, "targeting"));
        let filters: Vec<Option<CompiledCondition>> = experiment
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.filter
                    .as_ref()
                    .and_then(|f| compile(f, &FieldPath::Text("metrics").index(i).field("filter").to_string()))
            })
            .collect();
        let weights: Vec<u32> = experiment.variants.iter().map(|v| v.weight).collect();
        let allocation = Allocation::new(&weights, experiment.traffic_allocation.basis_points());
        if allocation.is_none() {
            errors.push("variants", "weights must have a positive sum");
        }
        match (allocation, errors.is_empty()) {
            (Some(allocation), true) => Ok(CompiledExperiment {
                salt: SaltedHasher::new(&experiment.salt),
                bucket_by: AttributePath::parse(&experiment.bucket_by),
                targeting: targeting.flatten(),
                allocation,
                filters,
                source: experiment,
            }),
            _ => Err(errors),
        }
    }

    pub fn experiment(&self) -> &Experiment {
        &self.source
    }

    /// Targeting first, then the bucket: in traffic and in which variant (SPEC 2).
    pub fn place(&self, ctx: &Context<'_>) -> Placement {
        if self.targeting.as_ref().is_some_and(|t| !t.matches(ctx)) {
            return Placement::NotTargeted;
        }
        let mut buf = [0u8; 40];
        let Some(unit) = ctx.lookup(&self.bucket_by).and_then(|attr| unit_bytes(attr, &mut buf)) else {
            return Placement::MissingBucketingAttribute;
        };
        match self.allocation.variant_for(self.salt.bucket(unit)) {
            Some(i) => Placement::Variant(i),
            None => Placement::NotInTraffic,
        }
    }

    /// The bucketing unit of `ctx` as text — what a sticky assignment is stored under — or
    /// `None` when the attribute is missing (the same rule as [`place`](Self::place)).
    pub fn unit(&self, ctx: &Context<'_>) -> Option<String> {
        let mut buf = [0u8; 40];
        let unit = ctx.lookup(&self.bucket_by).and_then(|attr| unit_bytes(attr, &mut buf))?;
        Some(String::from_utf8_lossy(unit).into_owned())
    }

    /// Whether an event with `properties` counts for metric `metric` (its `filter`, if any).
    pub fn metric_accepts(&self, metric: usize, user_id: &str, properties: &Map<String, Value>) -> bool {
        match self.filters.get(metric) {
            Some(Some(filter)) => filter.matches(&Context::new(user_id, properties)),
            _ => true,
        }
    }
}

//! The saved progress of a running deliberation, as this store writes it: a versioned snapshot.
//!
//! The store owns this format, not the domain: the aggregate may rename or regroup its fields
//! without making the rows of deliberations in flight unreadable. A snapshot is JSON with a
//! version tag, `{"v":1,"council":…,"task":…,…}`; it is turned into the aggregate only through
//! [`Deliberation::restore`], which checks that it still describes a deliberation.
//!
//! Versions read:
//! * no `v` — the format before snapshots were versioned (the aggregate's own serde form,
//!   whose fields version 1 keeps, so it reads as version 1);
//! * `1` — the current format.
//!
//! Anything else is [`Restored::Unreadable`] with the reason: the deliberation ends INTERRUPTED
//! saying why, instead of failing the read (or the recovery) of every row.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator_domain::{
    AgentFailure, AgentId, Council, Deliberation, DeliberationParts, Phase, Proposal, Review, Task,
    TestOutcome, TokenUsage,
};
use serde::{Deserialize, Serialize};

/// The version this store writes.
pub(crate) const CURRENT_VERSION: u32 = 1;

/// Version 1 of the saved progress.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotV1 {
    /// Absent in snapshots written before versioning; they have this shape.
    #[serde(default)]
    v: Option<u32>,
    council: Council,
    task: Task,
    rounds: u32,
    phase: Phase,
    proposals: Vec<Proposal>,
    reviews: Vec<Review>,
    failures: Vec<AgentFailure>,
    dropped: BTreeSet<AgentId>,
    pending: BTreeSet<AgentId>,
    assignments: BTreeMap<AgentId, AgentId>,
    under_review: BTreeMap<AgentId, String>,
    usage: BTreeMap<AgentId, TokenUsage>,
    /// Added within version 1 (absent in older snapshots: no tests run, no early stop).
    #[serde(default)]
    tests: BTreeMap<AgentId, Vec<TestOutcome>>,
    #[serde(default)]
    early_stop: bool,
    #[serde(default)]
    calls_saved: u64,
}

/// What a stored snapshot gives back.
#[derive(Debug)]
pub(crate) enum Restored {
    Deliberation(Box<Deliberation>),
    /// Why it cannot be restored (unknown version, invalid content).
    Unreadable(String),
}

/// The snapshot of `deliberation`, ready to be written as JSON.
pub(crate) fn snapshot(deliberation: &Deliberation) -> impl Serialize + use<> {
    let parts = deliberation.to_parts();
    SnapshotV1 {
        v: Some(CURRENT_VERSION),
        council: parts.council,
        task: parts.task,
        rounds: parts.rounds,
        phase: parts.phase,
        proposals: parts.proposals,
        reviews: parts.reviews,
        failures: parts.failures,
        dropped: parts.dropped,
        pending: parts.pending,
        assignments: parts.assignments,
        under_review: parts.under_review,
        usage: parts.usage,
        tests: parts.tests,
        early_stop: parts.early_stop,
        calls_saved: parts.calls_saved,
    }
}

/// Reads a stored snapshot of any known version.
pub(crate) fn restore(json: &str) -> Restored {
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        v: Option<serde_json::Value>,
    }
    let version = match serde_json::from_str::<Version>(json) {
        Ok(Version { v: None }) => 0,
        Ok(Version { v: Some(v) }) => match v.as_u64() {
            Some(1) => 1,
            _ => return Restored::Unreadable(format!("saved progress has unknown snapshot version {v}")),
        },
        Err(error) => return Restored::Unreadable(format!("saved progress is not valid JSON: {error}")),
    };
    let v1 = match serde_json::from_str::<SnapshotV1>(json) {
        Ok(v1) => v1,
        Err(error) => {
            return Restored::Unreadable(format!(
                "saved progress (snapshot version {version}) does not decode: {error}"
            ));
        }
    };
    let parts = DeliberationParts {
        council: v1.council,
        task: v1.task,
        rounds: v1.rounds,
        phase: v1.phase,
        proposals: v1.proposals,
        reviews: v1.reviews,
        failures: v1.failures,
        dropped: v1.dropped,
        pending: v1.pending,
        assignments: v1.assignments,
        under_review: v1.under_review,
        usage: v1.usage,
        tests: v1.tests,
        early_stop: v1.early_stop,
        calls_saved: v1.calls_saved,
    };
    match Deliberation::restore(parts) {
        Ok(deliberation) => Restored::Deliberation(Box::new(deliberation)),
        Err(error) => Restored::Unreadable(format!("saved progress is not a valid deliberation: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Progress saved by the release before snapshots were versioned: the aggregate's serde
    /// form, captured from a running deliberation after its proposing phase.
    const UNVERSIONED: &str = include_str!("../tests/fixtures/progress_unversioned.json");

    #[test]
    fn progress_saved_before_versioning_is_restored() {
        let Restored::Deliberation(restored) = restore(UNVERSIONED) else { panic!("not restored") };
        assert_eq!(restored.phase(), Phase::Reviewing { round: 1 });
        assert_eq!(restored.proposals().len(), 2);
        // Written again, it is version 1 and reads back the same.
        let json = serde_json::to_string(&snapshot(&restored)).unwrap();
        assert!(json.starts_with("{\"v\":1,"), "{json}");
        let Restored::Deliberation(again) = restore(&json) else { panic!("not restored") };
        assert_eq!(again, restored);
    }

    #[test]
    fn an_unknown_version_is_reported_not_a_panic() {
        let mut value: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        value["v"] = serde_json::json!(7);
        let Restored::Unreadable(reason) = restore(&value.to_string()) else { panic!("restored") };
        assert_eq!(reason, "saved progress has unknown snapshot version 7");
        let Restored::Unreadable(reason) = restore("{\"v\":1}") else { panic!("restored") };
        assert!(reason.contains("does not decode"), "{reason}");
    }

    #[test]
    fn a_snapshot_naming_an_agent_outside_its_council_is_refused() {
        let mut value: serde_json::Value = serde_json::from_str(UNVERSIONED).unwrap();
        value["pending"] = serde_json::json!(["stranger"]);
        let Restored::Unreadable(reason) = restore(&value.to_string()) else { panic!("restored") };
        assert!(reason.contains("stranger is not in the council"), "{reason}");
    }
}

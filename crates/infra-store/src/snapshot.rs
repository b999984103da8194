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

use orchestrator_domain::{Deliberation, DeliberationParts};
use serde::{Deserialize, Serialize};

/// The version this store writes.
pub(crate) const CURRENT_VERSION: u32 = 1;

/// Version 1 of the saved progress: the version tag beside the aggregate's parts (their
/// one field list is the domain's [`DeliberationParts`]; fields it added later default).
/// Written with the parts borrowed (`P = &DeliberationParts`), read into owned ones.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotV1<P> {
    /// Absent in snapshots written before versioning; they have this shape.
    #[serde(default)]
    v: Option<u32>,
    #[serde(flatten)]
    parts: P,
}

/// What a stored snapshot gives back.
#[derive(Debug)]
pub(crate) enum Restored {
    Deliberation(Box<Deliberation>),
    /// Why it cannot be restored (unknown version, invalid content).
    Unreadable(String),
}

/// The snapshot of `deliberation`, ready to be written as JSON.
pub(crate) fn snapshot(deliberation: &Deliberation) -> impl Serialize + use<'_> {
    SnapshotV1 { v: Some(CURRENT_VERSION), parts: deliberation.parts() }
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
    let v1 = match serde_json::from_str::<SnapshotV1<DeliberationParts>>(json) {
        Ok(v1) => v1,
        Err(error) => {
            return Restored::Unreadable(format!(
                "saved progress (snapshot version {version}) does not decode: {error}"
            ));
        }
    };
    let parts = v1.parts;
    match Deliberation::restore(parts) {
        Ok(deliberation) => Restored::Deliberation(Box::new(deliberation)),
        Err(error) => Restored::Unreadable(format!("saved progress is not a valid deliberation: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_domain::Phase;

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

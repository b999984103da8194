//! The pure domain of multi-agent deliberation.
//!
//! A [`Council`] of agents sharing one [`Role`] works on a [`Task`]: every agent proposes, they
//! review each other's proposals over rounds and revise, the [`checks`] and peer scores are
//! combined into a [`Score`], and the [`ranking`] picks a winner. The [`Deliberation`] aggregate
//! is the state machine that decides who does what in each phase; it never calls an agent, runs
//! no I/O and needs no async runtime, so the rules can be tested exhaustively and reused by any
//! driver.
//!
//! A role may have a [`StandingCouncil`] — registered agents with profiles and personas — that
//! its deliberations seat instead of an ad-hoc council; the [`Registry`] of them keeps the
//! rules that span councils.
#![forbid(unsafe_code)]

pub mod acceptance;
pub mod agent;
pub mod checks;
pub mod council;
pub mod council_health;
pub mod deliberation;
pub mod error;
pub mod excerpt;
pub mod proposal;
pub mod ranking;
pub mod registry;
pub mod review;
pub mod ring;
pub mod role;
pub mod scoring;
pub mod standing;
pub mod status;
pub mod task;
pub mod task_id;
pub mod usage;

pub use acceptance::{AcceptanceTests, TestLanguage};
pub use agent::{Agent, AgentId, AgentStatus, Persona, ProfileName};
pub use checks::{
    CaseOutcome, CheckSuite, DryRunOutcome, LintResult, PolicyResult, TestCase, TestOutcome, TestReport,
};
pub use council::{Council, CouncilId};
pub use council_health::CouncilHealth;
pub use deliberation::{
    AgentFailure, Cascade, Deliberation, DeliberationOutcome, DeliberationParts, EarlyStop, Escalation,
    KeptVersion, Path, Phase, RankedProposal, ReviewAssignment, RevisionRequest, Rounds, Strategy,
    TestRequest, serialize_displayed,
};
pub use error::{DomainError, Result};
pub use excerpt::excerpt;
pub use proposal::Proposal;
pub use ranking::{RankKey, rank};
pub use registry::Registry;
pub use review::{PeerScore, Review};
pub use ring::ring_assignment;
pub use role::Role;
pub use scoring::{Score, ScoringWeights};
pub use standing::{AgentMetadata, Capabilities, Member, StandingCouncil};
pub use status::DeliberationStatus;
pub use task::{Task, TaskConstraints};
pub use task_id::TaskId;
pub use usage::TokenUsage;

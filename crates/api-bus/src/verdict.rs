//! What becomes of a message — acked, nak'd with a delay, or terminated as poison — and the
//! one exhaustive mapping from the application's errors to it.
//!
//! | what submitting returned | verdict | why |
//! |---|---|---|
//! | stored, or the same request already stored | ack | the work is durable; a redelivery changes nothing |
//! | `AlreadyExists` (the id holds a different request) | ack, WARN | redelivery cannot change that; the stored work stands |
//! | `InvalidArgument` (the domain's validation) | term + dead letter | the message itself is wrong |
//! | `InvalidArgument` on `agent_profiles` | nak with back-off, WARN | this replica has no default model profile: its configuration, not the message |
//! | `ResourceExhausted` | nak with back-off | the queue is full here; another replica, or later |
//! | `Store` | nak with back-off | never an ack without a stored row |
//! | `ShuttingDown` | nak, no delay | another replica can take it at once |
//! | `FailedPrecondition`, `BackendNotConfigured`, `BackendMisconfigured` | nak with back-off, WARN | this replica cannot run it (no LLM backend, say) |
//! | anything else | nak with back-off | may pass later |
//!
//! A nak on the message's last delivery (`intake.max_deliver`) becomes a term with a dead
//! letter instead: JetStream would not deliver it again, and it must not vanish unseen.

use std::time::Duration;

use orchestrator_application::ApplicationError;
use orchestrator_application::ports::StoreError;
use orchestrator_domain::excerpt;

/// Longest reason kept in a dead letter or a log line, in characters: reasons quote parts of
/// the message, which is data from outside.
const MAX_REASON_CHARS: usize = 512;

/// First back-off delay of a nak; doubled per delivery.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest back-off delay of a nak.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the intake does with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every deliberation it asks for is stored: acknowledge it.
    Ack(AckReason),
    /// Not handled now; JetStream delivers it again after `delay`.
    Nak { reason: NakReason, delay: Delay, detail: String },
    /// Never handleable: terminate it and dead-letter a copy.
    Term(Poison),
}

/// Why a message was acked, as the `reason` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReason {
    /// At least one deliberation was stored by this delivery.
    Stored,
    /// Everything it asks for was stored already (a redelivery or a duplicate).
    Duplicate,
    /// A task id it maps to holds a different request; nothing new was stored for it.
    Conflict,
}

/// Why a message was nak'd, as the `reason` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NakReason {
    StoreUnavailable,
    QueueFull,
    ShuttingDown,
    /// This replica cannot run deliberations (no backend, no default profile).
    NotReady,
    /// The dead letter of a poison message could not be published; it is tried again.
    DeadLetterUnpublished,
    Error,
}

/// How long JetStream waits before delivering a nak'd message again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// At once (to whichever replica pulls next).
    None,
    /// [`backoff`] of the deliveries so far.
    Backoff,
}

/// Why a message is poison, as the `reason` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonKind {
    NotJson,
    MissingField,
    UnknownRole,
    InvalidRequest,
    /// It reached `intake.max_deliver` without being handled.
    MaxDeliver,
}

/// A message that cannot be handled, with the reason its dead letter carries (naming the
/// field where there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub kind: PoisonKind,
    pub reason: String,
}

impl AckReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Conflict => "conflict",
        }
    }
}

impl NakReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StoreUnavailable => "store_unavailable",
            Self::QueueFull => "queue_full",
            Self::ShuttingDown => "shutting_down",
            Self::NotReady => "not_ready",
            Self::DeadLetterUnpublished => "dead_letter_unpublished",
            Self::Error => "error",
        }
    }
}

impl PoisonKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::MissingField => "missing_field",
            Self::UnknownRole => "unknown_role",
            Self::InvalidRequest => "invalid_request",
            Self::MaxDeliver => "max_deliver",
        }
    }
}

impl Poison {
    fn new(kind: PoisonKind, reason: impl AsRef<str>) -> Self {
        Self { kind, reason: excerpt(reason.as_ref(), MAX_REASON_CHARS) }
    }

    /// A payload that does not parse as JSON.
    pub fn not_json(error: &serde_json::Error) -> Self {
        Self::new(PoisonKind::NotJson, format!("not JSON: {error}"))
    }

    /// A required `field` absent or empty.
    pub fn missing(field: &str, reason: &str) -> Self {
        Self::new(PoisonKind::MissingField, format!("{field}: {reason}"))
    }

    /// A role that is not one of the council roles.
    pub fn unknown_role(field: &str, reason: &str) -> Self {
        Self::new(PoisonKind::UnknownRole, format!("{field}: {reason}"))
    }

    /// Anything else wrong with the request; `field` empty when the whole message is meant.
    pub fn invalid(field: &str, reason: &str) -> Self {
        if field.is_empty() {
            Self::new(PoisonKind::InvalidRequest, reason)
        } else {
            Self::new(PoisonKind::InvalidRequest, format!("{field}: {reason}"))
        }
    }

    /// A message given up after `deliveries` deliveries; `last` is why the last one failed.
    pub fn gave_up(deliveries: u64, last: &str) -> Self {
        Self::new(
            PoisonKind::MaxDeliver,
            format!("not handled in {deliveries} deliveries (intake.max_deliver); last failure: {last}"),
        )
    }

    /// The validation error of a request (the same errors the RPC answers with), poison.
    pub fn from_validation(error: &ApplicationError) -> Self {
        match error {
            ApplicationError::InvalidArgument { field, reason } if field == "role" => {
                Self::unknown_role(field, reason)
            }
            ApplicationError::InvalidArgument { field, reason } => Self::invalid(field, reason),
            other => Self::invalid("", &other.to_string()),
        }
    }
}

/// The delay before delivery number `deliveries + 1`: 1 s doubled per delivery, at most 60 s.
pub fn backoff(deliveries: u64) -> Duration {
    let doublings = u32::try_from(deliveries.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

fn nak(reason: NakReason, delay: Delay, error: &ApplicationError) -> Verdict {
    // The error's message is what a gRPC client would be told (causes stay in the log): it
    // may end up in a dead letter.
    Verdict::Nak { reason, delay, detail: excerpt(&error.to_string(), MAX_REASON_CHARS) }
}

/// What becomes of a message whose submission failed with `error` (see the table above).
pub fn of_submit_error(error: &ApplicationError) -> Verdict {
    use ApplicationError as E;
    match error {
        E::InvalidArgument { field, .. } if field == "agent_profiles" => {
            nak(NakReason::NotReady, Delay::Backoff, error)
        }
        E::InvalidArgument { .. } => Verdict::Term(Poison::from_validation(error)),
        E::AlreadyExists { .. } => Verdict::Ack(AckReason::Conflict),
        E::ResourceExhausted(_) => nak(NakReason::QueueFull, Delay::Backoff, error),
        E::Store { source: StoreError::Unavailable { .. } } => {
            nak(NakReason::StoreUnavailable, Delay::Backoff, error)
        }
        E::ShuttingDown { .. } => nak(NakReason::ShuttingDown, Delay::None, error),
        E::FailedPrecondition(_) | E::BackendNotConfigured | E::BackendMisconfigured { .. } => {
            nak(NakReason::NotReady, Delay::Backoff, error)
        }
        E::Store { .. }
        | E::AllAgentsFailed { .. }
        | E::DeadlineExceeded { .. }
        | E::Cancelled { .. }
        | E::NotFound { .. }
        | E::Conflict { .. }
        | E::Missing { .. }
        | E::ResultNotStored { .. }
        | E::LeaseLost { .. }
        | E::Internal(_) => nak(NakReason::Error, Delay::Backoff, error),
    }
}

impl Verdict {
    /// This verdict on delivery `deliveries` of a consumer that delivers at most
    /// `max_deliver` times: a nak on the last delivery is given up (dead-lettered) instead.
    #[must_use]
    pub fn on_delivery(self, deliveries: u64, max_deliver: u32) -> Self {
        match self {
            Self::Nak { detail, .. } if deliveries >= u64::from(max_deliver) => {
                Self::Term(Poison::gave_up(deliveries, &detail))
            }
            other => other,
        }
    }

    /// The `outcome` label: `ack`, `nak` or `term`.
    pub const fn outcome(&self) -> &'static str {
        match self {
            Self::Ack(_) => "ack",
            Self::Nak { .. } => "nak",
            Self::Term(_) => "term",
        }
    }

    /// The `reason` label.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Ack(reason) => reason.as_str(),
            Self::Nak { reason, .. } => reason.as_str(),
            Self::Term(poison) => poison.kind.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(field: &str) -> ApplicationError {
        ApplicationError::InvalidArgument { field: field.into(), reason: "is wrong".into() }
    }

    #[test]
    fn validation_is_poison_naming_the_field() {
        assert_eq!(
            of_submit_error(&invalid("task_description")),
            Verdict::Term(Poison {
                kind: PoisonKind::InvalidRequest,
                reason: "task_description: is wrong".into()
            })
        );
        assert_eq!(
            of_submit_error(&invalid("role")),
            Verdict::Term(Poison { kind: PoisonKind::UnknownRole, reason: "role: is wrong".into() })
        );
    }

    #[test]
    fn a_replica_without_a_default_profile_naks_instead_of_dead_lettering() {
        let verdict = of_submit_error(&invalid("agent_profiles"));
        assert!(matches!(verdict, Verdict::Nak { reason: NakReason::NotReady, delay: Delay::Backoff, .. }));
    }

    #[test]
    fn each_transient_error_naks_and_a_taken_id_acks() {
        let cases = [
            (ApplicationError::ResourceExhausted("full".into()), "nak", "queue_full"),
            (
                ApplicationError::Store { source: StoreError::unavailable("reading t-1", "down") },
                "nak",
                "store_unavailable",
            ),
            (ApplicationError::ShuttingDown { resumable: true }, "nak", "shutting_down"),
            (ApplicationError::FailedPrecondition("no".into()), "nak", "not_ready"),
            (ApplicationError::BackendNotConfigured, "nak", "not_ready"),
            (ApplicationError::Internal("bug".into()), "nak", "error"),
            (
                ApplicationError::AlreadyExists {
                    task_id: orchestrator_domain::TaskId::new("t").unwrap(),
                    detail: "is taken".into(),
                },
                "ack",
                "conflict",
            ),
        ];
        for (error, outcome, reason) in cases {
            let verdict = of_submit_error(&error);
            assert_eq!((verdict.outcome(), verdict.reason()), (outcome, reason), "{error:?}");
        }
        assert!(matches!(
            of_submit_error(&ApplicationError::ShuttingDown { resumable: false }),
            Verdict::Nak { delay: Delay::None, .. }
        ));
    }

    #[test]
    fn a_store_error_naks_with_the_message_a_client_would_see_not_the_cause() {
        let error = ApplicationError::Store {
            source: StoreError::unavailable("reading t-1", "connection to 10.0.0.7 refused"),
        };
        let Verdict::Nak { detail, .. } = of_submit_error(&error) else { panic!("a nak") };
        assert_eq!(detail, "storage failed");
    }

    #[test]
    fn a_nak_on_the_last_delivery_is_given_up_as_poison() {
        let nak = of_submit_error(&ApplicationError::ResourceExhausted("queue full".into()));
        assert_eq!(nak.clone().on_delivery(4, 5), nak);
        assert_eq!(
            nak.on_delivery(5, 5),
            Verdict::Term(Poison {
                kind: PoisonKind::MaxDeliver,
                reason: "not handled in 5 deliveries (intake.max_deliver); last failure: queue full".into(),
            })
        );
        let ack = Verdict::Ack(AckReason::Stored);
        assert_eq!(ack.clone().on_delivery(5, 5), ack, "the last delivery may still succeed");
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(u64::MAX), Duration::from_secs(60));
        assert_eq!(backoff(0), Duration::from_secs(1));
    }

    #[test]
    fn a_long_reason_is_cut() {
        let poison = Poison::invalid("task_id", &"x".repeat(2_000));
        assert!(poison.reason.chars().count() <= MAX_REASON_CHARS + 1);
    }
}

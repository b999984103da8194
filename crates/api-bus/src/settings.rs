//! The `[intake]` table of the server's configuration: where the intake reads from, whose
//! work it creates, and how patiently it retries.

use std::time::Duration;

use orchestrator_application::Caller;
use serde::Deserialize;

use crate::error::{IntakeError, Result};
use crate::plan::TaskTemplate;
use crate::subjects::{check_name, check_subject, covers};

/// Where approved plans and bus requests come from and what becomes of them. Every key has a
/// default, so `[intake] enabled = true` (or `ORCHESTRATOR_INTAKE__ENABLED=true`) is enough
/// next to a `nats_url`; unknown keys are refused, so a misspelt one is not silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeSettings {
    /// Consume the bus at all (also needs the server's `nats_url`).
    pub enabled: bool,
    /// The stream holding the planning events; created with subjects `planning.>` only when
    /// absent, never altered when present.
    pub stream: String,
    /// The durable pull consumer of plan events, shared by every replica.
    pub durable: String,
    /// The subject of approved plans the consumer is filtered to.
    pub subject: String,
    /// The subject of proto3-JSON `DeliberateRequest`s from services that submit over the bus
    /// instead of gRPC; empty turns that consumer off. Read from whichever stream holds it
    /// (`ORCHESTRATOR_REQUESTS` on just this subject is created when none does).
    pub request_subject: String,
    /// The durable pull consumer of `request_subject`.
    pub request_durable: String,
    /// The task description of each role's deliberation of a plan; placeholders `{plan_id}`,
    /// `{story_id}`, `{role}` and `{approved_by}`.
    pub task_template: String,
    /// Who the created work belongs to when the server authenticates (see
    /// [`IntakeSettings::owner`]).
    pub principal: String,
    /// Deliveries of one message before it is given up: the last one that cannot be handled
    /// is dead-lettered instead of nak'd. Also the consumers' `max_deliver`.
    pub max_deliver: u32,
    /// How long JetStream waits for an ack before redelivering; handling that takes longer
    /// sends in-progress acks well before it runs out.
    pub ack_wait_secs: u64,
    /// Where poison and given-up messages are copied, with the reason.
    pub dead_letter_subject: String,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            stream: "PLANNING_EVENTS".to_owned(),
            durable: "orch-planning-plan-approved".to_owned(),
            subject: "planning.plan.approved".to_owned(),
            request_subject: "orchestration.request".to_owned(),
            request_durable: "orch-orchestration-request".to_owned(),
            task_template: TaskTemplate::DEFAULT.to_owned(),
            principal: "fleet".to_owned(),
            max_deliver: 5,
            ack_wait_secs: 30,
            dead_letter_subject: "orchestration.intake.dead_letter".to_owned(),
        }
    }
}

/// The subjects a plan stream the intake creates holds.
pub(crate) const PLAN_STREAM_SUBJECTS: &str = "planning.>";

fn setting(key: &'static str, reason: impl Into<String>) -> IntakeError {
    IntakeError::Setting { key, reason: reason.into() }
}

impl IntakeSettings {
    /// Checks every key, so a bad one stops start-up with its name instead of failing on
    /// every retry against the server.
    ///
    /// # Errors
    /// [`IntakeError::Setting`] naming the first key out of range.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.stream).map_err(|reason| setting("stream", reason))?;
        check_name(&self.durable).map_err(|reason| setting("durable", reason))?;
        check_subject(&self.subject, true).map_err(|reason| setting("subject", reason))?;
        if !self.request_subject.is_empty() {
            check_subject(&self.request_subject, true)
                .map_err(|reason| setting("request_subject", reason))?;
            check_name(&self.request_durable).map_err(|reason| setting("request_durable", reason))?;
            if self.request_durable == self.durable {
                return Err(setting("request_durable", "must differ from intake.durable"));
            }
        }
        check_subject(&self.dead_letter_subject, false)
            .map_err(|reason| setting("dead_letter_subject", reason))?;
        let consumed = [self.subject.as_str(), self.request_subject.as_str()];
        if consumed.iter().any(|s| !s.is_empty() && covers(s, &self.dead_letter_subject)) {
            return Err(setting(
                "dead_letter_subject",
                "must not be a subject the intake consumes (it would read its own dead letters)",
            ));
        }
        TaskTemplate::parse(&self.task_template).map_err(|reason| setting("task_template", reason))?;
        if self.principal.trim().is_empty() {
            return Err(setting("principal", "must not be empty"));
        }
        if Caller::is_reserved_name(&self.principal) {
            return Err(setting(
                "principal",
                "\"anonymous\" is reserved for work stored without authentication",
            ));
        }
        if self.max_deliver < 2 {
            return Err(setting(
                "max_deliver",
                format!(
                    "must be at least 2 (with 1 a store blip would dead-letter good messages), got {}",
                    self.max_deliver
                ),
            ));
        }
        if !(1..=3600).contains(&self.ack_wait_secs) {
            return Err(setting(
                "ack_wait_secs",
                format!("must be within 1..=3600, got {}", self.ack_wait_secs),
            ));
        }
        Ok(())
    }

    /// Who the work taken from the bus belongs to: the `principal` (not an admin) when the
    /// server authenticates its clients, so that principal's tokens read and cancel it;
    /// without authentication the one unauthenticated caller, as every gRPC request then is —
    /// otherwise no client of that server could see the work.
    pub fn owner(&self, authenticated: bool) -> Caller {
        if authenticated { Caller::new(self.principal.clone(), false) } else { Caller::anonymous() }
    }

    /// [`IntakeSettings::ack_wait_secs`] as a duration.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    /// Whether bus requests are consumed too.
    pub fn takes_requests(&self) -> bool {
        !self.request_subject.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut IntakeSettings)) -> IntakeSettings {
        let mut settings = IntakeSettings::default();
        f(&mut settings);
        settings
    }

    fn refused_key(settings: &IntakeSettings) -> &'static str {
        match settings.validate() {
            Err(IntakeError::Setting { key, .. }) => key,
            other => panic!("expected a setting error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_off() {
        let settings = IntakeSettings::default();
        settings.validate().unwrap();
        assert!(!settings.enabled);
        assert_eq!(settings.stream, "PLANNING_EVENTS");
        assert_eq!(settings.durable, "orch-planning-plan-approved");
        assert_eq!(settings.subject, "planning.plan.approved");
        assert_eq!(settings.request_subject, "orchestration.request");
        assert_eq!(settings.request_durable, "orch-orchestration-request");
        assert_eq!(settings.principal, "fleet");
        assert_eq!(settings.max_deliver, 5);
        assert_eq!(settings.ack_wait(), Duration::from_secs(30));
        assert_eq!(settings.dead_letter_subject, "orchestration.intake.dead_letter");
    }

    #[test]
    fn a_table_with_one_key_keeps_the_other_defaults_and_unknown_keys_are_refused() {
        let settings: IntakeSettings = toml::from_str("enabled = true\nmax_deliver = 7").unwrap();
        assert_eq!(settings, IntakeSettings { enabled: true, max_deliver: 7, ..IntakeSettings::default() });
        let error = toml::from_str::<IntakeSettings>("enabled = true\nmax_delivery = 7").unwrap_err();
        assert!(error.to_string().contains("unknown field `max_delivery`"), "{error}");
    }

    #[test]
    fn every_bad_key_is_named() {
        assert_eq!(refused_key(&with(|s| s.stream = "PLANNING.EVENTS".into())), "stream");
        assert_eq!(refused_key(&with(|s| s.durable = String::new())), "durable");
        assert_eq!(refused_key(&with(|s| s.subject = "planning..approved".into())), "subject");
        assert_eq!(refused_key(&with(|s| s.request_subject = "a b".into())), "request_subject");
        assert_eq!(refused_key(&with(|s| s.request_durable = s.durable.clone())), "request_durable");
        assert_eq!(
            refused_key(&with(|s| s.dead_letter_subject = "orchestration.*".into())),
            "dead_letter_subject"
        );
        assert_eq!(refused_key(&with(|s| s.task_template = "Plan {plan}".into())), "task_template");
        assert_eq!(refused_key(&with(|s| s.principal = "Anonymous".into())), "principal");
        assert_eq!(refused_key(&with(|s| s.max_deliver = 1)), "max_deliver");
        assert_eq!(refused_key(&with(|s| s.ack_wait_secs = 0)), "ack_wait_secs");
    }

    #[test]
    fn the_intake_never_consumes_its_own_dead_letters() {
        let settings = with(|s| s.request_subject = "orchestration.>".into());
        assert_eq!(refused_key(&settings), "dead_letter_subject");
    }

    #[test]
    fn an_empty_request_subject_turns_bus_requests_off() {
        let settings = with(|s| {
            s.request_subject = String::new();
            s.request_durable = String::new();
        });
        settings.validate().unwrap();
        assert!(!settings.takes_requests());
    }

    #[test]
    fn the_work_belongs_to_the_principal_under_authentication_and_to_the_anonymous_caller_without() {
        let settings = IntakeSettings::default();
        assert_eq!(settings.owner(true), Caller::new("fleet", false));
        assert!(settings.owner(false).is_unauthenticated());
    }
}

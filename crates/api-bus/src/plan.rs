//! Approved plans: the `planning.plan.approved` event, the task id each of its roles gets,
//! and the task description the template makes of it.
//!
//! The planning service publishes
//! `{"story_id", "plan_id", "approved_by", "roles": [..], "timestamp"}`. Each role becomes one
//! deliberation, submitted exactly as `SubmitDeliberation` would store a request with that
//! task id, description and role (the same conversion, so the same validation), with the
//! story id kept alongside. The task id is a function of the plan id and the role alone, so a
//! redelivered or republished event maps to the same ids and stores nothing new.

use orchestrator_api_grpc::pb;
use orchestrator_application::{ApplicationError, DeliberateCommand};
use orchestrator_domain::{Role, TaskId};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::verdict::Poison;

/// Longest `story_id`, `plan_id` or `approved_by` accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// Hex digits of the plan id's SHA-256 in a task id that could not hold the plan id as is.
const HASH_HEX_DIGITS: usize = 16;

/// One approved plan, checked: every field the intake needs is present, bounded and free of
/// control characters, and every role is a council role (duplicates dropped, order kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    pub story_id: String,
    pub plan_id: String,
    pub approved_by: String,
    pub roles: Vec<Role>,
}

fn text(event: &Map<String, Value>, field: &str) -> Result<String, Poison> {
    let value = match event.get(field) {
        None | Some(Value::Null) => return Err(Poison::missing(field, "is required")),
        Some(Value::String(value)) => value.trim(),
        Some(_) => return Err(Poison::invalid(field, "must be a string")),
    };
    if value.is_empty() {
        return Err(Poison::missing(field, "must not be empty"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(Poison::invalid(
            field,
            &format!("must be at most {MAX_FIELD_BYTES} bytes, got {}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Poison::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

fn roles(event: &Map<String, Value>) -> Result<Vec<Role>, Poison> {
    let items = match event.get("roles") {
        None | Some(Value::Null) => return Err(Poison::missing("roles", "is required")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Poison::invalid("roles", "must be an array of role names")),
    };
    if items.is_empty() {
        return Err(Poison::missing("roles", "must name at least one role"));
    }
    let mut roles = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("roles[{i}]");
        let Value::String(name) = item else {
            return Err(Poison::unknown_role(&field, "must be a role name (a string)"));
        };
        let role = Role::parse(name).map_err(|error| match ApplicationError::from(error) {
            ApplicationError::InvalidArgument { reason, .. } => Poison::unknown_role(&field, &reason),
            other => Poison::unknown_role(&field, &other.to_string()),
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

impl PlanEvent {
    /// Reads an event; unknown fields (`timestamp` among them) are ignored, so the planning
    /// service may add some.
    ///
    /// # Errors
    /// The poison it is: not JSON, a missing field, an unknown role, or a field out of range,
    /// each naming the field.
    pub fn parse(payload: &[u8]) -> Result<Self, Poison> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| Poison::not_json(&e))?;
        let Value::Object(event) = value else {
            return Err(Poison::invalid("", "the plan event must be a JSON object"));
        };
        Ok(Self {
            story_id: text(&event, "story_id")?,
            plan_id: text(&event, "plan_id")?,
            approved_by: text(&event, "approved_by")?,
            roles: roles(&event)?,
        })
    }

    /// One command per role, in the order of `roles`; every one is built and checked before
    /// any is submitted, so poison in one role stores nothing.
    ///
    /// # Errors
    /// The first role whose request the RPC's validation refuses (a description the template
    /// made too long, say).
    pub fn commands(&self, template: &TaskTemplate) -> Result<Vec<DeliberateCommand>, Poison> {
        self.roles
            .iter()
            .map(|&role| {
                let request = pb::DeliberateRequest {
                    task_id: task_id(&self.plan_id, role),
                    task_description: template.render(self, role),
                    role: role.as_str().to_owned(),
                    ..pb::DeliberateRequest::default()
                };
                let mut command =
                    DeliberateCommand::try_from(request).map_err(|e| Poison::from_validation(&e))?;
                command.story_id = Some(self.story_id.clone());
                Ok(command)
            })
            .collect()
    }
}

/// The task id of `role`'s deliberation of plan `plan_id`: `plan-<plan_id>-<ROLE>`.
///
/// A plan id with characters outside the task-id alphabet `[A-Za-z0-9._:-]` has them replaced
/// by `_`, and one too long for the 128-byte limit is cut; either way the first 16 hex digits
/// of its SHA-256 are added (`plan-<cut plan id>.<hash>-<ROLE>`), so two plan ids that clean
/// up alike still get different task ids. Deterministic: the same plan id and role always
/// give the same id.
pub fn task_id(plan_id: &str, role: Role) -> String {
    let clean: String = plan_id.chars().map(|c| if TaskId::allows(c) { c } else { '_' }).collect();
    let plain = format!("plan-{clean}-{role}");
    if clean == plan_id && plain.len() <= TaskId::MAX_LEN {
        return plain;
    }
    let digest = Sha256::digest(plan_id.as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let hash = &hash[..HASH_HEX_DIGITS];
    let room = TaskId::MAX_LEN - "plan-".len() - 1 - HASH_HEX_DIGITS - 1 - role.as_str().len();
    // `clean` is ASCII (everything else was replaced), so any byte index is a char boundary.
    let cut = &clean[..clean.len().min(room)];
    format!("plan-{cut}.{hash}-{role}")
}

/// The task description of a plan's deliberation: text with the placeholders `{plan_id}`,
/// `{story_id}`, `{role}` and `{approved_by}`. Checked once, at start-up, so a misspelt
/// placeholder is an error there instead of literal braces in every task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTemplate(String);

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 4] = ["plan_id", "story_id", "role", "approved_by"];

/// A `{name}` at the start of `text` (lower-case letters and `_`): the name and its length
/// with the braces.
fn placeholder(text: &str) -> Option<(&str, usize)> {
    let rest = text.strip_prefix('{')?;
    let end = rest.find('}')?;
    let name = &rest[..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some((name, end + 2))
}

impl TaskTemplate {
    /// The default: says what was approved, by whom, and what the role's council is to do.
    pub const DEFAULT: &'static str = "Plan {plan_id} of story {story_id} was approved by {approved_by}. \
        As the {role} council, work out how to carry out the {role} part of this plan: the concrete \
        changes, the order to make them in, the risks, and how to verify the result.";

    /// Checks `template`.
    ///
    /// # Errors
    /// When it is blank or names a placeholder other than the four.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        for (at, _) in template.match_indices('{') {
            if let Some((name, _)) = placeholder(&template[at..])
                && !PLACEHOLDERS.contains(&name)
            {
                return Err(format!(
                    "unknown placeholder {{{name}}}; the placeholders are {{plan_id}}, {{story_id}}, {{role}} and {{approved_by}}"
                ));
            }
        }
        Ok(Self(template.to_owned()))
    }

    /// The description of `role`'s deliberation of `plan`. One pass: a value that itself
    /// contains `{role}` is inserted as it is, never expanded again.
    pub fn render(&self, plan: &PlanEvent, role: Role) -> String {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(at) = rest.find('{') {
            out.push_str(&rest[..at]);
            let value = placeholder(&rest[at..]).and_then(|(name, len)| {
                let value = match name {
                    "plan_id" => plan.plan_id.as_str(),
                    "story_id" => plan.story_id.as_str(),
                    "role" => role.as_str(),
                    "approved_by" => plan.approved_by.as_str(),
                    _ => return None,
                };
                Some((value, len))
            });
            match value {
                Some((value, len)) => {
                    out.push_str(value);
                    rest = &rest[at + len..];
                }
                None => {
                    out.push('{');
                    rest = &rest[at + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

impl Default for TaskTemplate {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::PoisonKind;

    const EVENT: &str = r#"{"story_id":"story-7","plan_id":"p-42","approved_by":"ana","roles":["dev","QA"],"timestamp":"2025-01-01T00:00:00Z"}"#;

    fn poison(payload: &str) -> Poison {
        PlanEvent::parse(payload.as_bytes()).unwrap_err()
    }

    #[test]
    fn an_event_is_read_with_its_roles_in_order_and_unknown_fields_ignored() {
        let event = PlanEvent::parse(EVENT.as_bytes()).unwrap();
        assert_eq!(
            event,
            PlanEvent {
                story_id: "story-7".into(),
                plan_id: "p-42".into(),
                approved_by: "ana".into(),
                roles: vec![Role::Dev, Role::Qa],
            }
        );
        let twice = r#"{"story_id":"s","plan_id":"p","approved_by":"a","roles":["DEV","dev"],"extra":1}"#;
        assert_eq!(PlanEvent::parse(twice.as_bytes()).unwrap().roles, vec![Role::Dev]);
    }

    #[test]
    fn poison_names_the_field() {
        let cases = [
            ("not json", PoisonKind::NotJson, "not JSON: expected ident at line 1 column 2"),
            ("[1]", PoisonKind::InvalidRequest, "the plan event must be a JSON object"),
            (
                r#"{"plan_id":"p","approved_by":"a","roles":["DEV"]}"#,
                PoisonKind::MissingField,
                "story_id: is required",
            ),
            (
                r#"{"story_id":" ","plan_id":"p","approved_by":"a","roles":["DEV"]}"#,
                PoisonKind::MissingField,
                "story_id: must not be empty",
            ),
            (
                r#"{"story_id":"s","plan_id":7,"approved_by":"a","roles":["DEV"]}"#,
                PoisonKind::InvalidRequest,
                "plan_id: must be a string",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","roles":["DEV"]}"#,
                PoisonKind::MissingField,
                "approved_by: is required",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","approved_by":"a"}"#,
                PoisonKind::MissingField,
                "roles: is required",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","approved_by":"a","roles":[]}"#,
                PoisonKind::MissingField,
                "roles: must name at least one role",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","approved_by":"a","roles":"DEV"}"#,
                PoisonKind::InvalidRequest,
                "roles: must be an array of role names",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","approved_by":"a","roles":["DEV","CHEF"]}"#,
                PoisonKind::UnknownRole,
                "roles[1]: unknown role \"CHEF\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA",
            ),
            (
                r#"{"story_id":"s","plan_id":"p","approved_by":"a","roles":[3]}"#,
                PoisonKind::UnknownRole,
                "roles[0]: must be a role name (a string)",
            ),
            (
                r#"{"story_id":"s\u0007","plan_id":"p","approved_by":"a","roles":["DEV"]}"#,
                PoisonKind::InvalidRequest,
                "story_id: must not contain control characters",
            ),
        ];
        for (payload, kind, reason) in cases {
            assert_eq!(poison(payload), Poison { kind, reason: reason.to_owned() }, "{payload}");
        }
        let long = format!(
            r#"{{"story_id":"s","plan_id":"{}","approved_by":"a","roles":["DEV"]}}"#,
            "p".repeat(257)
        );
        assert_eq!(poison(&long).reason, "plan_id: must be at most 256 bytes, got 257");
    }

    #[test]
    fn the_task_id_holds_the_plan_id_and_the_role() {
        assert_eq!(task_id("p-42", Role::Dev), "plan-p-42-DEV");
        assert_eq!(task_id("2025.01:x_y", Role::Architect), "plan-2025.01:x_y-ARCHITECT");
    }

    #[test]
    fn a_plan_id_outside_the_alphabet_is_cleaned_and_hashed_so_look_alikes_stay_apart() {
        let spaced = task_id("plan 42/α", Role::Qa);
        assert!(spaced.starts_with("plan-plan_42__."), "{spaced}");
        assert!(spaced.ends_with("-QA"));
        assert_ne!(spaced, task_id("plan_42/α", Role::Qa));
        assert_ne!(task_id("a b", Role::Qa), task_id("a_b", Role::Qa));
        assert_eq!(spaced, task_id("plan 42/α", Role::Qa), "deterministic");
        orchestrator_api_grpc::convert::task_id(&spaced).unwrap();
    }

    #[test]
    fn a_long_plan_id_is_cut_to_128_bytes_and_stays_unique() {
        let long = "x".repeat(MAX_FIELD_BYTES);
        let id = task_id(&long, Role::Architect);
        assert_eq!(id.len(), TaskId::MAX_LEN);
        assert!(id.ends_with("-ARCHITECT"));
        let other = format!("{}y", "x".repeat(MAX_FIELD_BYTES - 1));
        assert_ne!(id, task_id(&other, Role::Architect));
        orchestrator_api_grpc::convert::task_id(&id).unwrap();
        let fits = "x".repeat(TaskId::MAX_LEN - "plan--DEV".len());
        assert_eq!(task_id(&fits, Role::Dev), format!("plan-{fits}-DEV"), "exactly 128 bytes stays plain");
    }

    #[test]
    fn the_template_fills_every_placeholder_once() {
        let event = PlanEvent {
            story_id: "s-1".into(),
            plan_id: "{role}".into(),
            approved_by: "ana".into(),
            roles: vec![Role::Dev],
        };
        let template =
            TaskTemplate::parse("{plan_id} / {story_id} / {role} / {approved_by} / {json: 1} {").unwrap();
        assert_eq!(template.render(&event, Role::Dev), "{role} / s-1 / DEV / ana / {json: 1} {");
        let default = TaskTemplate::default().render(&event, Role::Qa);
        assert!(
            default.starts_with("Plan {role} of story s-1 was approved by ana. As the QA council"),
            "{default}"
        );
    }

    #[test]
    fn a_template_with_an_unknown_placeholder_or_nothing_in_it_is_refused() {
        assert!(TaskTemplate::parse("Plan {plan}").unwrap_err().contains("unknown placeholder {plan}"));
        assert!(TaskTemplate::parse("  ").is_err());
        TaskTemplate::parse(TaskTemplate::DEFAULT).unwrap();
    }

    #[test]
    fn every_role_becomes_a_command_as_the_rpc_would_build_it_with_the_story_id() {
        let event = PlanEvent::parse(EVENT.as_bytes()).unwrap();
        let commands = event.commands(&TaskTemplate::default()).unwrap();
        assert_eq!(commands.len(), 2);
        let expected = DeliberateCommand::try_from(pb::DeliberateRequest {
            task_id: "plan-p-42-DEV".into(),
            task_description: TaskTemplate::default().render(&event, Role::Dev),
            role: "DEV".into(),
            ..pb::DeliberateRequest::default()
        })
        .unwrap();
        assert_eq!(commands[0], DeliberateCommand { story_id: Some("story-7".into()), ..expected });
        assert_eq!(commands[1].task_id.as_deref(), Some("plan-p-42-QA"));
        assert_eq!(commands[1].role, Role::Qa);
    }
}

//! Bus requests: the proto3 JSON form of `orchestrator.v1.DeliberateRequest`, for services
//! that submit over the bus instead of gRPC.
//!
//! The JSON is read against the descriptor set `orchestrator-api-grpc` embeds (the protos it
//! generated its types from), transcoded into that crate's `pb::DeliberateRequest`, and
//! converted by the very `TryFrom` the RPC uses: the same validation, the same errors naming
//! the same fields. Both the JSON names (`taskId`) and the proto names (`task_id`) are
//! accepted, and unknown fields are ignored, as the RPC ignores them in binary protobuf.
//! Unlike the RPC, `task_id` is required: nothing carries a generated id back to a bus
//! client, and a redelivery must map to the same deliberation.

use std::sync::LazyLock;

use orchestrator_api_grpc::pb;
use orchestrator_application::DeliberateCommand;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};
use serde_json::error::Category;

use crate::verdict::Poison;

/// The full name of the message a bus request holds.
const MESSAGE: &str = "orchestrator.v1.DeliberateRequest";

static DESCRIPTOR: LazyLock<MessageDescriptor> = LazyLock::new(|| {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .ok()
        .and_then(|pool| pool.get_message_by_name(MESSAGE))
        .expect("the descriptor set api-grpc embeds at build time holds orchestrator.v1.DeliberateRequest (see the tests)")
});

fn json_error(error: &serde_json::Error) -> Poison {
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => Poison::not_json(error),
        Category::Data => Poison::invalid("", &format!("not a proto3-JSON DeliberateRequest: {error}")),
    }
}

/// Reads the proto3 JSON of a `DeliberateRequest`.
///
/// # Errors
/// The poison it is: not JSON, or JSON that is not a `DeliberateRequest` (a field of the
/// wrong type, say).
pub fn decode(payload: &[u8]) -> Result<pb::DeliberateRequest, Poison> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let mut json = serde_json::Deserializer::from_slice(payload);
    let message = DynamicMessage::deserialize_with_options(DESCRIPTOR.clone(), &mut json, &options)
        .map_err(|e| json_error(&e))?;
    json.end().map_err(|e| json_error(&e))?;
    message
        .transcode_to::<pb::DeliberateRequest>()
        .map_err(|e| Poison::invalid("", &format!("not a DeliberateRequest: {e}")))
}

/// The command a bus request asks for, validated as the RPC validates it.
///
/// # Errors
/// The poison it is: see [`decode`]; `task_id` missing; any error the RPC would answer with
/// `INVALID_ARGUMENT`, naming the field.
pub fn command(payload: &[u8]) -> Result<DeliberateCommand, Poison> {
    let request = decode(payload)?;
    if request.task_id.is_empty() {
        return Err(Poison::missing(
            "task_id",
            "is required on the bus (no reply carries a generated one, and redeliveries must map to one deliberation)",
        ));
    }
    DeliberateCommand::try_from(request).map_err(|e| Poison::from_validation(&e))
}

#[cfg(test)]
mod tests {
    use orchestrator_domain::Role;

    use super::*;
    use crate::verdict::PoisonKind;

    fn poison(payload: &str) -> Poison {
        command(payload.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_descriptor_of_the_request_is_embedded() {
        assert_eq!(DESCRIPTOR.full_name(), MESSAGE);
    }

    #[test]
    fn json_names_and_proto_names_both_read_and_convert_as_the_rpc_would() {
        let json = r#"{"taskId":"t-1","taskDescription":"Design the cache","role":"qa","rounds":2,
            "numAgents":4,"agentProfiles":[],"constraints":{"rubric":"short","requirements":["fast"],
            "timeoutSeconds":"60","metadata":{"k":"v"}},"futureField":true}"#;
        let request = decode(json.as_bytes()).unwrap();
        assert_eq!(request.task_id, "t-1");
        assert_eq!(request.rounds, Some(2));
        assert_eq!(request.num_agents, Some(4));
        let constraints = request.constraints.clone().unwrap();
        assert_eq!(constraints.timeout_seconds, 60);
        assert_eq!(constraints.metadata.get("k").map(String::as_str), Some("v"));
        let from_json = command(json.as_bytes()).unwrap();
        assert_eq!(from_json, DeliberateCommand::try_from(request).unwrap());
        assert_eq!(from_json.role, Role::Qa);
        assert_eq!(from_json.story_id, None);

        let snake = r#"{"task_id":"t-1","task_description":"Design the cache","role":"DEV"}"#;
        let command = command(snake.as_bytes()).unwrap();
        assert_eq!(command.task_id.as_deref(), Some("t-1"));
        assert_eq!(command.task.description(), "Design the cache");
    }

    #[test]
    fn poison_names_the_field_as_the_rpc_does() {
        let missing = poison(r#"{"taskDescription":"Design the cache","role":"DEV"}"#);
        assert_eq!(missing.kind, PoisonKind::MissingField);
        assert!(missing.reason.starts_with("task_id: is required"), "{}", missing.reason);

        let role = poison(r#"{"taskId":"t-1","taskDescription":"Design the cache","role":"CHEF"}"#);
        assert_eq!(role.kind, PoisonKind::UnknownRole);
        assert_eq!(
            role.reason,
            "role: unknown role \"CHEF\"; expected one of DEV, QA, ARCHITECT, DEVOPS, DATA"
        );

        let id = poison(r#"{"taskId":"t 1","taskDescription":"Design the cache","role":"DEV"}"#);
        assert_eq!(id.kind, PoisonKind::InvalidRequest);
        assert!(id.reason.starts_with("task_id: invalid character ' '"), "{}", id.reason);

        let blank = poison(r#"{"taskId":"t-1","taskDescription":"  ","role":"DEV"}"#);
        assert_eq!(blank.reason, "task_description: must not be empty");

        let rounds = poison(r#"{"taskId":"t-1","taskDescription":"x","role":"DEV","rounds":9}"#);
        assert!(rounds.reason.starts_with("rounds: "), "{}", rounds.reason);
    }

    #[test]
    fn what_is_not_a_request_is_poison_too() {
        assert_eq!(poison("{").kind, PoisonKind::NotJson);
        assert_eq!(poison(r#"{"taskId":"t-1"} trailing"#).kind, PoisonKind::NotJson);
        let wrong_type = poison(r#"{"taskId":7,"taskDescription":"x","role":"DEV"}"#);
        assert_eq!(wrong_type.kind, PoisonKind::InvalidRequest);
        assert!(
            wrong_type.reason.starts_with("not a proto3-JSON DeliberateRequest: "),
            "{}",
            wrong_type.reason
        );
        assert_eq!(poison("[]").kind, PoisonKind::InvalidRequest);
    }
}

//! Application errors → gRPC status codes, in one exhaustive place.

use orchestrator_application::ApplicationError;
use tonic::Status;
use tracing::error;

/// Maps every application error to the status a client can act on.
///
/// Client mistakes keep their message (it names the field); internal causes are logged and
/// replaced by a generic message so nothing about the server leaks.
pub fn to_status(err: ApplicationError) -> Status {
    match err {
        ApplicationError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
        ApplicationError::BackendNotConfigured
        | ApplicationError::BackendMisconfigured { .. }
        | ApplicationError::FailedPrecondition(_) => Status::failed_precondition(err.to_string()),
        ApplicationError::AllAgentsFailed { .. }
        | ApplicationError::ShuttingDown { .. }
        | ApplicationError::ResultNotStored { .. }
        | ApplicationError::LeaseLost { .. } => Status::unavailable(err.to_string()),
        ApplicationError::DeadlineExceeded { .. } => Status::deadline_exceeded(err.to_string()),
        ApplicationError::Cancelled { .. } => Status::cancelled(err.to_string()),
        ApplicationError::NotFound { .. } => Status::not_found(err.to_string()),
        ApplicationError::AlreadyExists { .. } | ApplicationError::Conflict { .. } => {
            Status::already_exists(err.to_string())
        }
        ApplicationError::Missing { .. } => Status::not_found(err.to_string()),
        ApplicationError::ResourceExhausted(_) => Status::resource_exhausted(err.to_string()),
        ApplicationError::Store { source } => {
            error!(error = &source as &dyn std::error::Error, "storage failure");
            Status::unavailable("storage is unavailable; see the server log")
        }
        ApplicationError::Internal(cause) => {
            error!(%cause, "internal error");
            Status::internal("internal error; see the server log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_application::ports::StoreError;
    use std::time::Duration;
    use tonic::Code;

    #[test]
    fn client_errors_keep_their_message() {
        let status =
            to_status(ApplicationError::InvalidArgument { field: "role".into(), reason: "bad".into() });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "role: bad");
        assert_eq!(to_status(ApplicationError::BackendNotConfigured).code(), Code::FailedPrecondition);
        assert_eq!(
            to_status(ApplicationError::NotFound { task_id: orchestrator_domain::TaskId::new("x").unwrap() })
                .code(),
            Code::NotFound
        );
        let deadline = ApplicationError::DeadlineExceeded {
            timeout: Duration::from_secs(1),
            phase: orchestrator_domain::Phase::Proposing,
            partial: None,
        };
        assert_eq!(to_status(deadline).code(), Code::DeadlineExceeded);
        assert_eq!(
            to_status(ApplicationError::AllAgentsFailed { failures: vec![] }).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(ApplicationError::ResourceExhausted("full".into())).code(),
            Code::ResourceExhausted
        );
        let conflict =
            to_status(ApplicationError::Conflict { field: "agent_id".into(), reason: "taken".into() });
        assert_eq!((conflict.code(), conflict.message()), (Code::AlreadyExists, "agent_id: taken"));
        let missing =
            to_status(ApplicationError::Missing { field: "council_id".into(), reason: "none".into() });
        assert_eq!((missing.code(), missing.message()), (Code::NotFound, "council_id: none"));
    }

    #[test]
    fn internal_causes_do_not_leak() {
        let status = to_status(ApplicationError::Internal("secret path /etc/x".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("/etc/x"));
        let source = StoreError::unavailable("opening postgres://user:pw@db", "password rejected");
        let status = to_status(ApplicationError::Store { source });
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("pw"));
    }
}

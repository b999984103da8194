//! Ports: what the use cases need from the outside world, as traits adapters implement.

mod agent_backend;
mod backend_probe;
mod council_store;
mod dry_run;
mod events;
mod outbox;
mod progress;
mod store;
mod system;
mod test_runner;

pub use agent_backend::{AgentBackend, AgentError, Completion, ReviewReply, Selection};
pub use backend_probe::{BackendHealth, BackendProber};
pub use council_store::{AgentRecord, CouncilRecord, CouncilStore, RegistryChange, RegistryRecords};
pub use dry_run::DryRunner;
pub use events::{Decision, DeliberationEvent, EVENT_TYPE_PREFIX, EventKind};
pub use outbox::{Outbox, OutboxMessage, RelayLease, RelayMonitor, RelayStatus};
pub use progress::{AgentStep, NoProgress, ProgressObserver, StepKind};
pub use store::{
    Claim, ClaimScope, DeliberationRecord, DeliberationStore, Fence, Lease, ListQuery, NewDeliberation, Page,
    PageCursor, StoreCause, StoreError, StoredSelection, UnsuccessfulEnd,
};
pub use system::{Clock, IdGenerator};
pub use test_runner::TestRunner;

#[cfg(any(test, feature = "mocks"))]
pub use agent_backend::MockAgentBackend;
#[cfg(any(test, feature = "mocks"))]
pub use outbox::MockOutbox;
#[cfg(any(test, feature = "mocks"))]
pub use system::{MockClock, MockIdGenerator};
#[cfg(any(test, feature = "mocks"))]
pub use test_runner::MockTestRunner;

//! Proposals and their revision history.

use serde::{Deserialize, Serialize};

use crate::agent::AgentId;

/// An agent's answer to the task, with every earlier version kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    author: AgentId,
    content: String,
    created_at_ms: i64,
    revisions: Vec<String>,
    /// The current content was cut off at the model's token limit.
    #[serde(default)]
    truncated: bool,
}

impl Proposal {
    pub fn new(author: AgentId, content: String, created_at_ms: i64) -> Self {
        Self { author, content, created_at_ms, revisions: Vec::new(), truncated: false }
    }

    /// Rebuilds a proposal read back from storage.
    pub fn restore(author: AgentId, content: String, created_at_ms: i64, revisions: Vec<String>) -> Self {
        Self { author, content, created_at_ms, revisions, truncated: false }
    }

    /// Replaces the content, keeping the previous version in the history.
    pub fn revise(&mut self, content: String) {
        let previous = std::mem::replace(&mut self.content, content);
        self.revisions.push(previous);
        self.truncated = false;
    }

    /// Marks the current content as cut off at the model's token limit (until the next
    /// revision replaces it).
    pub fn mark_truncated(&mut self) {
        self.truncated = true;
    }

    /// Whether the current content was cut off at the model's token limit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Which version the current content is: 0 for the first proposal, n after n revisions.
    pub fn version(&self) -> usize {
        self.revisions.len()
    }

    pub fn author(&self) -> &AgentId {
        &self.author
    }

    /// The current (latest) content.
    pub fn content(&self) -> &str {
        &self.content
    }

    pub fn created_at_ms(&self) -> i64 {
        self.created_at_ms
    }

    /// Earlier versions, oldest first; empty when never revised.
    pub fn revisions(&self) -> &[String] {
        &self.revisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revise_keeps_history_oldest_first() {
        let mut p = Proposal::new(AgentId::new("dev-1").unwrap(), "v1".into(), 7);
        p.revise("v2".into());
        p.revise("v3".into());
        assert_eq!(p.content(), "v3");
        assert_eq!(p.revisions(), ["v1", "v2"]);
        assert_eq!(p.created_at_ms(), 7);
    }
}

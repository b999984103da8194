//! Every prompt the agents see, per role and phase, in one place.
//!
//! A prompt is a system message (the role's persona and the phase's job) and a user message
//! (the task block, the material of the phase, the answer format). Every user message carries
//! the task description, the rubric and the numbered requirements. Proposals under review and
//! candidates under selection are shown without their authors; the critiques an author revises
//! from are shown without their reviewers. Prompts are kept short because the smallest model
//! we run (SmolLM2-135M) has a small context and loses the thread in long instructions.

use std::fmt::Write as _;

use orchestrator_domain::{Persona, Review, Role, Task, TestOutcome};

use crate::delimiters::{CLOSE, OPEN};

/// Longest text embedded in a prompt (a proposal, a candidate, a critique), in characters;
/// longer texts are cut and marked, so one verbose agent cannot overflow a small context.
pub const MAX_EMBEDDED_CHARS: usize = 6_000;
/// Longest total of all candidates in a selection prompt, in characters.
pub const MAX_CANDIDATES_CHARS: usize = 12_000;
/// The JSON a review must answer with, as the review prompt shows it. Its `<…>` placeholders
/// are what [`review_parse`](crate::review_parse) recognises when a model echoes the template
/// instead of grading, so the two cannot drift apart.
pub const REVIEW_JSON_TEMPLATE: &str =
    r#"{"score": <0-10>, "critique": "<what to improve>", "issues": ["<problem>"]}"#;

/// The JSON a review must answer with when the server constrains the answer to its schema
/// ([`crate::answer_schema::review`]): the fields named in words. Tried on SmolLM2-135M under a
/// schema grammar, the placeholders of [`REVIEW_JSON_TEMPLATE`] were copied into the answer
/// (`"critique": "<what to improve>"`, 5 answers of 10), which is no review; named in words,
/// 10 of 10 answers were graded with a critique of their own.
pub const REVIEW_JSON_FIELDS: &str = "Reply with a JSON object: \"score\" is your grade from 0 (wrong) to 10 \
     (perfect), \"critique\" says in one sentence what to improve, \"issues\" lists the problems you found.";

/// How a prompt asks for its JSON answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerFormat {
    /// The answer is free text: the prompt shows the JSON template, placeholders and all, the
    /// form that got SmolLM2 to answer in JSON at all.
    Template,
    /// The server constrains the answer to the schema: the prompt names the fields in words
    /// (see [`REVIEW_JSON_FIELDS`]).
    Schema,
}

/// Which step of a deliberation a call serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromptKind {
    Propose,
    Review,
    Revise,
    Select,
}

impl PromptKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PromptKind::Propose => "propose",
            PromptKind::Review => "review",
            PromptKind::Revise => "revise",
            PromptKind::Select => "select",
        }
    }
}

/// A system and a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    pub(crate) system: String,
    pub(crate) user: String,
}

/// Who the agent is: one line per role.
pub(crate) fn persona(role: Role) -> &'static str {
    match role {
        Role::Dev => {
            "You are a senior software developer. You write correct, simple, maintainable code and explain it briefly."
        }
        Role::Qa => "You are a senior QA engineer. You think in test cases, edge cases and failure modes.",
        Role::Architect => {
            "You are a software architect. You weigh designs, interfaces, trade-offs and long-term maintainability."
        }
        Role::Devops => {
            "You are a DevOps engineer. You care about builds, deployment, automation, observability and reliability."
        }
        Role::Data => {
            "You are a data engineer. You care about data models, pipelines, data quality and scale."
        }
    }
}

fn system(role: Role, phase: PromptKind) -> String {
    let job = match phase {
        PromptKind::Propose => "Propose a solution to the task.",
        PromptKind::Review => "Review a colleague's proposal strictly and fairly.",
        PromptKind::Revise => "Improve your proposal using the reviews you received.",
        PromptKind::Select => "Choose the best of several candidate proposals.",
    };
    format!("{} {job}", persona(role))
}

/// The task description, rubric and numbered requirements, as every prompt shows them.
pub(crate) fn task_block(task: &Task) -> String {
    let constraints = task.constraints();
    let mut block = format!("Task:\n{}\n\nRubric:\n", task.description());
    if constraints.rubric().is_empty() {
        block.push_str("(none given: judge correctness, completeness and clarity)\n");
    } else {
        block.push_str(constraints.rubric());
        block.push('\n');
    }
    block.push_str("\nRequirements:\n");
    if constraints.requirements().is_empty() {
        block.push_str("(none)\n");
    }
    for (i, requirement) in constraints.requirements().iter().enumerate() {
        let _ = writeln!(block, "{}. {requirement}", i + 1);
    }
    if let Some(tests) = constraints.acceptance_tests() {
        let _ = write!(
            block,
            "\nAcceptance tests ({language}; they import the code of a proposal as the module `solution`, \
             so put the whole solution in one ```{language} block):\n{OPEN}\n{}\n{CLOSE}\n",
            bounded(tests.code(), MAX_EMBEDDED_CHARS),
            language = tests.language(),
        );
    }
    block
}

/// The report of a proposal's code run on the acceptance tests, when they ran; `None` when the
/// task has no tests or they did not run (a prompt then says nothing about them).
fn test_report(tests: &TestOutcome) -> Option<String> {
    let report = tests.report()?;
    Some(format!("{OPEN}\n{}\n{CLOSE}", bounded(&report.render(), MAX_EMBEDDED_CHARS)))
}

/// Asks for a first proposal.
pub(crate) fn propose(role: Role, task: &Task) -> Prompt {
    Prompt {
        system: system(role, PromptKind::Propose),
        user: format!(
            "{}\nWrite your proposal. Address every requirement by its number. Output only the proposal.",
            task_block(task)
        ),
    }
}

/// Asks for a first proposal of a task whose first answer failed its acceptance tests (an
/// escalated cascade): the answer and its test report come first, so the agent learns from
/// what failed instead of writing the same code again.
pub(crate) fn propose_after(role: Role, task: &Task, first_answer: &str, tests: &TestOutcome) -> Prompt {
    let mut user = format!(
        "{}
Another agent already answered; its answer did not pass the acceptance tests:
{OPEN}
{}
{CLOSE}
",
        task_block(task),
        bounded(first_answer, MAX_EMBEDDED_CHARS)
    );
    if let Some(report) = test_report(tests) {
        let _ = write!(
            user,
            "
Its code run on the acceptance tests:
{report}
"
        );
    }
    user.push_str(
        "
Write your own proposal, whose code passes every test. Address every requirement by its number. \
         Output only the proposal.",
    );
    Prompt { system: system(role, PromptKind::Propose), user }
}

/// Asks for a JSON review of an anonymous proposal.
///
/// The answer format comes first and the prompt ends by asking for the JSON: tried on
/// SmolLM2-135M, a format stated only after the proposal made it continue the proposal's code
/// instead of reviewing it (0 of 4 answers graded, against 4 of 4 this way).
///
/// When the proposal's code ran on the acceptance tests, their report follows the proposal, so
/// the grade rests on what the code did, not only on how it reads.
pub(crate) fn review(
    role: Role,
    task: &Task,
    proposal: &str,
    tests: &TestOutcome,
    format: AnswerFormat,
) -> Prompt {
    let report = test_report(tests).map_or_else(String::new, |report| {
        format!(
            "\n\nIts code run on the acceptance tests:\n{report}\nA proposal that fails tests is not correct."
        )
    });
    let answer = match format {
        AnswerFormat::Template => format!("Reply with JSON only:\n{REVIEW_JSON_TEMPLATE}"),
        AnswerFormat::Schema => REVIEW_JSON_FIELDS.to_owned(),
    };
    Prompt {
        system: system(role, PromptKind::Review),
        user: format!(
            "Grade the proposal below against the rubric and the requirements. {answer}\n\n\
             {}\nProposal to review:\n{OPEN}\n{}\n{CLOSE}{report}\n\nYour JSON review:",
            task_block(task),
            bounded(proposal, MAX_EMBEDDED_CHARS)
        ),
    }
}

/// Asks for a complete revision of the agent's own proposal, from the critiques it received.
///
/// When its code ran on the acceptance tests, the author sees its own report first: failing
/// test names, assertion messages and the ends of the tracebacks.
pub(crate) fn revise(
    role: Role,
    task: &Task,
    current: &str,
    tests: &TestOutcome,
    reviews: &[Review],
) -> Prompt {
    let mut user = format!(
        "{}\nYour current proposal:\n{OPEN}\n{}\n{CLOSE}\n\n",
        task_block(task),
        bounded(current, MAX_EMBEDDED_CHARS)
    );
    if let Some(report) = test_report(tests) {
        let _ = write!(user, "Your code run on the acceptance tests:\n{report}\n\n");
    }
    user.push_str("Reviews you received:\n");
    if reviews.is_empty() {
        user.push_str("(none)\n");
    }
    for (i, review) in reviews.iter().enumerate() {
        let score = review.score.map_or_else(|| "no score".to_owned(), |s| format!("score {}/10", s.value()));
        let _ = writeln!(
            user,
            "Review {} ({score}): {}",
            i + 1,
            bounded(review.critique.trim(), MAX_EMBEDDED_CHARS)
        );
        if !review.issues.is_empty() {
            let _ = writeln!(user, "Issues: {}", review.issues.join("; "));
        }
    }
    user.push_str("\nWrite a complete revised proposal that fixes the issues and meets every requirement");
    match tests.passed() {
        Some(false) => user.push_str(", and whose code passes the failing tests"),
        // Seen on SmolLM2: a revision of code that passed broke it; say what to keep.
        Some(true) => user.push_str(", keeping its code passing every test"),
        None => {}
    }
    user.push_str(". Output only the proposal.");
    Prompt { system: system(role, PromptKind::Revise), user }
}

/// Asks which of anonymous candidates is best, as JSON with a 1-based choice; format first, as
/// for reviews, and as a template or in words as for reviews ([`AnswerFormat`]).
pub(crate) fn select(role: Role, task: &Task, candidates: &[String], format: AnswerFormat) -> Prompt {
    let each = (MAX_CANDIDATES_CHARS / candidates.len().max(1)).min(MAX_EMBEDDED_CHARS);
    let k = candidates.len();
    let answer = match format {
        AnswerFormat::Template => {
            format!("Reply with JSON only:\n{{\"choice\": <1-{k}>, \"rationale\": \"<why>\"}}")
        }
        AnswerFormat::Schema => format!(
            "Reply with a JSON object: \"choice\" is the number of the best candidate (1 to {k}), \
             \"rationale\" says why in one sentence."
        ),
    };
    let mut user = format!(
        "Choose the candidate that best meets the rubric and the requirements. {answer}\n\n{}",
        task_block(task)
    );
    for (i, candidate) in candidates.iter().enumerate() {
        let _ = write!(user, "\nCandidate {}:\n{OPEN}\n{}\n{CLOSE}\n", i + 1, bounded(candidate, each));
    }
    user.push_str("\nYour JSON answer:");
    Prompt { system: system(role, PromptKind::Select), user }
}

/// `prompt` with the agent's own persona, if it has one, after its role's in the system message.
/// A persona comes from the operators who registered the agent (a standing council), never from
/// a task, so it sits with the instructions rather than inside the delimited material.
pub(crate) fn with_persona(mut prompt: Prompt, persona: Option<&Persona>) -> Prompt {
    if let Some(persona) = persona {
        let _ = write!(prompt.system, "\n\n{persona}");
    }
    prompt
}

/// `text` trimmed and cut to `max` characters, with a visible mark where it was cut.
fn bounded(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}\n[... truncated]", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use orchestrator_domain::{AgentId, PeerScore, TaskConstraints};

    use super::*;

    fn task() -> Task {
        let constraints = TaskConstraints::new(
            "Correctness first, then clarity".into(),
            vec!["Handle empty input".into(), "Include unit tests".into()],
            BTreeMap::new(),
            0,
            0,
        )
        .unwrap();
        Task::new("Write a function that reverses a string", constraints).unwrap()
    }

    fn all_prompts(role: Role) -> Vec<Prompt> {
        let received = Review {
            reviewer: AgentId::new("dev-2").unwrap(),
            target: AgentId::new("dev-1").unwrap(),
            round: 1,
            critique: "Misses empty input".into(),
            score: Some(PeerScore::new(6.5).unwrap()),
            issues: vec!["no tests".into()],
        };
        vec![
            propose(role, &task()),
            review(role, &task(), "fn rev() {}", &TestOutcome::no_tests(), AnswerFormat::Template),
            revise(role, &task(), "fn rev() {}", &TestOutcome::no_tests(), &[received]),
            select(role, &task(), &["A".into(), "B".into()], AnswerFormat::Template),
            review(role, &task(), "fn rev() {}", &TestOutcome::no_tests(), AnswerFormat::Schema),
            select(role, &task(), &["A".into(), "B".into()], AnswerFormat::Schema),
            propose_after(role, &task(), "fn rev() {}", &TestOutcome::no_tests()),
        ]
    }

    #[test]
    fn an_agent_joining_a_cascade_sees_the_first_answer_and_its_failing_tests() {
        use orchestrator_domain::{CaseOutcome, TestCase, TestReport};
        let failing = TestOutcome::Ran(TestReport::from_cases(
            vec![TestCase::new("test_empty", CaseOutcome::Failed, "assert rev('') == ''", "line 3")],
            "",
        ));
        let user = propose_after(Role::Dev, &task(), "def rev(s): return s[1:]", &failing).user;
        assert!(user.contains("did not pass the acceptance tests"), "{user}");
        assert!(user.contains("def rev(s): return s[1:]"), "the first answer is shown: {user}");
        assert!(user.contains("FAILED test_empty"), "its failing test is shown: {user}");
        assert!(user.ends_with("Output only the proposal."), "{user}");
    }

    #[test]
    fn every_prompt_of_every_role_carries_task_rubric_and_numbered_requirements() {
        for role in Role::ALL {
            for prompt in all_prompts(role) {
                assert!(prompt.system.starts_with(persona(role)), "{}", prompt.system);
                for part in [
                    "Write a function that reverses a string",
                    "Correctness first, then clarity",
                    "1. Handle empty input",
                    "2. Include unit tests",
                ] {
                    assert!(prompt.user.contains(part), "{role}: missing {part:?} in {}", prompt.user);
                }
            }
        }
    }

    #[test]
    fn personas_differ_per_role() {
        let mut personas: Vec<&str> = Role::ALL.iter().map(|r| persona(*r)).collect();
        personas.dedup();
        assert_eq!(personas.len(), Role::ALL.len());
    }

    #[test]
    fn empty_rubric_and_requirements_are_said_so() {
        let task = Task::new("Do it", TaskConstraints::default()).unwrap();
        let user = propose(Role::Dev, &task).user;
        assert!(user.contains("Rubric:\n(none given"), "{user}");
        assert!(user.contains("Requirements:\n(none)"), "{user}");
    }

    #[test]
    fn review_asks_for_json_and_shows_no_author() {
        let user =
            review(Role::Qa, &task(), "my proposal text", &TestOutcome::no_tests(), AnswerFormat::Template)
                .user;
        assert!(user.contains("my proposal text"));
        assert!(user.contains(r#"{"score": <0-10>, "critique": "#), "{user}");
        assert!(user.contains(&format!("Reply with JSON only:\n{REVIEW_JSON_TEMPLATE}\n")), "{user}");
        assert!(!user.contains("dev-1"));
    }

    #[test]
    fn under_a_schema_the_review_names_every_field_in_words_and_shows_no_placeholder() {
        let user =
            review(Role::Qa, &task(), "my proposal text", &TestOutcome::no_tests(), AnswerFormat::Schema)
                .user;
        assert!(user.contains(REVIEW_JSON_FIELDS), "{user}");
        for field in ["\"score\"", "\"critique\"", "\"issues\""] {
            assert!(REVIEW_JSON_FIELDS.contains(field), "{field}");
        }
        assert!(!user.contains("<0-10>") && !user.contains("<what to improve>"), "{user}");
        assert!(user.ends_with("Your JSON review:"));
        let user = select(Role::Dev, &task(), &["A".into(), "B".into()], AnswerFormat::Schema).user;
        assert!(user.contains(r#""choice" is the number of the best candidate (1 to 2)"#), "{user}");
        assert!(!user.contains("<1-2>"), "{user}");
    }

    #[test]
    fn revise_shows_own_proposal_and_critiques_with_scores_but_not_reviewers() {
        let prompt = &all_prompts(Role::Dev)[2];
        assert!(prompt.user.contains("Your current proposal:\n<<<\nfn rev() {}\n>>>"), "{}", prompt.user);
        assert!(prompt.user.contains("Review 1 (score 6.5/10): Misses empty input"), "{}", prompt.user);
        assert!(prompt.user.contains("Issues: no tests"));
        assert!(prompt.user.contains("complete revised proposal"));
        assert!(!prompt.user.contains("dev-2"));
    }

    #[test]
    fn select_numbers_candidates_from_one_and_asks_for_json_choice() {
        let prompt = &all_prompts(Role::Architect)[3];
        assert!(prompt.user.contains("Candidate 1:\n<<<\nA\n>>>"), "{}", prompt.user);
        assert!(prompt.user.contains("Candidate 2:\n<<<\nB\n>>>"));
        assert!(prompt.user.contains(r#"{"choice": <1-2>, "rationale": "<why>"}"#), "{}", prompt.user);
    }

    #[test]
    fn an_agent_persona_follows_the_role_persona_in_every_system_message() {
        let own = Persona::new("You always ask for a rollback plan.").unwrap();
        for prompt in all_prompts(Role::Devops) {
            let user = prompt.user.clone();
            let with = with_persona(prompt.clone(), Some(&own));
            assert!(with.system.starts_with(persona(Role::Devops)), "{}", with.system);
            assert!(with.system.ends_with("\n\nYou always ask for a rollback plan."), "{}", with.system);
            assert_eq!(with.user, user, "the task material is untouched");
            assert_eq!(with_persona(prompt.clone(), None), prompt);
        }
    }

    fn tested_task() -> Task {
        let tests = orchestrator_domain::AcceptanceTests::new(
            "python",
            "from solution import reverse\n\ndef test_empty():\n    assert reverse('') == ''\n".into(),
        )
        .unwrap();
        Task::new("Write reverse(s) in Python", TaskConstraints::default().with_acceptance_tests(tests))
            .unwrap()
    }

    fn failing_report() -> TestOutcome {
        use orchestrator_domain::{CaseOutcome, TestCase, TestReport};
        TestOutcome::Ran(TestReport::from_cases(
            vec![
                TestCase::new("test_abc", CaseOutcome::Passed, "", ""),
                TestCase::new(
                    "test_empty",
                    CaseOutcome::Failed,
                    "assert reverse('') == ''",
                    "File \"acceptance_tests.py\", line 4, in test_empty\nAssertionError",
                ),
            ],
            "",
        ))
    }

    #[test]
    fn every_prompt_shows_the_acceptance_tests_and_the_solution_module() {
        for prompt in [
            propose(Role::Dev, &tested_task()),
            review(Role::Dev, &tested_task(), "x", &TestOutcome::no_tests(), AnswerFormat::Template),
        ] {
            assert!(
                prompt.user.contains(
                    "Acceptance tests (python; they import the code of a proposal as the module `solution`"
                ),
                "{}",
                prompt.user
            );
            assert!(
                prompt.user.contains("def test_empty():\n    assert reverse('') == ''"),
                "{}",
                prompt.user
            );
        }
        assert!(!propose(Role::Dev, &task()).user.contains("Acceptance tests"));
    }

    #[test]
    fn reviewers_see_the_test_report_of_the_proposal_they_grade() {
        let user = review(
            Role::Qa,
            &tested_task(),
            "def reverse(s): return s",
            &failing_report(),
            AnswerFormat::Template,
        )
        .user;
        assert!(user.contains("Its code run on the acceptance tests:\n<<<\n1 passed, 1 failed, 0 errored\nFAILED test_empty: assert reverse('') == ''"), "{user}");
        assert!(user.ends_with("Your JSON review:"), "the request for JSON stays last");
        let quiet =
            review(Role::Qa, &tested_task(), "x", &TestOutcome::no_sandbox(), AnswerFormat::Schema).user;
        assert!(!quiet.contains("Its code run on"), "tests that did not run are not shown: {quiet}");
    }

    #[test]
    fn authors_revise_with_their_own_failures() {
        let user = revise(Role::Dev, &tested_task(), "def reverse(s): return s", &failing_report(), &[]).user;
        assert!(user.contains("Your code run on the acceptance tests:\n<<<\n1 passed, 1 failed"), "{user}");
        assert!(user.contains("FAILED test_empty: assert reverse('') == ''\n    File \"acceptance_tests.py\", line 4, in test_empty"), "{user}");
        assert!(user.ends_with("whose code passes the failing tests. Output only the proposal."), "{user}");
    }

    #[test]
    fn authors_whose_code_passes_are_told_to_keep_it_passing() {
        use orchestrator_domain::{CaseOutcome, TestCase, TestReport};
        let passing = TestOutcome::Ran(TestReport::from_cases(
            vec![TestCase::new("test_empty", CaseOutcome::Passed, "", "")],
            "",
        ));
        let user = revise(Role::Dev, &tested_task(), "def reverse(s): return s[::-1]", &passing, &[]).user;
        assert!(user.contains("1 passed, 0 failed, 0 errored"), "{user}");
        assert!(user.ends_with("keeping its code passing every test. Output only the proposal."), "{user}");
    }

    #[test]
    fn long_embedded_texts_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_EMBEDDED_CHARS + 10);
        let user = review(Role::Dev, &task(), &long, &TestOutcome::no_tests(), AnswerFormat::Template).user;
        assert!(user.contains("[... truncated]"));
        assert!(user.chars().filter(|c| *c == 'é').count() == MAX_EMBEDDED_CHARS);
    }
}

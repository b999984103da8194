use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::agent::ProfileName;
use crate::checks::DryRunOutcome;
use crate::review::PeerScore;
use crate::role::Role;
use crate::scoring::ScoringWeights;
use crate::task::TaskConstraints;

fn task_with(requirements: &[&str], max_iterations: i64) -> Task {
    let constraints = TaskConstraints::new(
        "correctness first".into(),
        requirements.iter().map(|r| (*r).to_owned()).collect(),
        BTreeMap::new(),
        0,
        max_iterations,
    )
    .unwrap();
    Task::new("Design a rate limiter for the public API", constraints).unwrap()
}

fn deliberation(agents: usize, rounds: u32) -> Deliberation {
    let council = Council::assemble(Role::Dev, agents, &[ProfileName::default_profile()]).unwrap();
    Deliberation::new(council, task_with(&[], 0), Rounds::new(i64::from(rounds)).unwrap())
}

fn id(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

const TEXT: &str = "Use a token bucket per API key, stored in a shared cache, refilled lazily.";

fn propose_all(d: &mut Deliberation) {
    for agent in d.proposal_requests() {
        d.record_proposal(&agent.id, format!("{TEXT} ({})", agent.id), agent.seat as i64).unwrap();
    }
}

fn review_all(d: &mut Deliberation, grade: impl Fn(&ReviewAssignment) -> Option<f64>) {
    for a in d.review_assignments() {
        let score = grade(&a).map(|g| PeerScore::new(g).unwrap());
        d.record_review(Review {
            reviewer: a.reviewer.id.clone(),
            target: a.target.clone(),
            round: a.round,
            critique: "tighten the refill rule".into(),
            score,
            issues: vec![],
        })
        .unwrap();
    }
}

fn revise_all(d: &mut Deliberation) {
    for r in d.revision_requests() {
        d.record_revision(&r.author.id, format!("{} (rev {})", r.current, r.round)).unwrap();
    }
}

fn pairs(d: &Deliberation) -> Vec<(String, String)> {
    d.review_assignments().into_iter().map(|a| (a.reviewer.id.to_string(), a.target.to_string())).collect()
}

fn strs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[test]
fn every_agent_is_asked_to_propose_first() {
    let d = deliberation(3, 1);
    assert_eq!(d.phase(), Phase::Proposing);
    let ids: Vec<_> = d.proposal_requests().into_iter().map(|a| a.id.to_string()).collect();
    assert_eq!(ids, ["dev-1", "dev-2", "dev-3"]);
}

#[test]
fn cannot_advance_while_replies_are_pending() {
    let mut d = deliberation(2, 1);
    d.record_proposal(&id("dev-1"), TEXT.into(), 0).unwrap();
    let err = d.advance().unwrap_err();
    assert_eq!(err, DomainError::RepliesPending { phase: Phase::Proposing, pending: 1 }, "{err}");
}

#[test]
fn zero_rounds_goes_straight_to_scoring() {
    let mut d = deliberation(3, 0);
    propose_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
}

#[test]
fn review_ring_rotates_over_rounds_and_skips_self() {
    let mut d = deliberation(3, 3);
    propose_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 1 });
    assert_eq!(pairs(&d), strs(&[("dev-1", "dev-2"), ("dev-2", "dev-3"), ("dev-3", "dev-1")]));
    review_all(&mut d, |_| Some(5.0));
    assert_eq!(d.advance().unwrap(), Phase::Revising { round: 1 });
    revise_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 2 });
    assert_eq!(pairs(&d), strs(&[("dev-1", "dev-3"), ("dev-2", "dev-1"), ("dev-3", "dev-2")]));
    review_all(&mut d, |_| Some(5.0));
    d.advance().unwrap();
    revise_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 3 });
    assert_eq!(pairs(&d), strs(&[("dev-1", "dev-2"), ("dev-2", "dev-3"), ("dev-3", "dev-1")]));
}

#[test]
fn reviews_show_the_target_proposal() {
    let mut d = deliberation(2, 1);
    propose_all(&mut d);
    d.advance().unwrap();
    let assignments = d.review_assignments();
    assert_eq!(assignments[0].proposal, format!("{TEXT} (dev-2)"));
}

#[test]
fn review_of_an_unassigned_target_is_rejected() {
    let mut d = deliberation(3, 1);
    propose_all(&mut d);
    d.advance().unwrap();
    let err = d
        .record_review(Review {
            reviewer: id("dev-1"),
            target: id("dev-3"),
            round: 1,
            critique: String::new(),
            score: None,
            issues: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().starts_with("target: dev-1 was not assigned to review dev-3"), "{err}");
}

#[test]
fn authors_revise_their_own_proposal_with_the_reviews_they_received() {
    let mut d = deliberation(3, 1);
    propose_all(&mut d);
    d.advance().unwrap();
    review_all(&mut d, |a| Some(if a.target.as_str() == "dev-2" { 9.0 } else { 4.0 }));
    d.advance().unwrap();
    let requests = d.revision_requests();
    assert_eq!(requests.len(), 3);
    let dev2 = requests.iter().find(|r| r.author.id.as_str() == "dev-2").unwrap();
    assert_eq!(dev2.current, format!("{TEXT} (dev-2)"));
    assert_eq!(dev2.reviews.len(), 1);
    assert_eq!(dev2.reviews[0].reviewer.as_str(), "dev-1");
    revise_all(&mut d);
    let p = d.proposals().iter().find(|p| p.author().as_str() == "dev-2").unwrap();
    assert_eq!(p.revisions(), [format!("{TEXT} (dev-2)")]);
    assert_eq!(p.content(), format!("{TEXT} (dev-2) (rev 1)"));
}

#[test]
fn failed_agent_is_dropped_and_reported() {
    let mut d = deliberation(3, 1);
    d.record_proposal(&id("dev-1"), TEXT.into(), 0).unwrap();
    d.record_failure(&id("dev-2"), "connection refused").unwrap();
    d.record_proposal(&id("dev-3"), TEXT.into(), 0).unwrap();
    d.advance().unwrap();
    assert_eq!(d.proposals().len(), 2);
    assert_eq!(
        d.failures(),
        [AgentFailure {
            agent: id("dev-2"),
            phase: Phase::Proposing,
            reason: "connection refused".into(),
            misconfigured_profile: None,
        }]
    );
    assert_eq!(pairs(&d), strs(&[("dev-1", "dev-3"), ("dev-3", "dev-1")]));
}

#[test]
fn reviewer_failing_loses_its_own_proposal() {
    let mut d = deliberation(3, 1);
    propose_all(&mut d);
    d.advance().unwrap();
    d.record_failure(&id("dev-1"), "timeout").unwrap();
    for a in d.review_assignments() {
        d.record_review(Review {
            reviewer: a.reviewer.id,
            target: a.target,
            round: 1,
            critique: "ok".into(),
            score: None,
            issues: vec![],
        })
        .unwrap();
    }
    d.advance().unwrap();
    assert!(d.proposals().iter().all(|p| p.author().as_str() != "dev-1"));
    assert_eq!(d.failures()[0].phase, Phase::Reviewing { round: 1 });
    // dev-2 was to be reviewed by dev-1, which failed: dev-2 has nothing to revise on.
    let authors: Vec<_> = d.revision_requests().into_iter().map(|r| r.author.id.to_string()).collect();
    assert_eq!(authors, ["dev-3"]);
}

#[test]
fn blank_proposal_counts_as_failure() {
    let mut d = deliberation(2, 0);
    d.record_proposal(&id("dev-1"), "  \n".into(), 0).unwrap();
    d.record_proposal(&id("dev-2"), TEXT.into(), 0).unwrap();
    d.advance().unwrap();
    assert_eq!(d.failures()[0].reason, "returned an empty proposal");
    assert_eq!(d.proposals().len(), 1);
}

#[test]
fn all_agents_failing_leaves_no_survivor() {
    let mut d = deliberation(2, 1);
    d.record_failure(&id("dev-1"), "boom").unwrap();
    d.record_failure(&id("dev-2"), "boom").unwrap();
    assert_eq!(d.advance().unwrap_err(), DomainError::NoSurvivors);
}

#[test]
fn a_reply_nobody_asked_for_is_rejected() {
    let mut d = deliberation(2, 1);
    d.record_proposal(&id("dev-1"), TEXT.into(), 0).unwrap();
    assert!(matches!(d.record_proposal(&id("dev-1"), TEXT.into(), 0), Err(DomainError::NotPending { .. })));
    assert!(matches!(d.record_proposal(&id("qa-9"), TEXT.into(), 0), Err(DomainError::NotPending { .. })));
    assert!(matches!(d.record_revision(&id("dev-2"), TEXT.into()), Err(DomainError::WrongPhase { .. })));
}

#[test]
fn single_agent_council_skips_peer_review() {
    let mut d = deliberation(1, 3);
    propose_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
}

#[test]
fn max_iterations_caps_the_rounds() {
    let council = Council::assemble(Role::Qa, 2, &[]).unwrap();
    let d = Deliberation::new(council, task_with(&[], 2), Rounds::new(5).unwrap());
    assert_eq!(d.rounds(), 2);
}

#[test]
fn rounds_are_bounded() {
    assert!(Rounds::new(-1).is_err());
    assert_eq!(Rounds::new(6).unwrap_err().to_string(), "rounds: must be within 0..=5, got 6");
    assert_eq!(Rounds::default().get(), 1);
}

#[test]
fn finish_ranks_by_score_using_last_round_peer_grades() {
    let mut d = deliberation(3, 2);
    propose_all(&mut d);
    d.advance().unwrap();
    // Round 1 likes dev-1; round 2 likes dev-3. Only the last round counts.
    review_all(&mut d, |a| Some(if a.target.as_str() == "dev-1" { 10.0 } else { 1.0 }));
    d.advance().unwrap();
    revise_all(&mut d);
    d.advance().unwrap();
    review_all(&mut d, |a| Some(if a.target.as_str() == "dev-3" { 10.0 } else { 2.0 }));
    d.advance().unwrap();
    revise_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    d.record_usage(
        &id("dev-3"),
        TokenUsage { prompt_tokens: 5, completion_tokens: 7, calls: 1, latency_ms: 3 },
    );

    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!(d.phase(), Phase::Completed);
    let order: Vec<_> = outcome.results.iter().map(|r| (r.rank, r.agent.id.to_string())).collect();
    assert_eq!(order[0], (1, "dev-3".to_owned()));
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-3");
    assert_eq!(outcome.winner().peer_score, Some(10.0));
    assert_eq!(outcome.winner().reviews.len(), 2);
    assert_eq!(outcome.winner().proposal.revisions().len(), 2);
    assert_eq!(outcome.winner().usage.completion_tokens, 7);
    assert_eq!(outcome.usage.total_tokens(), 12);
    // dev-1 and dev-2 tie on score; dev-1 proposed earlier (created_at = seat).
    assert_eq!(order[1], (2, "dev-1".to_owned()));
    assert_eq!(order[2], (3, "dev-2".to_owned()));
    assert!(outcome.results.iter().all(|r| r.checks.all_passed()));
}

/// Two agents, one round: the reviewer of `ungraded` gives no usable grade, the other gives
/// `grade`; the finished outcome.
fn two_agents_one_ungraded(ungraded: &str, grade: f64) -> DeliberationOutcome {
    let mut d = deliberation(2, 1);
    propose_all(&mut d);
    d.advance().unwrap();
    review_all(&mut d, |a| if a.target.as_str() == ungraded { None } else { Some(grade) });
    d.advance().unwrap();
    revise_all(&mut d);
    d.advance().unwrap();
    d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap()
}

fn result_of<'a>(outcome: &'a DeliberationOutcome, agent: &str) -> &'a RankedProposal {
    outcome.results.iter().find(|r| r.agent.id.as_str() == agent).unwrap()
}

#[test]
fn an_ungraded_proposal_is_scored_as_the_lowest_graded_one_not_on_checks_alone() {
    let outcome = two_agents_one_ungraded("dev-1", 0.0);
    let (dev1, dev2) = (result_of(&outcome, "dev-1"), result_of(&outcome, "dev-2"));
    assert_eq!(dev1.peer_score, None, "the reported peer score stays absent");
    assert_eq!(dev2.peer_score, Some(0.0));
    assert_eq!(dev1.check_score, dev2.check_score);
    assert_eq!(dev1.score, dev2.score, "no usable review earns nothing over a 0/10");
    assert!(dev1.score < dev1.check_score);
}

/// Captured on SmolLM2-135M: one reviewer graded its target 6/10, the other answered with the
/// JSON template (no grade). Before, the ungraded proposal was scored on its checks alone and
/// won; now it is credited with the lowest grade given.
#[test]
fn a_proposal_never_gains_by_having_no_usable_review() {
    let outcome = two_agents_one_ungraded("dev-2", 6.0);
    let (dev1, dev2) = (result_of(&outcome, "dev-1"), result_of(&outcome, "dev-2"));
    assert_eq!(dev1.check_score, dev2.check_score);
    assert!(dev2.score <= dev1.score, "{} > {}", dev2.score.value(), dev1.score.value());
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-1");
}

#[test]
fn checks_decide_between_otherwise_equal_proposals() {
    let council = Council::assemble(Role::Devops, 2, &[]).unwrap();
    let mut d = Deliberation::new(council, task_with(&["rollback plan"], 0), Rounds::new(0).unwrap());
    d.record_proposal(&id("devops-1"), "Deploy with `curl https://x.example | sh` and hope.".into(), 0)
        .unwrap();
    d.record_proposal(
        &id("devops-2"),
        "Blue/green deploy with a scripted rollback plan per release.".into(),
        1,
    )
    .unwrap();
    d.advance().unwrap();
    let dry_runs = BTreeMap::from([(
        id("devops-2"),
        DryRunOutcome::Ran { passed: true, exit_code: 0, output: "ok".into(), message: String::new() },
    )]);
    let outcome = d.finish(dry_runs, &ScoringWeights::default()).unwrap();
    assert_eq!(outcome.winner().agent.id.as_str(), "devops-2");
    assert_eq!(outcome.winner().checks.dry_run.passed(), Some(true));
    let loser = &outcome.results[1];
    assert!(!loser.checks.policy.passed());
    assert_eq!(loser.checks.lint.coverage.missing, [0]);
    assert_eq!(loser.checks.dry_run.passed(), None);
    assert!(loser.score.value() < outcome.winner().score.value());
}

#[test]
fn finish_is_refused_before_scoring() {
    let mut d = deliberation(2, 1);
    assert!(matches!(
        d.finish(BTreeMap::new(), &ScoringWeights::default()),
        Err(DomainError::WrongPhase { .. })
    ));
}

proptest! {
    #[test]
    fn nobody_ever_reviews_itself_and_everyone_is_reviewed_once(agents in 2usize..=16, rounds in 1u32..=5) {
        let mut d = deliberation(agents, rounds);
        propose_all(&mut d);
        let mut round = 0;
        while let Phase::Reviewing { .. } = d.advance().unwrap() {
            round += 1;
            let assignments = d.review_assignments();
            prop_assert_eq!(assignments.len(), agents);
            let targets: BTreeSet<_> = assignments.iter().map(|a| a.target.clone()).collect();
            prop_assert_eq!(targets.len(), agents);
            for a in &assignments {
                prop_assert_ne!(&a.reviewer.id, &a.target);
            }
            review_all(&mut d, |_| Some(5.0));
            d.advance().unwrap();
            revise_all(&mut d);
        }
        prop_assert_eq!(round, rounds);
        prop_assert_eq!(d.phase(), Phase::Scoring);
    }

    #[test]
    fn any_pattern_of_failures_ends_in_a_ranking_or_no_survivors(agents in 1usize..=6, rounds in 0u32..=3, fail_mask in any::<u64>()) {
        let mut d = deliberation(agents, rounds);
        let mut bit = 0;
        let mut fails = || { bit += 1; fail_mask & (1 << (bit % 64)) != 0 };
        let mut result = Ok(Phase::Proposing);
        for agent in d.proposal_requests() {
            if fails() { d.record_failure(&agent.id, "x").unwrap() } else { d.record_proposal(&agent.id, TEXT.into(), 0).unwrap() }
        }
        loop {
            result = match result {
                Ok(Phase::Scoring) | Err(_) => break,
                Ok(_) => d.advance(),
            };
            for a in d.review_assignments() {
                if fails() { d.record_failure(&a.reviewer.id, "x").unwrap() } else {
                    d.record_review(Review { reviewer: a.reviewer.id, target: a.target, round: a.round, critique: String::new(), score: None, issues: vec![] }).unwrap();
                }
            }
            for r in d.revision_requests() {
                if fails() { d.record_failure(&r.author.id, "x").unwrap() } else { d.record_revision(&r.author.id, TEXT.into()).unwrap() }
            }
        }
        match result {
            Ok(_) => {
                let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
                prop_assert_eq!(outcome.results.len() + outcome.failures.len(), agents);
            }
            Err(e) => {
                prop_assert_eq!(e, DomainError::NoSurvivors);
                prop_assert_eq!(d.failures().len(), agents);
            }
        }
    }
}

fn tested_deliberation(agents: usize, rounds: u32) -> Deliberation {
    let council = Council::assemble(Role::Dev, agents, &[ProfileName::default_profile()]).unwrap();
    let tests = crate::acceptance::AcceptanceTests::new(
        "python",
        "from solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n".into(),
    )
    .unwrap();
    let constraints = TaskConstraints::default().with_acceptance_tests(tests);
    let task = Task::new("Write add(a, b) in Python", constraints).unwrap();
    Deliberation::new(council, task, Rounds::new(i64::from(rounds)).unwrap())
}

fn outcome_of(passed: bool) -> TestOutcome {
    use crate::checks::{CaseOutcome, TestCase, TestReport};
    let case = if passed {
        TestCase::new("test_add", CaseOutcome::Passed, "", "")
    } else {
        TestCase::new("test_add", CaseOutcome::Failed, "assert add(1, 2) == 3", "line 4, in test_add")
    };
    TestOutcome::Ran(TestReport::from_cases(vec![case], ""))
}

fn test_all(d: &mut Deliberation, passes: impl Fn(&AgentId) -> bool) {
    for request in d.test_requests() {
        d.record_tests(&request.author, outcome_of(passes(&request.author)));
    }
}

#[test]
fn without_acceptance_tests_nothing_is_to_be_tested() {
    let mut d = deliberation(2, 1);
    propose_all(&mut d);
    assert!(d.test_requests().is_empty());
    d.advance().unwrap();
    assert!(d.review_assignments().iter().all(|a| a.tests == TestOutcome::no_tests()));
}

#[test]
fn each_version_is_tested_once_and_prompts_see_the_outcome_of_their_version() {
    let mut d = tested_deliberation(2, 1);
    propose_all(&mut d);
    assert_eq!(d.test_requests().len(), 2);
    test_all(&mut d, |a| a.as_str() == "dev-2");
    assert!(d.test_requests().is_empty(), "tested versions are not asked for again");
    d.advance().unwrap();
    let assignments = d.review_assignments();
    let of = |target: &str| assignments.iter().find(|a| a.target.as_str() == target).unwrap().tests.clone();
    assert_eq!(of("dev-1").passed(), Some(false), "the reviewer of dev-1 sees its failure");
    assert_eq!(of("dev-2").passed(), Some(true));
    review_all(&mut d, |_| Some(5.0));
    d.advance().unwrap();
    let requests = d.revision_requests();
    let own = requests.iter().find(|r| r.author.id.as_str() == "dev-1").unwrap();
    assert!(own.tests.render().contains("FAILED test_add: assert add(1, 2) == 3"));
    revise_all(&mut d);
    let retest: Vec<_> = d.test_requests().into_iter().map(|r| r.author.to_string()).collect();
    assert_eq!(retest, ["dev-1", "dev-2"], "every revision is a new version to test");
    test_all(&mut d, |_| true);
    d.advance().unwrap();
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    let dev1 = outcome.results.iter().find(|r| r.agent.id.as_str() == "dev-1").unwrap();
    assert_eq!(dev1.checks.tests.passed(), Some(true));
    assert_eq!(dev1.checks.revision_tests.len(), 1);
    assert_eq!(dev1.checks.revision_tests[0].passed(), Some(false));
}

#[test]
fn a_revision_that_passes_outranks_the_peer_favourite_that_fails() {
    let mut d = tested_deliberation(2, 1);
    propose_all(&mut d);
    test_all(&mut d, |_| false);
    d.advance().unwrap();
    review_all(&mut d, |a| Some(if a.target.as_str() == "dev-1" { 9.0 } else { 4.0 }));
    d.advance().unwrap();
    revise_all(&mut d);
    test_all(&mut d, |a| a.as_str() == "dev-2");
    d.advance().unwrap();
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-2");
}

/// A report in which `passed` of `total` cases pass.
fn outcome_passing(passed: u32, total: u32) -> TestOutcome {
    use crate::checks::{CaseOutcome, TestCase, TestReport};
    let cases = (0..total)
        .map(|i| {
            let name = format!("test_{i}");
            if i < passed {
                TestCase::new(&name, CaseOutcome::Passed, "", "")
            } else {
                TestCase::new(&name, CaseOutcome::Failed, "assert False", "")
            }
        })
        .collect();
    TestOutcome::Ran(TestReport::from_cases(cases, ""))
}

/// Two agents, one round, tested twice: `first` and `second` give (dev-1, dev-2)'s passed
/// tests of 3 for the first proposal and the revision. Returns the deliberation, scoring.
fn tested_twice(first: (u32, u32), second: (u32, u32)) -> Deliberation {
    let mut d = tested_deliberation(2, 1);
    let pick = |a: &AgentId, (one, two): (u32, u32)| if a.as_str() == "dev-1" { one } else { two };
    propose_all(&mut d);
    for request in d.test_requests() {
        d.record_tests(&request.author, outcome_passing(pick(&request.author, first), 3));
    }
    d.advance().unwrap();
    review_all(&mut d, |_| Some(5.0));
    d.advance().unwrap();
    revise_all(&mut d);
    for request in d.test_requests() {
        d.record_tests(&request.author, outcome_passing(pick(&request.author, second), 3));
    }
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    d
}

#[test]
fn a_revision_that_loses_tests_gives_way_to_the_better_earlier_version() {
    let mut d = tested_twice((3, 1), (2, 2));
    let first = d.proposals()[0].content().to_owned();
    let regressed = d.proposals()[0].revisions()[0].clone();
    assert_ne!(first, regressed);

    let kept = d.keep_best_tested_versions().unwrap();
    assert_eq!(
        kept,
        [KeptVersion { author: id("dev-1"), kept: 0, kept_passed: 3, regressed: 1, regressed_passed: 2 }]
    );
    assert!(d.keep_best_tested_versions().unwrap().is_empty(), "keeping is done once");

    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    let dev1 = result_of(&outcome, "dev-1");
    let proposal = &dev1.proposal;
    assert_eq!(proposal.content(), regressed, "the first version is the final one again");
    assert_eq!(
        proposal.revisions(),
        [regressed.clone(), first],
        "the regressed version stays in the history"
    );
    assert_eq!(dev1.checks.tests.report().unwrap().passed, 3);
    let history: Vec<u32> = dev1.checks.revision_tests.iter().map(|t| t.report().unwrap().passed).collect();
    assert_eq!(history, [3, 2], "the regression's report is kept");
    let dev2 = result_of(&outcome, "dev-2");
    assert_eq!(dev2.proposal.version(), 1, "a revision that gained tests stays");
}

#[test]
fn a_tie_or_a_gain_keeps_the_last_version_and_untested_versions_do_not_count() {
    let mut d = tested_twice((2, 0), (2, 3));
    assert!(d.keep_best_tested_versions().unwrap().is_empty());
    assert_eq!(d.proposals()[0].version(), 1);

    let mut untested = tested_deliberation(2, 0);
    propose_all(&mut untested);
    untested.advance().unwrap();
    assert!(untested.keep_best_tested_versions().unwrap().is_empty());

    let mut without_tests = deliberation(2, 0);
    assert!(matches!(without_tests.keep_best_tested_versions(), Err(DomainError::WrongPhase { .. })));
    propose_all(&mut without_tests);
    without_tests.advance().unwrap();
    assert!(without_tests.keep_best_tested_versions().unwrap().is_empty());
}

#[test]
fn early_stop_skips_the_remaining_rounds_and_counts_the_calls() {
    let mut d = tested_deliberation(3, 3);
    d.set_early_stop(EarlyStop::TestsAndReviews);
    propose_all(&mut d);
    test_all(&mut d, |a| a.as_str() == "dev-3");
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 1 });
    review_all(&mut d, |_| Some(8.0));
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    // Round 1's 3 revisions, then rounds 2 and 3: 3 reviews and 3 revisions each.
    assert_eq!(d.calls_saved(), 3 + 2 * 6);
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!(outcome.calls_saved, 15);
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-3");
}

#[test]
fn no_early_stop_without_agreement_or_a_full_pass_or_when_off() {
    use EarlyStop::{Off, TestsAndReviews};
    for (early_stop, passing, grade) in
        [(TestsAndReviews, true, 6.0), (TestsAndReviews, false, 9.0), (Off, true, 9.0)]
    {
        let mut d = tested_deliberation(2, 2);
        d.set_early_stop(early_stop);
        propose_all(&mut d);
        test_all(&mut d, |_| passing);
        d.advance().unwrap();
        review_all(&mut d, |_| Some(grade));
        assert_eq!(d.advance().unwrap(), Phase::Revising { round: 1 }, "{early_stop} {passing} {grade}");
        assert_eq!(d.calls_saved(), 0);
    }
}

#[test]
fn a_truncated_answer_fails_lint_until_revised() {
    let mut d = deliberation(2, 0);
    propose_all(&mut d);
    d.record_truncated(&id("dev-1"));
    d.advance().unwrap();
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    let dev1 = outcome.results.iter().find(|r| r.agent.id.as_str() == "dev-1").unwrap();
    assert!(dev1.checks.lint.errors.iter().any(|e| e == crate::checks::TRUNCATED_ERROR));
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-2");
}

#[test]
fn a_snapshot_saved_before_acceptance_tests_existed_still_loads() {
    let mut d = deliberation(2, 1);
    propose_all(&mut d);
    let mut json = serde_json::to_value(&d).unwrap();
    let object = json.as_object_mut().unwrap();
    for key in ["tests", "early_stop", "calls_saved"] {
        assert!(object.remove(key).is_some(), "{key} is saved");
    }
    for proposal in object["proposals"].as_array_mut().unwrap() {
        proposal.as_object_mut().unwrap().remove("truncated");
    }
    object["task"]["constraints"].as_object_mut().unwrap().remove("acceptance_tests");
    let restored: Deliberation = serde_json::from_value(json).unwrap();
    assert_eq!(restored, d);
}

#[test]
fn the_tests_stop_ends_once_a_version_passes_before_any_review_and_counts_every_round() {
    let mut d = tested_deliberation(3, 2);
    d.set_early_stop(EarlyStop::Tests);
    propose_all(&mut d);
    test_all(&mut d, |a| a.as_str() == "dev-2");
    assert_eq!(d.advance().unwrap(), Phase::Scoring, "no review, no revision");
    assert_eq!(d.calls_saved(), 2 * 2 * 3, "two rounds of 3 reviews and 3 revisions");
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!(outcome.winner().agent.id.as_str(), "dev-2", "the passing version ranks first");
    assert_eq!(outcome.path, Path::Council);
}

#[test]
fn the_tests_stop_also_ends_after_a_revision_that_passes() {
    let mut d = tested_deliberation(2, 3);
    d.set_early_stop(EarlyStop::Tests);
    propose_all(&mut d);
    test_all(&mut d, |_| false);
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 1 });
    review_all(&mut d, |_| Some(3.0));
    assert_eq!(d.advance().unwrap(), Phase::Revising { round: 1 });
    revise_all(&mut d);
    test_all(&mut d, |a| a.as_str() == "dev-1");
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    assert_eq!(d.calls_saved(), 2 * 2 * 2, "rounds 2 and 3 of 2 reviews and 2 revisions");
}

#[test]
fn the_tests_stop_needs_a_pass_and_tests_and_reviews_needs_agreement() {
    let mut failing = tested_deliberation(2, 1);
    failing.set_early_stop(EarlyStop::Tests);
    propose_all(&mut failing);
    test_all(&mut failing, |_| false);
    assert_eq!(failing.advance().unwrap(), Phase::Reviewing { round: 1 });
    let mut waits_for_reviews = tested_deliberation(2, 1);
    waits_for_reviews.set_early_stop(EarlyStop::TestsAndReviews);
    propose_all(&mut waits_for_reviews);
    test_all(&mut waits_for_reviews, |_| true);
    assert_eq!(
        waits_for_reviews.advance().unwrap(),
        Phase::Reviewing { round: 1 },
        "a round of reviews first"
    );
}

#[test]
fn a_cascade_whose_first_answer_passes_ends_after_one_call() {
    let mut d = tested_deliberation(3, 1);
    assert!(d.start_cascade());
    let asked: Vec<_> = d.proposal_requests().into_iter().map(|a| a.id.to_string()).collect();
    assert_eq!(asked, ["dev-1"], "one agent first");
    propose_all(&mut d);
    test_all(&mut d, |_| true);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    assert_eq!(d.calls_saved(), 2 + 2 * 3, "two more proposals and a round of 3 reviews and 3 revisions");
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!(outcome.results.len(), 1);
    assert_eq!(outcome.path, Path::CascadeFirstAnswer);
}

#[test]
fn a_cascade_whose_first_answer_fails_asks_the_rest_shown_its_failing_tests() {
    let mut d = tested_deliberation(3, 1);
    assert!(d.start_cascade());
    propose_all(&mut d);
    test_all(&mut d, |_| false);
    assert_eq!(d.advance().unwrap(), Phase::Proposing, "still proposing: the rest of the council");
    let asked: Vec<_> = d.proposal_requests().into_iter().map(|a| a.id.to_string()).collect();
    assert_eq!(asked, ["dev-2", "dev-3"]);
    let escalation = d.escalation().unwrap();
    assert!(escalation.first_answer.contains("dev-1"));
    assert_eq!(escalation.tests.passed(), Some(false), "the failing report is shown");
    propose_all(&mut d);
    test_all(&mut d, |_| false);
    assert_eq!(d.advance().unwrap(), Phase::Reviewing { round: 1 }, "then a plain council");
    assert_eq!(d.review_assignments().len(), 3, "the first answer is reviewed too");
    assert!(d.escalation().is_none());
    review_all(&mut d, |_| Some(5.0));
    d.advance().unwrap();
    revise_all(&mut d);
    test_all(&mut d, |_| false);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);
    let outcome = d.finish(BTreeMap::new(), &ScoringWeights::default()).unwrap();
    assert_eq!((outcome.results.len(), outcome.path, outcome.calls_saved), (3, Path::CascadeEscalated, 0));
}

#[test]
fn a_cascade_escalates_when_its_first_agent_fails_and_is_a_plain_council_without_tests() {
    let mut d = tested_deliberation(2, 0);
    assert!(d.start_cascade());
    d.record_failure(&id("dev-1"), "timed out").unwrap();
    assert_eq!(d.advance().unwrap(), Phase::Proposing);
    assert_eq!(d.escalation(), None, "no first answer to show");
    propose_all(&mut d);
    assert_eq!(d.advance().unwrap(), Phase::Scoring);

    let mut untested = deliberation(3, 1);
    assert!(!untested.start_cascade(), "nothing to judge a first answer by");
    assert_eq!(untested.proposal_requests().len(), 3);
    assert_eq!(untested.path(), Path::Council);
}

#[test]
fn a_cascade_survives_a_save_and_restore_at_each_stage() {
    let mut d = tested_deliberation(3, 1);
    d.start_cascade();
    let restored = Deliberation::restore(d.to_parts()).unwrap();
    assert_eq!(restored, d);
    propose_all(&mut d);
    test_all(&mut d, |_| false);
    d.advance().unwrap();
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Deliberation>(&json).unwrap(), d);
    assert_eq!(Deliberation::restore(d.to_parts()).unwrap().escalation(), d.escalation());
}

#[test]
fn a_failure_is_stored_as_action_and_round_and_reads_back() {
    let failure = AgentFailure {
        agent: id("dev-2"),
        phase: Phase::Revising { round: 2 },
        reason: "timeout".into(),
        misconfigured_profile: None,
    };
    let json = serde_json::to_value(&failure).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"agent": "dev-2", "phase": "revise", "round": 2, "reason": "timeout"})
    );
    assert_eq!(serde_json::from_value::<AgentFailure>(json).unwrap(), failure);
    let unknown = serde_json::json!({"agent": "dev-2", "phase": "dance", "round": 0, "reason": "x"});
    assert!(serde_json::from_value::<AgentFailure>(unknown).is_err());
}

#[test]
fn a_deliberation_is_written_as_its_parts_and_read_back_only_through_restore() {
    let mut d = deliberation(2, 1);
    propose_all(&mut d);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json, serde_json::to_value(d.to_parts()).unwrap(), "one format for every store");

    let mut stranger = json.clone();
    stranger["pending"] = serde_json::json!(["dev-9"]);
    let refused = serde_json::from_value::<Deliberation>(stranger).unwrap_err().to_string();
    assert!(refused.contains("dev-9 is not in the council"), "{refused}");

    let mut beyond = json;
    beyond["rounds"] = serde_json::json!(6);
    assert!(serde_json::from_value::<Deliberation>(beyond).is_err(), "rounds above the maximum are refused");
}

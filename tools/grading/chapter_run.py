"""One chapter of one submission, run in minilm's sandbox (minilm/safety/sandbox.py) and scored from
pytest's junit XML, never from what the run printed.

The sandbox's folder for a run, which is pytest's rootdir (so no test's name holds a temporary path):

    submission/    the student's modules; MINILM_EXERCISES points the exercise harness here
    visible/       tests/exercises/test_<chapter>.py, copied (its tests are named as in the course)
    hidden/        the teacher's test_<chapter>*.py, copied (so the student's code could read them)
    pytest.ini     an empty configuration: the course's own (nbval, its testpaths) stays out
    report.xml     pytest's junit report, read back after the run; tmp/ is pytest's basetemp
"""
from __future__ import annotations

import importlib.util
import math
import re
import shutil
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from xml.etree import ElementTree

from minilm.safety.sandbox import SandboxLimits, SandboxResult, run_untrusted
from tools.grading.model import EXERCISE_TESTS, ROOT, ChapterResult, GradeConfig, GradeError, Outcome

# The program the sandbox runs: the environment a student's check has (`./course exercise`), then pytest.
CHILD = '''
import os, sys
os.environ.update({environment!r})
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)  # one thread: the CPU limit keeps pace with the clock, and runs never compete
import pytest
sys.exit(pytest.main({arguments!r}))
'''
PYTEST_OPTIONS = ["-q", "-c", "pytest.ini", "--rootdir=.", "-p", "no:cacheprovider", "--basetemp=tmp",
                  "--junitxml=report.xml", "-o", "junit_family=xunit1", "-o", "junit_logging=no",
                  "--import-mode=importlib", "--tb=short", "--show-capture=no"]
REPORT_BYTES = 8 << 20  # pytest's report of a chapter's tests is some kB: a bigger one was not its own
MEMORY_SIGNS = ("MemoryError", "can't allocate memory")  # Python's, and torch's allocator's
FLOOD_SIGN = "[Errno 27] File too large"  # a write past the file size limit (RLIMIT_FSIZE): a flood
SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
# Imported before the sandbox's hook, where installed, since their start-up does what the hook
# blocks: torch's CUDA build runs ldconfig, urllib3 (which older datasets import, through requests)
# opens a socket to see whether IPv6 works, and numpy 2.0's testing module runs lscpu.
TRUSTED_IMPORTS = [name for name in ("torch", "urllib3", "numpy.testing") if importlib.util.find_spec(name)]


@dataclass(frozen=True)
class Run:
    """What a chapter's run left: each test's outcome in pytest's order, or why it counts for nothing."""

    outcomes: tuple[Outcome, ...] = ()
    reason: str = ""


def child_environment(folder: Path) -> dict[str, str]:
    """The checks' environment (the course's `checks_env`), in student mode on the submission's copy."""
    return {"MINILM_STUDENT": "1", "MINILM_EXERCISES": str(folder / "submission"), "MINILM_PRESET": "smoke",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg",
            "HOME": str(folder), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def sandbox_limits(config: GradeConfig) -> SandboxLimits:
    return SandboxLimits(timeout_s=config.timeout_s, cpu_s=math.ceil(config.timeout_s) + 1,
                         memory_mb=config.memory_mb, file_mb=config.file_mb,
                         processes=4096,  # the user's processes and threads in all: a desktop runs hundreds
                         open_files=256, output_chars=2000)


def prepare(folder: Path, chapter: str, files: dict[str, bytes], hidden_tests: dict[str, bytes]) -> None:
    visible = {f"test_{chapter}.py": (EXERCISE_TESTS / f"test_{chapter}.py").read_bytes()}
    for subfolder, contents in (("submission", files), ("visible", visible), ("hidden", hidden_tests)):
        (folder / subfolder).mkdir(parents=True)
        for name, data in contents.items():
            (folder / subfolder / name).write_bytes(data)
    (folder / "pytest.ini").write_text("[pytest]\n")


def run_chapter(chapter: str, files: dict[str, bytes], hidden_tests: dict[str, bytes], folder: Path,
                forbidden: list[Path], config: GradeConfig) -> Run:
    """Run the chapter's visible and hidden tests on `files` in the sandbox, in `folder` (removed after)."""
    folder = folder.resolve()
    program = CHILD.format(environment=child_environment(folder), root=str(ROOT),
                           arguments=[*PYTEST_OPTIONS, "visible", *(["hidden"] if hidden_tests else [])])
    try:
        prepare(folder, chapter, files, hidden_tests)
        result = sandboxed(program, folder, forbidden, config)
        reason = sandbox_reason(result, config)
        return Run(reason=reason) if reason else read_report(folder, result, config)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sandboxed(program: str, folder: Path, forbidden: list[Path], config: GradeConfig) -> SandboxResult:
    try:
        return run_untrusted(program, sandbox_limits(config), folder=folder, forbidden=forbidden,
                             trusted_imports=TRUSTED_IMPORTS)
    except ValueError as error:  # a forbidden path holds the sandbox's folder: the teacher's to change
        raise GradeError(str(error)) from None


def sandbox_reason(result: SandboxResult, config: GradeConfig) -> str:
    """Why the run as a whole counts for nothing, as far as the sandbox tells ('' when it ran its course)."""
    if result.status == "timeout":
        return f"timeout: still running after {config.timeout_s:g} s"
    if result.status == "memory":
        return f"memory limit: past {config.memory_mb} MB"
    if result.status == "blocked":
        event = re.search(r"sandbox: blocked (\S+)", result.stderr)
        return f"blocked: {event[1] if event else 'an action the sandbox forbids'}"
    if result.returncode < 0:
        return f"crashed: killed by signal {-result.returncode} ({signal.strsignal(-result.returncode)})"
    return ""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def crashed(result: SandboxResult, what: str) -> str:
    said = last_line(result.stderr) or last_line(result.stdout)
    return f"crashed: {what} (exit code {result.returncode}{': ' + said if said else ''})"


def cut(text: str, chars: int) -> str:
    """At most about `chars` characters: the start and the end, where a traceback says what went wrong."""
    if len(text) <= chars:
        return text
    return f"{text[:chars // 2]}\n[... {len(text) - chars:,} characters cut ...]\n{text[-chars // 2:]}"


def node_id(case: ElementTree.Element) -> str:
    """pytest's node id from a junit test case (xunit1 gives the file), visible tests named as in the course."""
    file, classname = case.get("file", ""), case.get("classname", "")
    module = file.removesuffix(".py").replace("/", ".")
    inner = classname[len(module) + 1:].replace(".", "::") if classname.startswith(module + ".") else ""
    name = "::".join(part for part in (file, inner, case.get("name", "")) if part)
    return "tests/exercises/" + name.removeprefix("visible/") if name.startswith("visible/") else name


def problem_text(problem: ElementTree.Element) -> str:
    if problem.tag == "skipped":
        return f"skipped: {problem.get('message', '')}"
    return (problem.text or problem.get("message") or problem.tag).strip()


def reproducible(text: str, folder: Path) -> str:
    """A failure's text without what changes from run to run: the run's folder, objects' addresses."""
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", text.replace(f"{folder}/", ""))


def exception_line(traceback: str) -> str:
    """The exception a pytest traceback ends with (its `E` lines), and the line of a syntax error."""
    errors = [line[1:].strip() for line in traceback.splitlines() if line.startswith("E ")]
    line = errors[-1] if errors else last_line(traceback) or "unknown"
    where = re.search(r'File ".*", line (\d+)', "\n".join(errors))
    return f"{line} (line {where[1]})" if where and line.startswith(SYNTAX_ERRORS) else line[:200]


def limit_hit(text: str, config: GradeConfig, where: str) -> str:
    if any(sign in text for sign in MEMORY_SIGNS):
        return f"memory limit: past {config.memory_mb} MB {where}"
    return f"output flood: past the {config.file_mb} MB file size limit {where}" if FLOOD_SIGN in text else ""


def read_report(folder: Path, result: SandboxResult, config: GradeConfig) -> Run:
    """The outcome of each test in pytest's junit report, or what broke the run as a whole."""
    report = folder / "report.xml"
    if report.is_symlink() or not report.is_file():
        return Run(reason=crashed(result, "no test report"))
    if report.stat().st_size > REPORT_BYTES:
        return Run(reason=crashed(result, f"a test report of {report.stat().st_size >> 20} MB, not pytest's"))
    try:
        cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    except ElementTree.ParseError as error:
        return Run(reason=crashed(result, f"an unreadable test report ({error})"))
    outcomes, import_errors, limits = [], [], []
    for case in cases:
        problems = [child for child in case if child.tag in ("failure", "error", "skipped")]
        text = reproducible("\n".join(problem_text(problem) for problem in problems), folder)
        if any(problem.get("message") == "collection failure" for problem in problems):
            import_errors.append(limit_hit(text, config, "at import") or f"import error: {exception_line(text)}")
            continue
        name = node_id(case)
        limits.append(limit_hit(text, config, f"in {name}") if problems else "")
        outcomes.append(Outcome(name, not problems, name.startswith("hidden/"), cut(text, config.message_chars)))
    reason = next((reason for reason in import_errors + limits if reason), "")
    if not reason and result.returncode not in (0, 1):  # pytest's codes: 0 all passed, 1 some failed
        reason = crashed(result, "pytest stopped before the end")
    return Run(tuple(outcomes), reason)


def scored(chapter: str, counted: tuple[Outcome, ...], run: Run) -> ChapterResult:
    """The chapter's result over the tests that count (those the course's solutions pass)."""
    if run.reason:
        return ChapterResult(chapter, tuple(replace(test, passed=False, output=run.reason) for test in counted),
                             run.reason)
    ran = {outcome.name: outcome for outcome in run.outcomes}
    return ChapterResult(chapter, tuple(ran.get(test.name, replace(test, passed=False, output="did not run"))
                                        for test in counted))

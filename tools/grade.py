"""The class autograder: each chapter of each student's exercises, run against the course's tests
(and the teacher's hidden ones) in chapter 8's sandbox, with partial credit per test.

    ./course grade submissions/*.zip                                   # every chapter, into grades/
    ./course grade alice/ bob.zip --hidden teacher/hidden --chapters ch00_warmup ch06c_deployment
    ./course grade submissions/* --out grades/week3 --timeout 120 --memory-mb 8192

A submission is a student's exercises/ folder, a folder holding one, or a .zip of either; the
student is named after the folder (its parent, for a folder named exercises/) or the zip. Only the
course's exercise modules are taken (ch00_warmup.py, ..., capstone.py), never extracted from a zip
but read into memory, capped; everything else is listed as left out. A bad zip or a missing path
is a line in that student's report, and the others are graded as usual.

How a chapter is graded. Its tests are tests/exercises/test_<chapter>.py plus the --hidden folder's
test_<chapter>*.py (written with the same harness; never handed out). The tests that count are
those the course's solutions/ pass in the same sandbox, run first (a test skipped or failing there
counts for no one, and summary.md says so). Each submission's chapter then runs on its own, one
after another, in a fresh sandboxed process (minilm.safety.sandbox): `python -I` with an empty
environment, a wall-clock deadline (--timeout), an address-space limit (--memory-mb), a file size
limit that stops an output flood (--file-mb), no network, no processes, no writes outside its
folder, and no opening or listing of the other submissions, their runs' folders, solutions/, .git,
teacher/, --hidden or --out. pytest runs there in student mode (MINILM_STUDENT=1,
MINILM_EXERCISES on the copy, MINILM_PRESET=smoke, offline) and writes a junit report; the score is
the fraction of the counted tests that report says passed. A chapter scores 0 as a whole, with the
reason, when it is not submitted, when its run times out, hits the memory or file size limit,
attempts something the sandbox blocks ("blocked: open" for another student's file), fails to import
(a collection error: "import error: SyntaxError ..."), or crashes before pytest's report is written.

What this does not stop (minilm/safety/sandbox.py says more about the sandbox itself):
- Hidden tests are copied into the run's folder, and a submission's code runs in the process that
  runs the tests: it can read them (the file, or the calling frames) and put them into a failure
  message, which reaches results.json cut to a few hundred characters.
- A submission written to cheat can forge its own results: its code runs inside pytest and can
  write the junit report itself. The grader counts only the tests the solutions pass, by name, so
  tests it adds or skips gain nothing, but a forged "passed" is not detected.
- Reading files outside the forbidden paths is not prevented (keys under ~/.ssh, anything the
  teacher's user can read); ctypes or C extensions pass the audit hook by. For an exam, or a class
  you do not trust, run the grader in a container or as a user who can read nothing else.
- Every submission may import the course's own `minilm`, which implements much of what the
  exercises ask; only reading the student's code tells whether it did.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script (./course grade): tools.grading from the course's root

from tools.grading.chapter_run import Run, run_chapter, scored  # noqa: E402
from tools.grading.model import (SOLUTIONS, GradeConfig, GradeError, Outcome, StudentResult,  # noqa: E402
                                 course_chapters, holds_the_course)
from tools.grading.reports import write_reports  # noqa: E402
from tools.grading.submissions import Submission, read_submission  # noqa: E402

REPORT_NAMES = {"scores.csv", "summary.md"}  # in --out beside the students' folders
LISTED = 5  # tests named in a note about the tests that count for no one


def read_class(paths: list[Path]) -> list[Submission]:
    """The submissions, sorted by student; two with one name, or a name that cannot be a folder, stop here."""
    modules = {f"{chapter}.py" for chapter in course_chapters()}
    submissions = sorted((read_submission(path, modules) for path in paths), key=lambda s: s.name)
    for first, second in zip(submissions, submissions[1:]):
        if first.name == second.name:
            raise GradeError(f"two submissions are named {first.name}: {first.path} and {second.path}; rename one.")
    for submission in submissions:
        if submission.name in REPORT_NAMES or submission.name.startswith(".") or not submission.name:
            raise GradeError(f"{submission.path} cannot name a student's folder in --out; rename it.")
        if holds_the_course(submission.path):
            raise GradeError(f"{submission.path} holds the course itself, which no other submission's run may "
                             f"open; give each student's work a folder of its own.")
    return submissions


def hidden_tests(config: GradeConfig) -> dict[str, dict[str, bytes]]:
    """chapter -> the --hidden folder's test_<chapter>*.py: file name -> source."""
    return {chapter: {path.name: path.read_bytes()
                      for path in sorted(config.hidden.glob(f"test_{chapter}*.py")) if path.is_file()}
            if config.hidden else {} for chapter in config.chapters}


def out_of_reach(submissions: list[Submission], runs: list[Path], own: Path, config: GradeConfig) -> list[Path]:
    """What a run may not open: the submissions, the other runs' folders, the answers and the grades."""
    course = [SOLUTIONS, ROOT / ".git", ROOT / "teacher", config.out] + ([config.hidden] if config.hidden else [])
    return [submission.path for submission in submissions] + [run for run in runs if run != own] + course


def counted_tests(chapter: str, hidden: dict[str, bytes], folder: Path, forbidden: list[Path],
                  config: GradeConfig) -> tuple[tuple[Outcome, ...], str]:
    """The chapter's tests that the course's solutions pass in the sandbox, and a note on any that do not
    (the capstone's tests load other chapters' modules: all of the solutions are there, as a student's
    whole exercises/ folder is)."""
    solutions = {f"{name}.py": (SOLUTIONS / f"{name}.py").read_bytes() for name in course_chapters()}
    run = run_chapter(chapter, solutions, hidden, folder / chapter, forbidden, config)
    counted = tuple(replace(outcome, output="") for outcome in run.outcomes if outcome.passed)
    if run.reason or not counted:
        raise GradeError(f"the course's solutions/{chapter}.py fail its tests in the sandbox "
                         f"({run.reason or 'no test passes'}); see --timeout and --memory-mb.")
    dropped = [outcome.name for outcome in run.outcomes if not outcome.passed]
    more = f" and {len(dropped) - LISTED} more" if len(dropped) > LISTED else ""
    note = (f"{chapter}: {len(dropped)} tests fail or skip against solutions/ here and count for no one: "
            f"{', '.join(dropped[:LISTED])}{more}") if dropped else ""
    return counted, note


def grade_student(submission: Submission, counted: dict[str, tuple[Outcome, ...]],
                  hidden: dict[str, dict[str, bytes]], folder: Path, forbidden: list[Path],
                  config: GradeConfig) -> StudentResult:
    chapters = []
    for chapter in config.chapters:
        if f"{chapter}.py" in submission.files:
            run = run_chapter(chapter, submission.files, hidden[chapter], folder / chapter, forbidden, config)
        else:
            run = Run(reason=submission.problem or "not submitted")
        chapters.append(scored(chapter, counted[chapter], run))
    problem = (submission.problem,) if submission.problem else ()
    return StudentResult(submission.name, tuple(chapters), submission.notes + problem)


def progress(student: StudentResult) -> str:
    """The student's total, and the chapters scoring 0 as a whole, grouped by reason."""
    zeros: dict[str, list[str]] = {}
    for chapter in student.chapters:
        if chapter.reason:
            zeros.setdefault(chapter.reason, []).append(chapter.chapter)
    said = "; ".join(f"{', '.join(chapters)}: {reason}" for reason, chapters in zeros.items())
    return f"{student.name}: {student.total:.2f} of {len(student.chapters)}" + (f" ({said})" if said else "")


def grade_class(paths: list[Path], config: GradeConfig) -> tuple[list[StudentResult], list[str]]:
    """Every submission graded, one chapter at a time, and the notes on the tests that count."""
    submissions, hidden = read_class(paths), hidden_tests(config)
    with tempfile.TemporaryDirectory(prefix="minilm-grade-", ignore_cleanup_errors=True) as scratch:
        reference = Path(scratch).resolve() / "reference"  # the solutions' runs; then one folder per student
        runs = [reference, *(reference.parent / f"{index:04d}" for index in range(len(submissions)))]
        counted, notes = {}, []
        for chapter in config.chapters:
            counted[chapter], note = counted_tests(chapter, hidden[chapter], reference,
                                                   out_of_reach(submissions, runs, reference, config), config)
            notes += [note] if note else []
        students = []
        for submission, folder in zip(submissions, runs[1:]):
            student = grade_student(submission, counted, hidden, folder,
                                    out_of_reach(submissions, runs, folder, config), config)
            print(progress(student), flush=True)
            students.append(student)
    return students, notes + [f"{student.name}: {note}" for student in students for note in student.notes]


def parse_arguments(argv: list[str] | None) -> tuple[list[Path], GradeConfig]:
    defaults = GradeConfig()
    parser = argparse.ArgumentParser(prog="./course grade", description="Grade students' exercises in a sandbox.")
    parser.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                        help="a student's exercises/ folder (or a folder holding one), or a .zip of either")
    parser.add_argument("--out", type=Path, default=defaults.out, help="where the grades go (default: grades/)")
    parser.add_argument("--hidden", type=Path, help="a folder of extra tests, test_<chapter>*.py, never handed out")
    parser.add_argument("--chapters", nargs="+", default=defaults.chapters, metavar="CHAPTER",
                        help="the chapters to grade (default: all), e.g. ch00_warmup ch06c_deployment")
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, metavar="S",
                        help=f"seconds per chapter of a submission (default: {defaults.timeout_s:g})")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, metavar="M",
                        help=f"address space per chapter's run, in MB (default: {defaults.memory_mb})")
    parser.add_argument("--file-mb", type=int, default=defaults.file_mb, metavar="M",
                        help=f"largest file or captured output per run, in MB (default: {defaults.file_mb})")
    args = parser.parse_args(argv)
    return args.submissions, GradeConfig(out=args.out.resolve(), hidden=args.hidden and args.hidden.resolve(),
                                         chapters=tuple(args.chapters), timeout_s=args.timeout,
                                         memory_mb=args.memory_mb, file_mb=args.file_mb)


def main(argv: list[str] | None = None) -> int:
    try:
        paths, config = parse_arguments(argv)
        students, notes = grade_class(paths, config)
        write_reports(students, notes, config)
    except GradeError as error:
        print(f"grade: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unreadable --hidden test, a --out that cannot be written
        print(f"grade: {error.strerror or error}: {error.filename}", file=sys.stderr)
        return 2
    print(f"Wrote {config.out}: scores.csv, summary.md, and per student results.json and report.txt.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

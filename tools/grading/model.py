"""What the grader works with: its settings, and each test's, chapter's and student's result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXERCISE_TESTS = ROOT / "tests" / "exercises"
SOLUTIONS = ROOT / "solutions"


class GradeError(ValueError):
    """Why grading cannot start or go on: one line for the teacher."""


def holds_the_course(path: Path) -> bool:
    """Whether `path` is the course's folder or one above it: a run that may not open it imports nothing."""
    return ROOT.is_relative_to(path.resolve())


def course_chapters() -> tuple[str, ...]:
    """Every chapter with exercises: a tests/exercises/test_<chapter>.py and a solutions/<chapter>.py."""
    tested = (path.stem.removeprefix("test_") for path in EXERCISE_TESTS.glob("test_*.py"))
    return tuple(sorted(chapter for chapter in tested if (SOLUTIONS / f"{chapter}.py").is_file()))


@dataclass(frozen=True)
class GradeConfig:
    """How a class is graded. The limits hold per chapter of each submission, in its own sandbox."""

    out: Path = ROOT / "grades"  # the tables and the per-student reports; no submission may open it
    hidden: Path | None = None  # the teacher's extra tests, test_<chapter>*.py, never handed out
    chapters: tuple[str, ...] = field(default_factory=course_chapters)  # the exercises graded
    timeout_s: float = 300.0  # wall clock for a chapter's tests, torch's import included: then it scores 0
    memory_mb: int = 6144  # address space of a chapter's run: torch reserves 3.5 GB, chapter 6c's tests 5
    file_mb: int = 4  # the largest file a run may write, its captured output included: floods stop here
    message_chars: int = 600  # of each failed test's message kept: a flood or a leak stays small

    def __post_init__(self) -> None:
        known = course_chapters()
        if not known:
            raise GradeError(f"no chapters to grade: the grader needs the course's tests/exercises/ and "
                             f"solutions/ (a teacher's copy), and {ROOT} has no solutions/.")
        unknown = [chapter for chapter in self.chapters if chapter not in known]
        if unknown or not self.chapters:
            raise GradeError(f"unknown chapter {', '.join(unknown) or '(none given)'}; "
                             f"the course's chapters are {', '.join(known)}.")
        if self.hidden is not None and not self.hidden.is_dir():
            raise GradeError(f"--hidden {self.hidden} is not a folder.")
        for option, path in (("--out", self.out), ("--hidden", self.hidden)):
            if path is not None and holds_the_course(path):
                raise GradeError(f"{option} {path} holds the course itself, which no submission's run may open; "
                                 f"give it a folder of its own (grades/, teacher/hidden/).")
        if not (self.timeout_s > 0 and self.memory_mb > 0 and self.file_mb > 0):
            raise GradeError("--timeout, --memory-mb and --file-mb must be positive.")


@dataclass(frozen=True)
class Outcome:
    """One test of one submission."""

    name: str  # as pytest names it: tests/exercises/test_ch00_warmup.py::test_x[1], hidden/test_....py::...
    passed: bool
    hidden: bool  # one of the --hidden tests: students see its result once grades are published
    output: str = ""  # why it failed, cut to message_chars


@dataclass(frozen=True)
class ChapterResult:
    """One chapter of one submission: its tests, or the reason it scores 0 as a whole."""

    chapter: str
    tests: tuple[Outcome, ...]  # every test that counts, in pytest's order; all failed when `reason` is set
    reason: str = ""  # why the whole chapter scores 0 (not submitted, timeout, blocked: open, ...)

    @property
    def passed(self) -> int:
        return sum(test.passed for test in self.tests)

    @property
    def score(self) -> float:
        """The fraction of its tests passed: partial credit, each test worth the same."""
        return self.passed / len(self.tests) if self.tests else 0.0


@dataclass(frozen=True)
class StudentResult:
    """One student's chapters, in the order graded."""

    name: str
    chapters: tuple[ChapterResult, ...]
    notes: tuple[str, ...] = ()  # about the submission itself: files left out, a bad zip

    @property
    def total(self) -> float:
        """Points: one per chapter graded, each the fraction of its tests passed."""
        return sum(chapter.score for chapter in self.chapters)

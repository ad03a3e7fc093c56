"""What the grader writes in --out, from the students' results (each student's chapters in the order
graded, students sorted by name, so grading a class twice writes the same files):

    scores.csv              a row per student: each chapter's fraction of tests passed, and the total
    summary.md              the distribution of totals, each chapter's mean, the zeros and their
                            reasons, the tests most often failed
    STUDENT/results.json    Gradescope's autograder format: each test worth 1/n of its chapter's point,
                            the hidden ones visible "after_published"
    STUDENT/report.txt      for the teacher: each chapter's score, why it failed, the files left out
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter

from tools.grading.model import ChapterResult, GradeConfig, StudentResult

BINS = 10  # of the histogram of totals
BAR = 40  # characters of the histogram's longest bar
MOST_FAILED = 10  # tests listed in the summary


def write_reports(students: list[StudentResult], notes: list[str], config: GradeConfig) -> None:
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "scores.csv").write_text(scores_csv(students, config.chapters), encoding="utf-8")
    (config.out / "summary.md").write_text(summary(students, notes, config), encoding="utf-8")
    for student in students:
        folder = config.out / student.name
        folder.mkdir(exist_ok=True)
        (folder / "results.json").write_text(json.dumps(gradescope(student), indent=1) + "\n", encoding="utf-8")
        (folder / "report.txt").write_text(report(student), encoding="utf-8")


def scores_csv(students: list[StudentResult], chapters: tuple[str, ...]) -> str:
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["student", *chapters, "total"])
    for student in students:
        writer.writerow([student.name, *(f"{chapter.score:.4f}" for chapter in student.chapters),
                         f"{student.total:.4f}"])
    return table.getvalue()


def chapter_line(chapter: ChapterResult) -> str:
    said = chapter.reason or f"{chapter.passed} of {len(chapter.tests)} tests passed"
    return f"{chapter.chapter:<24} {chapter.score:.4f}  {said}"


def gradescope(student: StudentResult) -> dict:
    """Gradescope's results.json: the top-level score is the sum of the tests' scores."""
    tests = [{"name": test.name, "score": test.passed / len(chapter.tests), "max_score": 1 / len(chapter.tests),
              "status": "passed" if test.passed else "failed", "output": test.output,
              "visibility": "after_published" if test.hidden else "visible"}
             for chapter in student.chapters for test in chapter.tests]
    overview = [chapter_line(chapter) for chapter in student.chapters] + list(student.notes)
    return {"score": student.total, "max_score": len(student.chapters), "output": "\n".join(overview),
            "tests": tests}


def first_error(output: str) -> str:
    """What a failed test's output says first: its first `E` line (pytest's), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors or lines[-1:] or ["failed"])[0][:200]


def report(student: StudentResult) -> str:
    lines = [f"{student.name}: {student.total:.4f} of {len(student.chapters)} points "
             f"(one per exercise: the fraction of its tests passed)", ""]
    for chapter in student.chapters:
        lines.append(chapter_line(chapter))
        if not chapter.reason:
            lines += [f"    failed {test.name}: {first_error(test.output)}" for test in chapter.tests
                      if not test.passed]
    return "\n".join(lines + [""] + list(student.notes)).rstrip() + "\n"


def histogram(totals: list[float], points: int) -> list[str]:
    counts = Counter(min(int(total * BINS / points + 1e-9), BINS - 1) for total in totals)
    scale = max(1, max(counts.values(), default=1) / BAR)
    return [f"{points * b / BINS:5.2f} - {points * (b + 1) / BINS:5.2f}  "
            f"{'#' * round(counts[b] / scale):<{BAR}} {counts[b]}" for b in range(BINS)]


def summary(students: list[StudentResult], notes: list[str], config: GradeConfig) -> str:
    totals, points = [student.total for student in students], len(config.chapters)
    lines = [f"# Grades: {len(students)} students, {points} exercises", "",
             f"Each exercise is worth 1 point, shared equally by its tests: totals are out of {points}. "
             f"Hidden tests: {config.hidden or 'none'}.", "",
             "| students | mean | median | min | max |", "|---:|---:|---:|---:|---:|",
             f"| {len(students)} | {statistics.fmean(totals):.2f} | {statistics.median(totals):.2f} | "
             f"{min(totals):.2f} | {max(totals):.2f} |", "",
             "## Distribution of totals", "", "```", *histogram(totals, points), "```", "",
             "## Per exercise", "", "| exercise | tests | mean | below full marks | scored 0 |",
             "|---|---:|---:|---:|---:|"]
    for index, chapter in enumerate(config.chapters):
        results = [student.chapters[index] for student in students]
        lines.append(f"| {chapter} | {len(results[0].tests)} | {statistics.fmean(r.score for r in results):.2f} | "
                     f"{sum(r.score < 1 for r in results)} | {sum(r.score == 0 for r in results)} |")
    lines += ["", *zeros(students), "", *most_failed(students), "", "## Notes", ""]
    lines += [f"- {note}" for note in notes] or ["None."]
    return "\n".join(lines) + "\n"


def zeros(students: list[StudentResult]) -> list[str]:
    """The chapters that scored 0 as a whole, grouped by chapter and kind of reason."""
    groups: dict[tuple[str, str], list[str]] = {}
    for student in students:
        for chapter in student.chapters:
            if chapter.reason:
                groups.setdefault((chapter.chapter, chapter.reason.split(":")[0]), []).append(student.name)
    rows = [f"| {chapter} | {kind} | {', '.join(names)} |" for (chapter, kind), names in sorted(groups.items())]
    return ["## Zeros, with their reasons (each student's report.txt says more)", "",
            "| exercise | reason | students |", "|---|---|---|", *rows] if rows else ["## Zeros", "", "None."]


def most_failed(students: list[StudentResult]) -> list[str]:
    """The tests failed by the most students, among the chapters that ran."""
    failed = Counter(test.name for student in students for chapter in student.chapters if not chapter.reason
                     for test in chapter.tests if not test.passed)
    top = sorted(failed.items(), key=lambda item: (-item[1], item[0]))[:MOST_FAILED]
    if not top:
        return ["## Tests most often failed", "", "None failed."]
    rows = ["| `{}` | {} |".format(name.replace("|", "\\|"), count) for name, count in top]  # | ends a cell
    return [f"## Tests most often failed (top {MOST_FAILED}, in the chapters that ran)", "",
            "| test | students |", "|---|---:|", *rows]

"""The class autograder (tools/grade.py) on a small synthetic class, every score checked: a correct
student, a partly correct one, a broken one, hostile ones (a loop, a memory hog, an output flood, a
peek at another student's file, a socket, a write outside its folder), zips good and bad, and the
teacher's hidden tests. The class is graded twice, with and without the hostile students: the
others' grades must not change by a byte."""
import csv
import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.exercises.harness import ROOT, student_copy
from tools.grade import main
from tools.grading.submissions import MAX_FILE_BYTES, MAX_ZIP_MEMBERS, read_submission

pytestmark = pytest.mark.skipif(student_copy(), reason="grading needs solutions/, left out of a student copy")

CHAPTERS = ("ch00_warmup", "ch06c_deployment")
# A legitimate chapter runs in a few seconds here; 20 s leaves room for a busy machine. torch's
# import and these tests reserve about 5 GB of address space (untouched: a hog of bytes(n) costs no RAM).
OPTIONS = ["--chapters", *CHAPTERS, "--timeout", "20", "--memory-mb", "6144"]
WELL_BEHAVED = ("broken", "correct", "partial")

HIDDEN_TESTS = '''
from tests.exercises.harness import load_chapter

ex = load_chapter("ch00_warmup")


def test_mean_squared_error_of_equal_lists_is_zero():
    assert ex.mean_squared_error([1.5, -2.0], [1.5, -2.0]) == 0


def test_mean_squared_error_is_symmetric():
    assert ex.mean_squared_error([1.0, 5.0], [2.0, 3.0]) == ex.mean_squared_error([2.0, 3.0], [1.0, 5.0])
'''

PARTIAL_CH06C_TAIL = '''

def exponential_race(probs, generators):  # wrong: the most likely token, never a draw, and no checks
    return [int(row.argmax()) for row in probs]


def absmax_quantize(weight):
    raise NotImplementedError
'''

MEMORY_HOG = '''
def hoard(*args):
    kept = []
    while True:
        kept.append(bytes(256 << 20))  # address space, until the sandbox's limit says no


ragged_attention_mask = exponential_race = absmax_quantize = hoard
'''


def solution(chapter):
    return (ROOT / "solutions" / f"{chapter}.py").read_text()


def mse_that_first(prefix):
    """The solved warm-up with `prefix` run at the start of each call."""
    return solution("ch00_warmup").replace('    if len(predictions) != len(targets):',
                                           f'{prefix}\n    if len(predictions) != len(targets):', 1)


def write_folder(folder, files):
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def synthetic_class(base):
    """student -> submission path, the hostile ones and the zips included."""
    correct = write_folder(base / "correct", {f"{c}.py": solution(c) for c in CHAPTERS})
    secret = correct / "ch00_warmup.py"
    link = zipfile.ZipInfo("ch06c_deployment.py")
    link.external_attr = 0o120777 << 16  # a symlink member, pointing at another student's file
    sneaky = write_zip(base / "sneaky.zip", {"../../ch00_warmup.py": solution("ch00_warmup")})
    with zipfile.ZipFile(sneaky, "a") as archive:
        archive.writestr(link, str(secret))
    return {
        "correct": correct,
        "partial": write_folder(base / "partial" / "exercises", {
            "ch00_warmup.py": solution("ch00_warmup"),
            "ch06c_deployment.py": solution("ch06c_deployment") + PARTIAL_CH06C_TAIL}),
        "broken": write_folder(base / "broken", {
            "ch00_warmup.py": "def mean_squared_error(predictions, targets:\n    return 0\n",
            "ch06c_deployment.py": "import torch\nimport no_such_module_for_the_grader\n"}),
        "hostile": write_folder(base / "hostile", {
            "ch00_warmup.py": mse_that_first("    while True:\n        pass"),
            "ch06c_deployment.py": MEMORY_HOG}),
        "flood": write_folder(base / "flood", {"ch00_warmup.py": mse_that_first("    print('x' * (6 << 20))")}),
        "reader": write_folder(base / "reader", {"ch00_warmup.py": mse_that_first(
            f"    print(open({str(secret)!r}).read())")}),
        "socket": write_folder(base / "socket", {"ch00_warmup.py": mse_that_first(
            "    import socket\n    socket.create_connection(('127.0.0.1', 9))")}),
        "writer": write_folder(base / "writer", {"ch00_warmup.py": mse_that_first(
            f"    open({str(base / 'written-by-writer.txt')!r}, 'w').write('escaped')")}),
        "zipped": write_zip(base / "zipped.zip", {"zipped/exercises/ch00_warmup.py": solution("ch00_warmup"),
                                                  "zipped/README.md": "my notes"}),
        "sneaky": sneaky,
        "garbage": base / "garbage.zip",
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The synthetic class graded with the hidden tests: everyone (grades in all/), then only the
    well-behaved students (grades in well/)."""
    base = tmp_path_factory.mktemp("class")
    students = synthetic_class(base)
    students["garbage"].write_bytes(b"this is not a zip file")
    hidden = write_folder(base / "hidden", {"test_ch00_warmup_hidden.py": HIDDEN_TESTS})
    everyone = [str(path) for path in students.values()]
    assert main([*everyone, "--out", str(base / "all"), "--hidden", str(hidden), *OPTIONS]) == 0
    assert main([*(str(students[name]) for name in WELL_BEHAVED), "--out", str(base / "well"),
                 "--hidden", str(hidden), *OPTIONS]) == 0
    return base


def scores(out):
    with open(out / "scores.csv", newline="") as file:
        return {row["student"]: row for row in csv.DictReader(file)}


def results(out, student):
    return json.loads((out / student / "results.json").read_text())


def chapter_tests(out, student, chapter):
    return [test for test in results(out, student)["tests"] if f"test_{chapter}" in test["name"]]


@pytest.fixture(scope="module")
def collected(graded):
    """The node ids `pytest --collect-only -q` lists for the graded files, against the solutions."""
    files = [ROOT / "tests" / "exercises" / f"test_{chapter}.py" for chapter in CHAPTERS]
    env = {key: value for key, value in os.environ.items() if key not in ("MINILM_STUDENT", "MINILM_EXERCISES")}
    listing = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=",
                              "-p", "no:cacheprovider", *map(str, files), str(graded / "hidden")],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "::" in line]


def test_the_correct_student_passes_every_visible_and_hidden_test(graded, collected):
    out = graded / "all"
    row = scores(out)["correct"]
    assert (row["ch00_warmup"], row["ch06c_deployment"], row["total"]) == ("1.0000", "1.0000", "2.0000")
    for chapter in CHAPTERS:  # the hidden file's name starts test_ch00_warmup too
        assert len(chapter_tests(out, "correct", chapter)) == sum(f"test_{chapter}" in node for node in collected)
    assert len(chapter_tests(out, "correct", "ch00_warmup")) == 4 + 2
    hidden = [test for test in results(out, "correct")["tests"] if test["name"].startswith("hidden/")]
    assert [test["visibility"] for test in hidden] == ["after_published"] * 2
    assert all(test["status"] == "passed" for test in results(out, "correct")["tests"])


def test_the_partial_student_gets_credit_for_each_test_passed(graded, collected):
    out = graded / "all"
    tests = chapter_tests(out, "partial", "ch06c_deployment")
    mask_tests = [test for test in tests if "_mask_" in test["name"]]  # the one function left right
    assert len(mask_tests) == sum("test_ch06c_deployment.py::test_mask_" in node for node in collected) == 6
    assert len(tests) == 18
    assert all(test["status"] == "passed" for test in mask_tests)
    assert all(test["status"] == "failed" for test in tests if test not in mask_tests)
    assert scores(out)["partial"]["ch06c_deployment"] == f"{6 / 18:.4f}"
    assert scores(out)["partial"]["ch00_warmup"] == "1.0000"
    unwritten = [test for test in tests if "quantize" in test["name"]]
    assert unwritten and all("`absmax_quantize` is not written yet" in test["output"] for test in unwritten)
    assert f"{len(mask_tests)} of {len(tests)} tests passed" in (out / "partial" / "report.txt").read_text()


def test_the_broken_student_scores_zero_with_the_import_errors(graded):
    out = graded / "all"
    assert scores(out)["broken"]["total"] == "0.0000"
    report = (out / "broken" / "report.txt").read_text()
    assert "ch00_warmup              0.0000  import error: SyntaxError: '(' was never closed (line 1)" in report
    assert "import error: ModuleNotFoundError: No module named 'no_such_module_for_the_grader'" in report


@pytest.mark.parametrize("student,chapter,reason", [
    ("hostile", "ch00_warmup", "timeout: still running after 20 s"),
    ("hostile", "ch06c_deployment", "memory limit: past 6144 MB in tests/exercises/test_ch06c_deployment.py::"),
    ("flood", "ch00_warmup", "output flood: past the 4 MB file size limit in tests/exercises/test_ch00_warmup.py::"),
    ("reader", "ch00_warmup", "blocked: open"),
    ("socket", "ch00_warmup", "blocked: socket."),
    ("writer", "ch00_warmup", "blocked: open"),
])
def test_a_hostile_chapter_scores_zero_with_the_reason(graded, student, chapter, reason):
    out = graded / "all"
    assert scores(out)[student][chapter] == "0.0000"
    tests = chapter_tests(out, student, chapter)
    assert tests and all(test["score"] == 0 and test["output"].startswith(reason) for test in tests), tests[0]
    assert reason in (out / student / "report.txt").read_text()


def test_nothing_hostile_got_out(graded):
    out = graded / "all"
    assert not (graded / "written-by-writer.txt").exists()
    secret = (graded / "correct" / "ch00_warmup.py").read_text()
    assert not any(secret in path.read_text() for path in out.rglob("*.*") if path.parent.name != "correct")
    flood = [path.stat().st_size for path in (out / "flood").iterdir()]
    assert max(flood) < 20_000, "the flood stays out of the reports"


def test_zips_are_read_without_extracting_and_bad_ones_are_a_line(graded):
    out = graded / "all"
    zipped, sneaky, garbage = ((out / name / "report.txt").read_text() for name in ("zipped", "sneaky", "garbage"))
    assert (scores(out)["zipped"]["ch00_warmup"], scores(out)["zipped"]["ch06c_deployment"]) == ("1.0000", "0.0000")
    assert "not submitted" in zipped and "left out of the zip: zipped/README.md (not an exercise module)" in zipped
    assert scores(out)["sneaky"]["total"] == "0.0000"
    assert "../../ch00_warmup.py (an unsafe path)" in sneaky and "ch06c_deployment.py (a link)" in sneaky
    assert not (graded.parent / "ch00_warmup.py").exists() and not (graded.parent.parent / "ch00_warmup.py").exists()
    assert scores(out)["garbage"]["total"] == "0.0000" and "bad zip: File is not a zip file" in garbage


def test_the_hostile_students_change_nothing_for_the_others(graded):
    everyone, alone = scores(graded / "all"), scores(graded / "well")
    assert sorted(alone) == sorted(WELL_BEHAVED)
    for student in WELL_BEHAVED:
        assert everyone[student] == alone[student]
        assert results(graded / "all", student) == results(graded / "well", student)
        assert (graded / "all" / student / "report.txt").read_bytes() == \
            (graded / "well" / student / "report.txt").read_bytes()


def test_every_results_json_is_gradescopes_format_and_adds_up(graded):
    out = graded / "all"
    for student in scores(out):
        result = results(out, student)
        assert set(result) == {"score", "max_score", "output", "tests"} and result["max_score"] == len(CHAPTERS)
        assert result["score"] == pytest.approx(sum(test["score"] for test in result["tests"]), abs=1e-9)
        assert result["score"] == pytest.approx(float(scores(out)[student]["total"]), abs=5e-5)
        assert sum(test["max_score"] for test in result["tests"]) == pytest.approx(len(CHAPTERS))
        for test in result["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
            assert test["status"] == ("passed" if test["score"] == test["max_score"] else "failed")
            assert test["visibility"] == ("after_published" if test["name"].startswith("hidden/") else "visible")


def test_the_summary_gives_the_distribution_the_means_and_the_tests_most_failed(graded):
    out = graded / "all"
    summary, table = (out / "summary.md").read_text(), scores(out)
    totals = sorted(float(row["total"]) for row in table.values())
    assert summary.startswith(f"# Grades: {len(table)} students, 2 exercises")
    assert f"| {len(table)} | {sum(totals) / len(totals):.2f} | " in summary
    assert f" {max(totals):.2f} |" in summary and summary.count("#") > len(totals)
    mean_ch00 = sum(float(row["ch00_warmup"]) for row in table.values()) / len(table)
    below = sum(row["ch00_warmup"] != "1.0000" for row in table.values())
    assert f"| ch00_warmup | 6 | {mean_ch00:.2f} | {below} |" in summary
    assert "| ch00_warmup | timeout | hostile |" in summary
    assert "| ch00_warmup | blocked | reader, socket, writer |" in summary
    most_failed = [line for line in summary.splitlines() if line.startswith("| `")]
    partial_failed = {test["name"] for test in results(out, "partial")["tests"] if test["status"] == "failed"}
    assert len(most_failed) == 10 and all(line.endswith("` | 1 |") for line in most_failed)  # partial's, alone
    assert {line.split("`")[1] for line in most_failed} <= partial_failed


def test_reading_a_submission_takes_only_exercise_modules_within_the_caps(tmp_path):
    modules = {"ch00_warmup.py", "ch06c_deployment.py"}
    nested = write_zip(tmp_path / "nested.zip", {"a/b/ch00_warmup.py": "deeper", "a/ch00_warmup.py": "nearer",
                                                 "ch06c_deployment.py": "x" * (MAX_FILE_BYTES + 1)})
    submission = read_submission(nested, modules)
    assert submission.files == {"ch00_warmup.py": b"nearer"}
    assert submission.notes == ("left out of the zip: ch06c_deployment.py (over 1 MB), "
                                "a/b/ch00_warmup.py (a second ch00_warmup.py)",)
    crowded = write_zip(tmp_path / "crowded.zip", {f"{index}.txt": "" for index in range(MAX_ZIP_MEMBERS + 1)})
    assert read_submission(crowded, modules).problem.startswith(f"bad zip: {MAX_ZIP_MEMBERS + 1} files, more than")
    folder = write_folder(tmp_path / "linker" / "exercises", {"notes.md": "mine"})
    (folder / "ch00_warmup.py").symlink_to(nested)
    linker = read_submission(tmp_path / "linker", modules)
    assert (linker.name, linker.files) == ("linker", {})
    assert linker.notes == ("left out of the folder: ch00_warmup.py (a link or not a file), notes.md",)


@pytest.mark.parametrize("arguments,message", [
    (["x", "--chapters", "ch99_nothing"], "grade: unknown chapter ch99_nothing; the course's chapters are "),
    (["x", "--hidden", "/no/such/folder"], "grade: --hidden /no/such/folder is not a folder."),
    (["a/alice", "b/alice.zip", "--chapters", "ch00_warmup"], "grade: two submissions are named alice"),
    (["x", "--out", str(ROOT)], f"grade: --out {ROOT} holds the course itself"),
    ([str(ROOT), "--chapters", "ch00_warmup"], f"grade: {ROOT} holds the course itself"),
])
def test_bad_input_is_one_clear_line(capsys, arguments, message):
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1


def test_the_course_solutions_score_full_marks_on_every_chapter(tmp_path):
    """Every chapter, the capstone included, graded in the sandbox: whatever the installed libraries do
    as they start (run ldconfig or lscpu, open a socket) must not count against a student."""
    chapters = sorted(path.stem for path in (ROOT / "exercises").glob("*.py"))
    solved = write_folder(tmp_path / "solved", {f"{name}.py": (ROOT / "solutions" / f"{name}.py").read_text()
                                                 for name in chapters})
    assert main([str(solved), "--out", str(tmp_path / "grades")]) == 0
    with open(tmp_path / "grades" / "scores.csv", newline="") as table:
        (row,) = list(csv.DictReader(table))
    assert {name: row[name] for name in chapters} == {name: "1.0000" for name in chapters}

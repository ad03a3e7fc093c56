"""docs/teaching.md quotes each notebook's measured times (notebooks/times.json), plans a session for
every notebook and every exercise module, and names only commands the `course` script has; AGENTS.md
keeps assistants off the exercise answers and goes to students with the copy."""
import re
import subprocess
from pathlib import Path

from tests.exercises.harness import ROOT
from tools.notebook_times import load, shown

GUIDE = (ROOT / "docs" / "teaching.md").read_text(encoding="utf-8")
QUOTED = re.compile(r"\((?:[0-9a-z_]+: smoke [^,]+, cpu [^;)]+(?:; )?)+\)")
TIME = re.compile(r"([0-9a-z_]+): smoke ([^,]+), cpu ([^;)]+)")


def quoted_times() -> dict[str, tuple[str, str]]:
    """notebook -> (smoke, cpu) as the session headings quote them."""
    times = {}
    for heading in re.findall(r"^### Session \d+ .*$", GUIDE, flags=re.M):
        for group in QUOTED.findall(heading):
            times.update({name: (smoke, cpu) for name, smoke, cpu in TIME.findall(group)})
    return times


def test_every_notebook_has_a_session_with_its_measured_times():
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    quoted, measured = quoted_times(), load()
    assert sorted(quoted) == notebooks
    for name, (smoke, cpu) in quoted.items():
        assert (smoke, cpu) == (shown(measured[name]["smoke"]["seconds"]), shown(measured[name]["cpu"]["seconds"])), name


def test_between_ten_and_twelve_sessions_cover_every_exercise():
    sessions = re.findall(r"^### Session (\d+) ", GUIDE, flags=re.M)
    assert 10 <= len(sessions) <= 12 and sessions == [str(i) for i in range(1, len(sessions) + 1)]
    exercises = [p.stem for p in (ROOT / "exercises").glob("*.py")]
    assert exercises and not [name for name in exercises if f"`{name}`" not in GUIDE and f"{name}.py" not in GUIDE]


def test_the_guide_names_only_commands_the_course_script_has():
    usage = subprocess.run([str(ROOT / "course"), "help"], capture_output=True, text=True, check=True).stdout
    commands = set(re.findall(r"\./course ([a-z-]+)", usage))
    assert {"student-copy", "grade", "slides", "exercise", "check"} <= commands
    assert set(re.findall(r"\./course ([a-z-]+)", GUIDE)) <= commands


def test_agents_md_keeps_assistants_off_the_answers():
    agents = (ROOT / "AGENTS.md").read_text(encoding="utf-8")
    assert "exercises/*.py" in agents and "Do not write their bodies" in agents
    assert "./course exercise" in agents and "notebooks/" in agents
    from tools.student_copy import course_files
    assert Path("AGENTS.md") in course_files() or not (ROOT / ".git").exists()

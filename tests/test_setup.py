"""The course's own setup: which PyTorch build it installs (tools/choose_torch.py), and `./course open`
run as root (as in many containers), which JupyterLab refuses unless told."""
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import choose_torch  # noqa: E402  (a standalone script beside the course, not part of minilm)

CPU = "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("system,nvidia,answers,expected", [
    ("Linux", False, True, ["--index-url", CPU]),  # no GPU, index reachable: the CPU build
    ("Linux", False, False, []),  # no GPU, index unreachable: fall back to the default
    ("Linux", True, True, []),  # an NVIDIA GPU: the default (CUDA) build
    ("Darwin", False, True, []),  # macOS: PyPI's build is the right one
])
def test_the_cpu_build_is_chosen_only_without_an_nvidia_gpu(system, nvidia, answers, expected):
    asked = []
    options, reason = choose_torch.choose(system, nvidia, CPU, lambda url: asked.append(url) or answers)
    assert options == expected
    assert reason and ("CPU build" in reason) == bool(expected)  # it says which it chose, and why
    assert asked == ([CPU] if system == "Linux" and not nvidia else [])  # the index is asked only when it matters


def test_reachable_tells_an_answering_index_from_a_closed_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert choose_torch.reachable(f"http://127.0.0.1:{server.server_address[1]}/no-such-page/")  # 404 answers
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # a port nobody listens on
        port = closed.getsockname()[1]
    assert not choose_torch.reachable(f"http://127.0.0.1:{port}/", timeout=2)


def test_the_script_prints_options_and_its_reason(monkeypatch):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "choose_torch.py")], capture_output=True, text=True,
                            env={**os.environ, "MINILM_TORCH_INDEX": ""}, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == ""
    assert result.stderr.startswith("PyTorch: ")


@pytest.fixture
def fake_course(tmp_path):
    """A course environment whose `jupyter` only prints what it was asked, and an `id` that says who we are."""
    venv, stubs = tmp_path / "venv", tmp_path / "stubs"
    (venv / "bin").mkdir(parents=True)
    stubs.mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    jupyter = venv / "bin" / "jupyter"
    jupyter.write_text('#!/bin/sh\necho "jupyter $*"\n')
    jupyter.chmod(0o755)
    (venv / ".installed").touch()  # newer than requirements.txt: setup has nothing to do

    def run(uid: int) -> subprocess.CompletedProcess:
        fake_id = stubs / "id"
        fake_id.write_text(f'#!/bin/sh\necho {uid}\n')
        fake_id.chmod(0o755)
        env = {**os.environ, "MINILM_VENV": str(venv), "PATH": f"{stubs}:{os.environ['PATH']}"}
        return subprocess.run([str(ROOT / "course"), "open"], capture_output=True, text=True, env=env, timeout=60)

    return run


def test_course_open_as_root_says_what_it_does_and_allows_root(fake_course):
    result = fake_course(uid=0)
    assert result.returncode == 0, result.stderr
    assert "--allow-root" in result.stdout and "notebooks/00_setup.ipynb" in result.stdout
    assert "Running as root" in result.stderr and "useradd" in result.stderr and "--ip=0.0.0.0" in result.stderr


def test_course_open_as_a_user_asks_for_nothing_more(fake_course):
    result = fake_course(uid=1000)
    assert result.returncode == 0 and "--allow-root" not in result.stdout and result.stderr == ""

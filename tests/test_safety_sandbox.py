"""The sandbox against code that tries to escape: loops, memory, forks, sockets, shells, huge files,
output floods and the parent's secrets; and good code, which runs and prints."""
import os
import socket
import textwrap
import time

import pytest

from minilm.safety.sandbox import SandboxLimits, check_completion, guards, namespace_command, run_untrusted

FAST = {"timeout_s": 3.0, "cpu_s": 2}


def test_good_code_runs_and_returns_its_output():
    result = run_untrusted("import math\nprint(sum(range(10)), math.factorial(5))")
    assert (result.status, result.returncode, result.stdout, result.stderr) == ("ok", 0, "45 120\n", "")


def test_an_exception_or_an_exit_code_is_an_error_with_its_traceback():
    result = run_untrusted("raise KeyError('lost')")
    assert result.status == "error" and result.returncode == 1 and "KeyError: 'lost'" in result.stderr
    assert run_untrusted("import sys; sys.exit(3)").returncode == 3


def test_an_infinite_loop_times_out_quickly():
    began = time.monotonic()
    result = run_untrusted("while True: pass", **FAST)
    assert result.status == "timeout"
    assert time.monotonic() - began < 6


def test_sleeping_past_the_deadline_is_killed():
    result = run_untrusted("import time\ntime.sleep(60)", timeout_s=1.0)
    assert result.status == "timeout" and result.returncode == -9
    assert result.seconds < 3


def test_allocating_4_gb_hits_the_memory_limit():
    result = run_untrusted("block = bytearray(4 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert result.status == "memory" and "allocated" not in result.stdout


def test_a_fork_bomb_is_blocked():
    result = run_untrusted("import os\nwhile True:\n    os.fork()", **FAST)
    assert result.status == "blocked" and "os.fork" in result.stderr


CTYPES_FORKS = """
import ctypes, os, time
libc = ctypes.CDLL(None)
made = 0
for _ in range(200):          # bounded: harmless even where nothing limits it
    pid = libc.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    made += pid > 0
print(made, flush=True)
"""


def sandboxed_processes():
    """Processes on this machine running the sandbox's child script (read from /proc): forks share its
    command line."""
    marker, found = b"memory_exit, blocked_exit", 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                found += marker in file.read()
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="counts processes through /proc")
def test_forks_that_bypass_the_hook_are_limited_and_never_outlive_the_run():
    result = run_untrusted(CTYPES_FORKS, processes=16, **FAST)
    assert result.status == "ok"
    if os.geteuid() != 0:  # the kernel exempts root from RLIMIT_NPROC (the docstring says so)
        assert int(result.stdout) < 16
    time.sleep(0.2)
    assert sandboxed_processes() == 0


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    yield server
    server.close()


def nothing_connected(server):
    try:
        server.accept()[0].close()
    except socket.timeout:
        return True
    return False


def test_a_socket_to_localhost_is_blocked(listener):
    port = listener.getsockname()[1]
    result = run_untrusted(f"import socket\nsocket.create_connection(('127.0.0.1', {port})).send(b'hi')", **FAST)
    assert result.status == "blocked" and "socket" in result.stderr
    assert nothing_connected(listener)


def test_resolving_a_host_is_blocked():
    result = run_untrusted("import socket\nprint(socket.getaddrinfo('localhost', 80))", **FAST)
    assert result.status == "blocked" and result.stdout == ""


@pytest.mark.skipif(not namespace_command(), reason="this machine makes no network namespace")
def test_a_socket_made_through_ctypes_finds_no_network(listener):
    port = listener.getsockname()[1]
    code = textwrap.dedent(f"""
        import ctypes, struct
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.socket(2, 1, 0)  # AF_INET, SOCK_STREAM: no audit event
        address = struct.pack("=H", 2) + struct.pack(">H", {port}) + bytes([127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        print(libc.connect(fd, address, 16), ctypes.get_errno())
    """)
    result = run_untrusted(code, **FAST)
    assert result.status == "ok"
    returned, errno = map(int, result.stdout.split())
    assert returned == -1 and errno != 0  # the namespace's loopback is down: unreachable
    assert nothing_connected(listener)
    assert "user, network and PID namespaces" in guards()


def test_shell_commands_are_blocked_and_do_nothing(tmp_path):
    target = tmp_path / "made-by-shell"
    for code in (f"import os\nos.system('touch {target}')",
                 f"import subprocess\nsubprocess.run(['touch', '{target}'])"):
        assert run_untrusted(code, **FAST).status == "blocked"
    assert not target.exists()


def test_writing_or_removing_files_outside_its_folder_is_blocked(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for code in (f"open({str(keep)!r}, 'w').write('gone')", f"import os\nos.remove({str(keep)!r})",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})"):
        assert run_untrusted(code, **FAST).status == "blocked", code
    assert keep.read_text() == "mine"
    assert run_untrusted("open('scratch.txt', 'w').write('fine')\nprint(open('scratch.txt').read())").stdout == "fine\n"


def test_a_huge_file_stops_at_the_file_size_limit():
    code = textwrap.dedent("""
        import os
        try:
            with open("big", "wb") as file:
                for _ in range(64):
                    file.write(b"x" * (1 << 20))
        except OSError as error:
            print("stopped:", error.strerror)
        print(os.path.getsize("big"))
    """)
    result = run_untrusted(code, file_mb=4)
    assert result.stdout.splitlines() == ["stopped: File too large", str(4 << 20)]


def test_an_output_flood_is_cut():
    result = run_untrusted("while True:\n    print('x' * 1000)", output_chars=500, **FAST)
    assert result.status == "error"  # its output file reached the file size limit
    assert result.stdout.startswith("x" * 500) and "output cut" in result.stdout
    assert len(result.stdout) < 600


def test_the_parents_environment_is_not_passed_on(monkeypatch):
    monkeypatch.setenv("MINILM_TEST_SECRET", "hunter2")
    result = run_untrusted("import os\nprint(os.environ.get('MINILM_TEST_SECRET'), 'HOME' in os.environ)")
    assert result.stdout == "None False\n"


def test_check_completion_runs_the_function_against_its_asserts():
    header = 'def add(a, b):\n    """Return the sum of a and b."""'
    assert check_completion(header, "\n    return a + b", "assert add(2, 3) == 5").status == "ok"
    wrong = check_completion(header, "\n    return a - b", "assert add(2, 3) == 5")
    assert wrong.status == "error" and "AssertionError" in wrong.stderr
    assert check_completion(header, "\n    return a +", "assert add(2, 3) == 5").status == "error"


def test_bad_settings_are_refused_with_one_clear_line():
    with pytest.raises(ValueError, match="positive"):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError, match="unknown sandbox limit"):
        run_untrusted("pass", timeout=1)
    with pytest.raises(ValueError, match="string"):
        run_untrusted(b"print(1)")
    with pytest.raises(ValueError, match="assert"):
        check_completion("def f():", "\n    return 1", "f()")


# Forbidden paths, a folder of the caller's, trusted imports (what the class autograder needs) ----------

def secret_files(tmp_path):
    """A work folder and, beside it, another student's folder with a file."""
    work, secret = tmp_path / "work", tmp_path / "other-student"
    work.mkdir()
    secret.mkdir()
    (secret / "answer.py").write_text("THE ANSWER")
    return work, secret


@pytest.mark.parametrize("attempt", [
    "print(open({file!r}).read())",
    "import pathlib\nprint(pathlib.Path({file!r}).read_text())",
    "import io\nprint(io.open_code({file!r}).read())",
    "import os\nprint(os.read(os.open({file!r}, os.O_RDONLY), 100))",
    "print(open('../other-student/answer.py').read())",
    "import os\nprint(os.listdir({folder!r}))",
    "import os\nprint(list(os.scandir({folder!r})))",
    "import glob\nprint(glob.glob({folder!r} + '/*'))",
    # a folder above the forbidden one, opened to reach into it by relative path (dir_fd)
    "import os\nabove = os.open({above!r}, os.O_RDONLY)\nprint(os.read(os.open('other-student/answer.py', os.O_RDONLY, dir_fd=above), 100))",
])
def test_forbidden_paths_cannot_be_opened_or_listed(tmp_path, attempt):
    work, secret = secret_files(tmp_path)
    code = attempt.format(file=str(secret / "answer.py"), folder=str(secret), above=str(tmp_path))
    result = run_untrusted(code, folder=work, forbidden=[secret], **FAST)
    assert result.status == "blocked" and "sandbox: blocked" in result.stderr, result.stderr
    assert "THE ANSWER" not in result.stdout + result.stderr and "answer.py" not in result.stdout


def test_a_link_to_a_forbidden_file_is_no_way_round(tmp_path):
    work, secret = secret_files(tmp_path)
    (work / "link.py").symlink_to(secret / "answer.py")  # made beforehand: the code may not make links out
    result = run_untrusted("print(open('link.py').read())", folder=work, forbidden=[secret], **FAST)
    assert result.status == "blocked" and "THE ANSWER" not in result.stdout


def test_files_outside_the_forbidden_paths_stay_readable(tmp_path):
    work, secret = secret_files(tmp_path)
    (tmp_path / "public.txt").write_text("shared")
    result = run_untrusted(f"print(open({str(tmp_path / 'public.txt')!r}).read())", folder=work,
                           forbidden=[secret], **FAST)
    assert (result.status, result.stdout) == ("ok", "shared\n")


def test_the_callers_folder_holds_its_files_before_and_after(tmp_path):
    (tmp_path / "data.txt").write_text("21")
    code = "open('answer.txt', 'w').write(str(2 * int(open('data.txt').read())))"
    assert run_untrusted(code, folder=tmp_path, **FAST).status == "ok"
    assert (tmp_path / "answer.txt").read_text() == "42" and (tmp_path / "solution.py").read_text() == code


def test_a_forbidden_path_may_not_hold_the_folder_nor_lie_inside_it(tmp_path):
    (tmp_path / "work" / "inner").mkdir(parents=True)
    for forbidden in (tmp_path, tmp_path / "work" / "inner"):
        with pytest.raises(ValueError, match="forbidden path"):
            run_untrusted("pass", folder=tmp_path / "work", forbidden=[forbidden])
    with pytest.raises(ValueError, match="not a folder"):
        run_untrusted("pass", folder=tmp_path / "missing")


def test_the_blocked_event_is_reported_even_when_the_code_redirects_its_stderr():
    code = "import os\nos.dup2(os.open(os.devnull, os.O_WRONLY), 2)\nimport socket\nsocket.socket()"
    result = run_untrusted(code, **FAST)
    assert result.status == "blocked" and "sandbox: blocked socket" in result.stderr


def test_writing_to_dev_null_is_allowed():
    assert run_untrusted("open('/dev/null', 'w').write('nothing')", **FAST).status == "ok"


def test_trusted_imports_are_loaded_before_the_code_runs():
    result = run_untrusted("import sys\nprint('fractions' in sys.modules)", trusted_imports=["fractions"], **FAST)
    assert result.stdout == "True\n"
    missing = run_untrusted("pass", trusted_imports=["no_such_module_anywhere"], **FAST)
    assert missing.status == "error" and "No module named 'no_such_module_anywhere'" in missing.stderr

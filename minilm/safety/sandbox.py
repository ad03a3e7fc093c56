"""Running code the model wrote: a separate Python with resource limits, no network, and a deadline.

    from minilm.safety.sandbox import run_untrusted, check_completion
    result = run_untrusted("print(sum(range(10)))")            # SandboxResult(status='ok', stdout='45\\n', ...)
    run_untrusted("while True: pass", timeout_s=1).status    # 'timeout'
    run_untrusted(program, folder=work, forbidden=[other_students])  # run in `work`; never open the others
    check_completion(header, body, "assert add(2, 3) == 5")  # chapter 6's completion, run against asserts

The threat model: the model's code is untrusted but no targeted attacker. It may loop forever,
eat memory, fork, flood its output, fill the disk, open a socket or delete files by mistake or by
imitation of what it read; it is not crafted to break out. The guards, each a layer under the last:

    process      `python -I -B` (no environment variables, no user site, no bytecode written) in a fresh
                 temporary directory (or the caller's `folder`), with an empty environment: secrets in the
                 parent's variables are absent
    audit hook   sys.addaudithook in the child blocks sockets (and name lookups), os.system, subprocess,
                 exec, spawn, fork, kill, and writing, renaming or removing files outside its directory
                 (but for /dev/null, which torch's imports and pytest open for writing), and
                 opening or listing anything in the `forbidden` paths (or opening a folder above them):
                 the code gets an exception and the result says "blocked"
    namespaces   where `unshare` may make them (Linux, unprivileged user namespaces), new user, network
                 and PID namespaces: no network interface but a loopback that is down, and every process
                 the code starts dies with it
    limits       RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_NPROC (fork bombs), RLIMIT_FSIZE (file and output
                 size), RLIMIT_NOFILE and no core files, set in the child before the code runs; a wall-clock
                 deadline kills the whole process group; output beyond `output_chars` is cut

What it does NOT protect against. The audit hook is a tripwire, not a wall: ctypes or any C
extension calls fork, socket or unlink directly and never raises an audit event; so may code that
clears the hook's state through the interpreter's internals. Without namespaces (`guards()` says
which layers hold; macOS never has them) such code reaches the network and the user's other
processes. Reading is not prevented outside the `forbidden` paths: the code can read every other
file the user can (keys under ~/.ssh, the course's cache) and print it; and inside them, os.stat,
os.path.exists and the like still tell a file's existence and size (they raise no audit event).
Only running the sandbox as another user or in a container with nothing else mounted stops that.
Run as root, RLIMIT_NPROC does not hold (the kernel exempts root) and a fork bomb that slips past
the hook is stopped only by the deadline. Time and memory measured per process: a program that
forks shares nothing of its limits with its children.

The limits are set by the child itself, at its start, rather than by a `preexec_fn`: running Python
between fork and exec is unsafe in a parent with threads, and a notebook running torch has many.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

STATUSES = ("ok", "error", "timeout", "memory", "blocked")
MEMORY_EXIT, BLOCKED_EXIT = 86, 87  # the child's exit codes for a MemoryError and for a blocked action
NAMESPACE_FLAGS = ("--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child")
TRUNCATED = "\n[... output cut: {size:,} bytes in all]"

# The child: set the limits, install the hook, run solution.py, report how it ended. As the first
# process of a new PID namespace it forks once and relays its child's fate as the exit code
# (128 + signal): the first process ignores signals it has no handler for, SIGXCPU among them.
CHILD = r'''
import json, os, resource, sys, traceback
limits, memory_exit, blocked_exit, forbidden, trusted_imports = json.loads(sys.argv[1])
if os.getpid() == 1:
    child = os.fork()
    if child:
        code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        os._exit(code if code >= 0 else 128 - code)
for name, (soft, hard) in limits.items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
work = os.getcwd()
os.environ["TMPDIR"] = work
sys.dont_write_bytecode = True
report = os.dup(2)  # the stderr of the run, even after the code redirects its own (as pytest does)
source = open("solution.py", encoding="utf-8").read()
BLOCKED = ("socket.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.kill",
           "subprocess.Popen", "pty.spawn", "signal.pthread_kill")
CHANGES = {"open", "os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.truncate", "os.chmod", "os.chown",
           "os.link", "os.symlink", "os.utime", "shutil.rmtree"}
READS = {"open", "os.listdir", "os.scandir"}
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
violations = []

def outside(path):
    if isinstance(path, int) or path is None:
        return False
    real = os.path.realpath(os.fsdecode(path))
    return os.path.commonpath([real, work]) != work and real != os.devnull  # /dev/null changes nothing

def reaches_forbidden(event, path):
    # inside a forbidden path; for open, also a folder above one (a dir_fd to open its files by relative path)
    if isinstance(path, int):
        return False
    real = os.path.realpath(os.fsdecode("." if path is None else path))
    for folder in forbidden:
        common = os.path.commonpath([real, folder])
        if common == folder or (event == "open" and common == real):
            return True
    return False

def changes_outside(event, args):
    if event == "open":
        path, mode, flags = args
        by_mode = isinstance(mode, str) and any(c in mode for c in "wax+")
        return bool(by_mode or (isinstance(flags, int) and flags & WRITING)) and outside(path)
    return any(outside(a) for a in args if isinstance(a, (str, bytes, os.PathLike)))

def hook(event, args):
    if (event.startswith(BLOCKED) or (event in CHANGES and changes_outside(event, args))
            or (forbidden and event in READS and reaches_forbidden(event, args[0]))):
        if not violations:
            os.write(report, ("sandbox: blocked " + event + "\n").encode())
        violations.append(event)
        raise PermissionError("the sandbox does not allow " + event)

for module in trusted_imports:  # before the hook: their own start-up may run helpers (ldconfig)
    __import__(module)
sys.addaudithook(hook)
status = 0
try:
    exec(compile(source, "solution.py", "exec"), {"__name__": "__main__", "__file__": "solution.py"})
except MemoryError:
    os.write(2, b"MemoryError: the sandbox's memory limit was reached\n")
    status = memory_exit
except SystemExit as stop:
    if stop.code is None or isinstance(stop.code, int):
        status = stop.code or 0
    else:
        print(stop.code, file=sys.stderr)
        status = 1
except BaseException:
    traceback.print_exc()
    status = 1
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except OSError:
        pass
os._exit(blocked_exit if violations else status)
'''


@dataclass(frozen=True)
class SandboxLimits:
    """What the untrusted code may use. Generous for a function and its tests, small for the machine."""

    timeout_s: float = 5.0  # wall clock: then the whole process group is killed (sleeping costs no CPU)
    cpu_s: int = 5  # CPU seconds per process (RLIMIT_CPU): a busy loop stops even if the clock is slow
    memory_mb: int = 512  # address space per process (RLIMIT_AS): Python with numpy needs ~100 MB
    processes: int = 16  # processes of the user (RLIMIT_NPROC): a fork bomb stops here (not as root)
    file_mb: int = 16  # largest file the code may write (RLIMIT_FSIZE), its output included
    open_files: int = 64  # file descriptors (RLIMIT_NOFILE): Python itself needs a handful
    output_chars: int = 10_000  # stdout and stderr each cut to this many characters

    def __post_init__(self) -> None:
        bad = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if not getattr(self, f.name) > 0]
        if bad:
            raise ValueError(f"sandbox limits must be positive, got {', '.join(bad)}.")

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The (soft, hard) resource limits the child sets; the hard CPU limit (SIGKILL) a second later."""
        return {"RLIMIT_AS": (self.memory_mb << 20,) * 2, "RLIMIT_CPU": (self.cpu_s, self.cpu_s + 1),
                "RLIMIT_NPROC": (self.processes,) * 2, "RLIMIT_FSIZE": (self.file_mb << 20,) * 2,
                "RLIMIT_NOFILE": (self.open_files,) * 2, "RLIMIT_CORE": (0, 0)}


@dataclass(frozen=True)
class SandboxResult:
    """How a run ended and what it wrote."""

    status: str  # ok, error (an exception or a non-zero exit), timeout, memory, blocked
    returncode: int  # the exit code; -N when signal N ended it (-9 for the deadline)
    stdout: str  # what it printed, cut to output_chars
    stderr: str  # its errors and tracebacks, cut to output_chars
    seconds: float  # wall time of the run


@functools.cache
def namespace_command() -> tuple[str, ...]:
    """The `unshare` command that puts the child in new user, network and PID namespaces, or () when
    this machine does not allow it (not Linux, no unshare, user namespaces switched off)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        probe = subprocess.run([unshare, *NAMESPACE_FLAGS, "true"], capture_output=True, timeout=10, env={})
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, *NAMESPACE_FLAGS) if probe.returncode == 0 else ()


def guards() -> list[str]:
    """The layers in force on this machine (see the module's docstring for what each does not stop)."""
    layers = ["fresh process, empty environment", "audit hook", "resource limits", "wall-clock deadline"]
    if namespace_command():
        layers.insert(2, "user, network and PID namespaces")
    if os.geteuid() == 0:
        layers.append("(as root: RLIMIT_NPROC does not hold)")
    return layers


def read_cut(path: Path, chars: int) -> str:
    """A file's text cut to `chars` characters, saying so when it was longer."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        text = file.read(4 * chars + 4).decode("utf-8", errors="replace")
    return text[:chars] + TRUNCATED.format(size=size) if len(text) > chars or 4 * chars + 4 < size else text


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads: the code's own processes die with it."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def status_of(returncode: int, timed_out: bool) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, -signal.SIGKILL):  # the deadline, or the CPU limit
        return "timeout"
    if returncode == MEMORY_EXIT:
        return "memory"
    if returncode == BLOCKED_EXIT:
        return "blocked"
    return "ok" if returncode == 0 else "error"


def forbidden_paths(paths: Iterable[str | os.PathLike], work: Path) -> list[str]:
    """The real paths of `paths`, none of which may hold the folder the code runs in or lie inside it."""
    real = [os.path.realpath(path) for path in paths]
    for path in real:
        if os.path.commonpath([path, str(work)]) in (path, str(work)):
            raise ValueError(f"the forbidden path {path} holds or lies inside the sandbox's folder {work}.")
    return real


def run_untrusted(code: str, limits: SandboxLimits = SandboxLimits(), *, folder: str | os.PathLike | None = None,
                  forbidden: Iterable[str | os.PathLike] = (), trusted_imports: Iterable[str] = (),
                  **changes) -> SandboxResult:
    """Run `code` as a program in the sandbox; `changes` override fields of `limits` (timeout_s=1).

    folder: where it runs, for a program that needs files beside it and leaves some behind (a grader
        puts a student's modules and tests there, and reads the test report back after the run). Its
        files are the code's to read and change; solution.py is written into it; the caller removes
        it. By default a fresh temporary folder, removed after the run.
    forbidden: files and folders the code may not open or list at all (other students' work, the
        answers): the attempt is blocked like a socket. os.stat and the like still see them.
    trusted_imports: modules imported under the limits but before the audit hook, for trusted
        libraries whose start-up runs helper programs (torch's CUDA build runs ldconfig through
        ctypes.util.find_library, which the hook would count as blocked).
    """
    if not isinstance(code, str):
        raise ValueError(f"run_untrusted takes the program's source as a string, got {type(code).__name__}.")
    unknown = set(changes) - set(asdict(limits))
    if unknown:
        raise ValueError(f"unknown sandbox limit(s) {', '.join(sorted(unknown))}; use {', '.join(asdict(limits))}.")
    if folder is not None and not Path(folder).is_dir():
        raise ValueError(f"the sandbox's folder {folder} is not a folder.")
    limits = replace(limits, **changes)
    namespaces = namespace_command()
    with tempfile.TemporaryDirectory(prefix="minilm-sandbox-", ignore_cleanup_errors=True) as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        work = Path(folder).resolve() if folder is not None else Path(scratch) / "work"
        work.mkdir(exist_ok=True)
        argument = json.dumps([limits.rlimits(), MEMORY_EXIT, BLOCKED_EXIT, forbidden_paths(forbidden, work),
                               list(trusted_imports)])
        command = [*namespaces, sys.executable, "-I", "-B", "-c", CHILD, argument]
        (work / "solution.py").write_text(code, encoding="utf-8")
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            began = time.perf_counter()
            process = subprocess.Popen(command, cwd=work, env={}, stdin=subprocess.DEVNULL, stdout=stdout,
                                       stderr=stderr, start_new_session=True)
            try:
                returncode, timed_out = process.wait(timeout=limits.timeout_s), False
            except subprocess.TimeoutExpired:
                timed_out = True
            kill_group(process.pid)  # leftovers after a normal exit too: no process outlives the run
            returncode = process.wait() if timed_out else returncode
            seconds = time.perf_counter() - began
        if namespaces and returncode > 128:  # relayed by the namespace's first process: 128 + signal
            returncode = 128 - returncode
        return SandboxResult(status_of(returncode, timed_out), returncode, read_cut(out, limits.output_chars),
                             read_cut(err, limits.output_chars), round(seconds, 3))


def check_completion(header: str, body: str, tests: str, limits: SandboxLimits = SandboxLimits(),
                     **changes) -> SandboxResult:
    """Run a completed function (chapter 6: its header, then the body the model wrote) followed by
    `tests`, a few lines of asserts; status "ok" means every assert held."""
    if not all(isinstance(part, str) for part in (header, body, tests)) or "assert" not in tests:
        raise ValueError("check_completion takes the header, the body and tests (lines with assert) as strings.")
    return run_untrusted(f"{header}{body}\n\n{textwrap.dedent(tests)}\n", limits, **changes)

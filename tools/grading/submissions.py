"""Students' submissions, read without trusting them: a folder or a zip, of which only the course's
exercise modules are taken (ch00_warmup.py, ..., capstone.py); everything else is listed as left out.

A zip is never extracted: each member the grader wants is read, capped, into memory. Members with an
absolute path, `..`, a link, encryption or a size past MAX_FILE_BYTES are left out, with the reason.
"""
from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_FILE_BYTES = 1 << 20  # an exercise module is a few kB: anything past 1 MB is not one
MAX_ZIP_MEMBERS = 2000  # a zip of a course's exercises holds a few dozen files
LISTED = 8  # left-out files named in a note; the rest are counted


@dataclass(frozen=True)
class Submission:
    """One student's work, as read: the exercise modules only."""

    name: str  # the student's: the folder's name (its parent's, for an exercises/ folder) or the zip's stem
    path: Path  # where it was read: every other submission's run is forbidden to open it
    files: dict[str, bytes]  # module file name (ch00_warmup.py) -> its source
    notes: tuple[str, ...] = ()  # what was left out, and why
    problem: str = ""  # why nothing could be read (a bad zip, a path that is not there)


def student_name(path: Path) -> str:
    if path.suffix.lower() == ".zip":
        return path.stem
    folder = path.resolve()
    return folder.parent.name if folder.name == "exercises" else folder.name


def left_out(where: str, names: list[str]) -> tuple[str, ...]:
    if not names:
        return ()
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return (f"left out of {where}: {', '.join(names[:LISTED])}{more}",)


def read_folder(folder: Path, modules: set[str]) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The exercise modules directly in `folder` (its exercises/ subfolder when it has one)."""
    if (folder / "exercises").is_dir():
        folder = folder / "exercises"
    files, skipped = {}, []
    for entry in sorted(folder.iterdir()):
        if entry.name not in modules:
            skipped.append(entry.name + "/" * entry.is_dir())
        elif entry.is_symlink() or not entry.is_file():
            skipped.append(f"{entry.name} (a link or not a file)")
        elif entry.stat().st_size > MAX_FILE_BYTES:
            skipped.append(f"{entry.name} (over {MAX_FILE_BYTES >> 20} MB)")
        else:
            files[entry.name] = entry.read_bytes()
    return files, left_out("the folder", skipped)


def member_problem(member: zipfile.ZipInfo, modules: set[str]) -> str:
    """Why a zip member is not taken ('' when it is)."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        return "an unsafe path"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "a link"
    if PurePosixPath(name).name not in modules:
        return "not an exercise module"
    if member.flag_bits & 0x1:
        return "encrypted"
    return f"over {MAX_FILE_BYTES >> 20} MB" if member.file_size > MAX_FILE_BYTES else ""


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes | str:
    """A member's bytes, or why they cannot be read (a size that lied, a bad checksum, a compression unknown)."""
    try:
        with archive.open(member) as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        return f"unreadable: {error}"
    return f"over {MAX_FILE_BYTES >> 20} MB" if len(data) > MAX_FILE_BYTES else data


def read_zip(path: Path, modules: set[str]) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The exercise modules anywhere in the zip; of two with one name, the one nearer the top. A zip
    that cannot be read raises zipfile.BadZipFile."""
    with zipfile.ZipFile(path) as archive:
        members = [member for member in archive.infolist() if not member.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise zipfile.BadZipFile(f"{len(members)} files, more than the {MAX_ZIP_MEMBERS} a submission may hold")
        files, skipped = {}, []
        for member in sorted(members, key=lambda m: (m.filename.count("/"), m.filename)):
            base = PurePosixPath(member.filename.replace("\\", "/")).name
            problem = member_problem(member, modules) or ("a second " + base if base in files else "")
            data = read_member(archive, member) if not problem else problem
            if isinstance(data, bytes):
                files[base] = data
            else:
                skipped.append(f"{member.filename} ({data})")
    return files, left_out("the zip", skipped)


def read_submission(path: Path, modules: set[str]) -> Submission:
    """A student's files; `modules` are the file names wanted (ch00_warmup.py, ...)."""
    name = student_name(path)
    try:
        if path.is_dir():
            return Submission(name, path, *read_folder(path, modules))
        if path.is_file() and path.suffix.lower() == ".zip":
            return Submission(name, path, *read_zip(path, modules))
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        return Submission(name, path, {}, problem=f"bad zip: {error}")
    except OSError as error:
        return Submission(name, path, {}, problem=f"unreadable: {error.strerror or error}")
    what = "not a folder or a .zip file" if path.exists() else "not found"
    return Submission(name, path, {}, problem=f"{what}: {path}")

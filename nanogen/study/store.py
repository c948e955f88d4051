"""``study.jsonl``: the study's answers, one JSON object a line, appended as they come.

Each answer is written the moment it arrives, as one ``os.write`` of a whole line to a file
opened with ``O_APPEND`` and fsync'ed before the server replies: an answer the page saw
accepted is on disk, whatever happens to the server afterwards.  ``O_APPEND`` makes the kernel
place every write at the current end of the file, so a second server (another process) on the
same file adds its lines after the first one's instead of overwriting them; an advisory lock
(``flock``, where the platform has it) keeps two writers from interleaving the repair below.

A line cut short (a crash or a full disk in the middle of a write) would glue itself to the
next answer; so before writing, the writer looks at the file's last byte and starts with a
newline if it is not one.  Readers (:func:`read_answers`) skip a line that is not a complete
answer and count it, so one damaged line never costs the others.
"""
from __future__ import annotations

import json
import os
import threading

from ..serialization import _fsync_directory

try:                                    # POSIX; elsewhere O_APPEND alone orders the writers
    import fcntl
except ImportError:                     # pragma: no cover - Windows
    fcntl = None

__all__ = ["AnswerStore", "read_answers", "ANSWER_FIELDS"]

# what every answer line holds (more keys are allowed: the time it took, the server, ...)
ANSWER_FIELDS = {"source": str, "truth": str, "answer": str}


class AnswerStore:
    """Appends answers to the JSON-lines file at ``path`` (created when the first one comes)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._lock = threading.Lock()        # the server's threads, one write at a time

    def append(self, record: dict) -> None:
        """Write ``record`` as one line at the end of the file and fsync it."""
        line = (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")
        with self._lock:
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)          # released by os.close
                size = os.fstat(fd).st_size
                if size and _last_byte(self.path, size) != b"\n":
                    line = b"\n" + line                     # close a line cut short
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"{self.path}: only {written} of {len(line)} bytes of the "
                                  f"answer were written (disk full?)")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_directory(os.path.dirname(os.path.abspath(self.path)))

    def read(self) -> tuple[list, int]:
        """See :func:`read_answers`."""
        return read_answers(self.path)


def _last_byte(path, size) -> bytes:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1)


def read_answers(path) -> tuple[list, int]:
    """``(answers, damaged)``: every complete answer line of ``path`` as a dict, in order, and
    the number of lines skipped because they are not one (cut short, not JSON, a field missing
    or of the wrong type).  A file that does not exist yet holds no answers."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    answers, damaged = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:                  # not JSON, or not UTF-8
            damaged += 1
            continue
        if isinstance(record, dict) and all(isinstance(record.get(key), kind)
                                            for key, kind in ANSWER_FIELDS.items()):
            answers.append(record)
        else:
            damaged += 1
    return answers, damaged

"""The training log: ``log.jsonl``, one JSON object per logged step, and ``config.json``.

A line reads ``{"step": 500, "loss": 93.1, "kl": 20.4, "seconds": 61.2}``: the step, the numbers
the model's ``training_step`` returned, and the cumulative training time.  Lines are appended as
training goes, so the file can be read (``tail -f``, pandas) while a run is going on.

A resumed run restarts from its checkpoint's step, which may be older than the last logged
line; :meth:`TrainingLog.keep_until` first drops the lines after that step (rewriting the file
atomically), so the resumed run's lines follow on without duplicates.  A line cut short by a
crash mid-append is dropped the same way.
"""
from __future__ import annotations

import json
import os

from ..utils import atomic_write

__all__ = ["TrainingLog", "write_json"]


def write_json(path, obj) -> str:
    """Write ``obj`` as indented JSON to ``path``, atomically; a clear error if it is not JSON."""
    try:
        text = json.dumps(obj, indent=2) + "\n"
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot write {os.fspath(path)}: the value is not JSON-serialisable "
                        f"({e})") from None
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class TrainingLog:
    """The JSON-lines log of a run at ``path`` (the file need not exist yet)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def append(self, record: dict):
        """Add one line; flushed at once, so a crash loses at most the line being written."""
        line = json.dumps(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def records(self) -> list:
        """Every complete line as a dict, in order ([] if there is no log yet).

        A last line without its newline (a crash mid-append) is ignored; any other unreadable
        line raises ``ValueError`` naming the file and line number.
        """
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        complete = lines[:-1]                 # the piece after the last newline is incomplete
        records = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}, line {number}: not a JSON log record "
                                 f"({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError(f"{self.path}, line {number}: a log record must be a JSON "
                                 f"object with an integer 'step', got {line[:80]!r}")
            records.append(record)
        return records

    def keep_until(self, step: int):
        """Drop the records after ``step`` (all of them for step 0), rewriting atomically."""
        if not os.path.exists(self.path):
            return
        kept = [r for r in self.records() if r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))

    def last(self) -> dict:
        """The latest record, or ``{}``."""
        records = self.records()
        return records[-1] if records else {}

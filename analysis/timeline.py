"""Reading a run's ``timeline.jsonl`` (the launcher's event log; the launcher writes it)."""

from __future__ import annotations

import json
from pathlib import Path


def read_timeline(path: Path) -> list[dict]:
    """The events of a ``timeline.jsonl`` ([] when it does not exist); a torn last line is skipped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events

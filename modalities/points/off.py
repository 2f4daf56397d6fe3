"""Checking that an OFF mesh holds what its header announces.

An OFF file is a header line ("OFF", or "COFF" with colours), a counts line ``V F E`` (ModelNet writes
it on the header line itself, "OFF490 518 0"), then V vertex lines and F face lines ``k i1 ... ik``;
``#`` starts a comment (https://segeval.cs.princeton.edu/public/off_format.html). trimesh trusts the
counts and reads a file cut short, or with counts that are too large, as part of a surface without a
word; this check counts the lines themselves so such a file is refused, naming it.
"""
from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^\s*C?OFF\s*(.*)$", re.IGNORECASE)


def check_off_counts(path: Path) -> None:
    """ValueError naming ``path`` when its line counts or a face line contradict the header."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    header = _HEADER.match(lines[0]) if lines else None
    if header is None:
        raise ValueError(f"{path}: not an OFF file (no OFF header line)")
    body = lines[1:]
    counts_line = header.group(1) or (body.pop(0) if body else "")
    try:
        vertices, faces = (int(v) for v in counts_line.split()[:2])
    except ValueError:
        raise ValueError(f"{path}: OFF counts line {counts_line!r} does not start with two integers") from None
    if vertices < 0 or faces < 0:
        raise ValueError(f"{path}: OFF header announces negative counts ({vertices} vertices, {faces} faces)")
    if len(body) != vertices + faces:
        kind = "truncated, or its header's counts are too large" if len(body) < vertices + faces else \
            "its header's counts are too small"
        raise ValueError(f"{path}: OFF header announces {vertices} vertices and {faces} faces "
                         f"({vertices + faces} lines), the file holds {len(body)} ({kind})")
    for number, line in enumerate(body[vertices:]):
        values = line.split()
        if not values[0].isdigit() or len(values) < 1 + int(values[0]):
            raise ValueError(f"{path}: OFF face {number} is incomplete: {line!r} (a file cut short?)")

"""Reporting the files a dataset skips under ``data.skip_bad_files = true``, the same way in every modality.

Each skipped file gets one line naming it and the reason, and the load ends with one line counting them.
The lines go to the ``multidiff.data`` logger at WARNING level: with no logging configured Python prints
the bare message on stderr, so a command-line user reads plain lines (not ``warnings.warn`` reprs), and a
program can route or silence them like any other log record.
"""
from __future__ import annotations

import logging

LOG = logging.getLogger("multidiff.data")


def report_skip(reason: str) -> None:
    """One line for one skipped file; ``reason`` names the file and what is wrong with it."""
    LOG.warning("skipped: %s", str(reason).splitlines()[0] if str(reason) else "unreadable file")


def report_count(skipped: int, total: int, what: str, where) -> None:
    """The closing line: how many of the ``total`` files of ``what`` under ``where`` were skipped."""
    if skipped:
        LOG.warning("skipped %d of %d %s under %s (data.skip_bad_files = true)", skipped, total, what, where)

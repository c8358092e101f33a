"""Trunkline's store: one repository interface, a backend per URL scheme."""

from __future__ import annotations

from pathlib import Path

from trunkline.store.repository import Batch, Claim, ClaimConflict, Cursor, Repository

__all__ = ["Batch", "Claim", "ClaimConflict", "Cursor", "Repository", "open_store"]


def open_store(url: str) -> Repository:
    """A repository for `url`: `sqlite:///abs/path.db`, `sqlite://:memory:` or a file path."""
    from trunkline.store.sqlite import SqliteRepository

    if url.startswith("sqlite://"):
        target = url.removeprefix("sqlite://")
        return SqliteRepository(target if target == ":memory:" else Path(target))
    if "://" in url:
        raise ValueError(f"unsupported store URL {url!r}: use sqlite:///path")
    return SqliteRepository(Path(url))

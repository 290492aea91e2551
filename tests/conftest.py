"""Shared fixtures: where the real annotation files are, temporary work dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ANNOTATIONS = Path(
    os.environ.get("FPAR_SHARED_ANNOTATIONS", REPO.parent / "shared" / "data" / "annotations")
)


@pytest.fixture(scope="session")
def real_annotations() -> Path:
    """The folder of the real EPIC-55, EPIC-100 and EGTEA+ annotation files (read only)."""
    if not SHARED_ANNOTATIONS.is_dir():
        pytest.fail(f"real annotation files not found at {SHARED_ANNOTATIONS}")
    return SHARED_ANNOTATIONS

"""Served workers keep freed heap memory for the next request (glibc's `mallopt`)."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from genai_api import malloc


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_thresholds_are_set_on_glibc() -> None:
    assert malloc.keep_freed_memory() is True


def test_a_libc_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert malloc.keep_freed_memory() is False

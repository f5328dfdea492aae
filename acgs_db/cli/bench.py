"""Load and benchmark commands: ``load`` and the ``bench`` group."""

from __future__ import annotations

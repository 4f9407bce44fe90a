"""Baselines scored in the same harness as the project's methods."""

from .prototype import PrototypeTagger

__all__ = ["PrototypeTagger"]

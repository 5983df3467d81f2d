"""Operators: thin wrappers that turn properties into core calls and report errors."""

from . import system

CLASSES = (*system.CLASSES,)

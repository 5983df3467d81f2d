"""Operators: thin wrappers that turn properties into core calls and report errors."""

from . import generate, system

CLASSES = (
    *generate.CLASSES,
    *system.CLASSES,
)

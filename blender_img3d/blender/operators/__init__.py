"""Operators: thin wrappers that turn properties into core calls and report errors."""

from . import dependencies, export, generate, mesh_tools, models, remote, results, system

CLASSES = (
    *generate.CLASSES,
    *results.CLASSES,
    *system.CLASSES,
    *dependencies.CLASSES,
    *models.CLASSES,
    *export.CLASSES,
    *mesh_tools.CLASSES,
    *remote.CLASSES,
)

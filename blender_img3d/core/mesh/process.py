"""The processing chain: cleanup → repair → decimate → smooth → frame → placement.

:func:`process_mesh` runs the steps :class:`~..settings.MeshSettings` asks for
on a raw mesh, checking the input once, and returns the mesh with per-step
timings and the notes a report shows (what was removed, what stayed open).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..progress import Phase, ProgressCallback, raise_if_cancelled, report
from ..settings import MeshSettings
from .cleanup import cleanup_with_notes
from .decimate import decimate_with_note
from .meshdata import MeshData, plural
from .placement import origin_to_bottom_center, scale_to_size, shap_e_to_blender
from .repair import RepairReport, repair
from .smooth import smooth
from .topology import check_mesh

log = logging.getLogger(__name__)


@dataclass
class ProcessedMesh:
    """The processed mesh, seconds spent per step, and human-readable notes for the report."""

    mesh: MeshData
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    repair: Optional[RepairReport] = None
    # The vertices after the geometry steps, in the input's frame (before the frame
    # change and placement), row for row with ``mesh.vertices``: where a decoder's
    # colour head is queried to colour the final mesh (see core.pipeline).
    source_vertices: Optional[np.ndarray] = None


def process_mesh(
    mesh: MeshData,
    settings: Optional[MeshSettings] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[threading.Event] = None,
    *,
    from_shap_e: bool = True,
) -> ProcessedMesh:
    """Run the configured chain on a raw mesh in Shap-E's frame; return it in Blender's frame.

    With ``settings.enabled`` off only the frame change and placement run.
    ``from_shap_e=False`` is for meshes that are already in Blender's frame
    and placed (a file being converted): no frame change, no re-placement
    (scaling to ``settings.size`` still applies).
    Timings (seconds per step) and notes (what was removed, what could not be
    closed) come back with the mesh for the metrics record.
    """
    settings = settings or MeshSettings()
    check_mesh(mesh, "process")
    timings: dict[str, float] = {}
    notes: list[str] = []
    repair_report: Optional[RepairReport] = None
    total = 6
    step = 0

    def done(name: str, started: float) -> None:
        nonlocal step
        timings[name] = time.perf_counter() - started
        step += 1
        report(progress, Phase.PROCESSING, step, total)
        raise_if_cancelled(cancel)

    report(progress, Phase.PROCESSING, 0, total)
    raise_if_cancelled(cancel)
    if settings.enabled:
        started = time.perf_counter()
        mesh, cleanup_notes = cleanup_with_notes.unchecked(mesh, settings)
        notes += cleanup_notes
        done("cleanup", started)

        if settings.repair:
            started = time.perf_counter()
            mesh, repair_report = repair.unchecked(mesh)
            if repair_report.holes_filled:
                notes.append(f"closed {plural(repair_report.holes_filled, 'hole')}")
            notes += repair_report.notes
            done("repair", started)

        if settings.target_faces and mesh.face_count > settings.target_faces:
            started = time.perf_counter()
            mesh, note = decimate_with_note.unchecked(mesh, target_faces=settings.target_faces)
            notes.append(note)
            done("decimate", started)

        if settings.smooth_iterations:
            started = time.perf_counter()
            mesh = smooth.unchecked(mesh, settings.smooth_iterations)
            done("smooth", started)

    source_vertices = mesh.vertices
    started = time.perf_counter()
    if from_shap_e:
        mesh = shap_e_to_blender.unchecked(mesh)
    done("orient", started)

    started = time.perf_counter()
    if settings.size is not None:
        mesh = scale_to_size.unchecked(mesh, settings.size)
    if from_shap_e:
        mesh = origin_to_bottom_center.unchecked(mesh)
    timings["place"] = time.perf_counter() - started
    report(progress, Phase.PROCESSING, total, total)
    for note in notes:
        log.info("mesh: %s", note)
    return ProcessedMesh(
        mesh=mesh,
        timings=timings,
        notes=notes,
        repair=repair_report,
        source_vertices=source_vertices,
    )

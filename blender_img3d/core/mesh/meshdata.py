"""The triangle mesh as plain arrays: what decode produces and everything else consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..serialize import EqualByDict

# What a part without vertex colours gets when joined with coloured ones: Blender's
# default material grey, rather than dropping every part's colours.
MISSING_COLOR = 0.8


@dataclass(eq=False)
class MeshData(EqualByDict):
    """A triangle mesh in the product's canonical frame: Blender's (right-handed, Z up).

    ``vertices`` is float (N, 3), ``faces`` int (M, 3) indices into it with
    counter-clockwise winding seen from outside, ``colors`` optional float (N, 3)
    sRGB-encoded values in [0, 1] (what Shap-E predicts), ``name`` a human label
    (image file stem or prompt) and ``metadata`` JSON-serialisable generation facts.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: Optional[np.ndarray] = None
    name: str = "img3d"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(-1, 3)
            if len(self.colors) != len(self.vertices):
                raise ValueError(
                    f"colors has {len(self.colors)} rows for {len(self.vertices)} vertices"
                )

    def to_dict(self) -> dict[str, Any]:
        """Arrays and labels as plain data (arrays stay numpy; see ``core.serialize``)."""
        return {
            "vertices": self.vertices,
            "faces": self.faces,
            "colors": self.colors,
            "name": self.name,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MeshData":
        return cls(
            vertices=np.asarray(data["vertices"]),
            faces=np.asarray(data["faces"]),
            colors=None if data.get("colors") is None else np.asarray(data["colors"]),
            name=data.get("name", "img3d"),
            metadata=dict(data.get("metadata") or {}),
        )

    def replaced(
        self,
        vertices: Optional[np.ndarray] = None,
        faces: Optional[np.ndarray] = None,
        colors: Optional[np.ndarray] = None,
    ) -> "MeshData":
        """A new mesh with the arrays given replaced, sharing name and a copy of the metadata."""
        return MeshData(
            self.vertices if vertices is None else vertices,
            self.faces if faces is None else faces,
            self.colors if colors is None else colors,
            name=self.name,
            metadata=dict(self.metadata),
        )

    @property
    def vertex_count(self) -> int:
        return int(len(self.vertices))

    @property
    def face_count(self) -> int:
        return int(len(self.faces))


def join_meshes(parts: Sequence[MeshData], name: Optional[str] = None) -> MeshData:
    """One mesh holding every part (faces renumbered; metadata of the first part).

    Colours are kept when any part has them; parts without get :data:`MISSING_COLOR`.
    """
    if not parts:
        raise ValueError("join_meshes needs at least one mesh")
    first = parts[0]
    name = first.name if name is None else name
    if len(parts) == 1:
        return MeshData(first.vertices, first.faces, first.colors, name, dict(first.metadata))
    offsets = np.cumsum([0] + [part.vertex_count for part in parts[:-1]])
    colors = None
    if any(part.colors is not None for part in parts):
        colors = np.concatenate(
            [
                part.colors
                if part.colors is not None
                else np.full((part.vertex_count, 3), MISSING_COLOR, dtype=np.float32)
                for part in parts
            ]
        )
    return MeshData(
        np.concatenate([part.vertices for part in parts]),
        np.concatenate([part.faces + offset for part, offset in zip(parts, offsets)]),
        colors,
        name=name,
        metadata=dict(first.metadata),
    )


def plural(n: int, noun: str) -> str:
    """``"1 hole"``, ``"3 holes"``: counts in the notes a processing step leaves."""
    return f"{n} {noun}{'' if n == 1 else 's'}"

"""The triangle mesh as plain arrays: what decode produces and everything else consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..serialize import EqualByDict


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

    @property
    def vertex_count(self) -> int:
        return int(len(self.vertices))

    @property
    def face_count(self) -> int:
        return int(len(self.faces))

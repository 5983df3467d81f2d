"""The triangle mesh as plain arrays: what decode produces and everything else consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class MeshData:
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

    @property
    def vertex_count(self) -> int:
        return int(len(self.vertices))

    @property
    def face_count(self) -> int:
        return int(len(self.faces))

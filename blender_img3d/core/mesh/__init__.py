"""Triangle meshes as numpy arrays: the data, its topology, processing, metrics, reading.

- ``meshdata``: ``MeshData`` (vertices, faces, optional vertex colours).
- ``topology``: edge tables, components, closedness, enclosure: the kernel the
  processing steps and the STEP B-rep builder share.
- ``process``: cleanup, repair, decimation, smoothing, placement, chained by
  ``process_mesh`` from ``MeshSettings``.
- ``metrics``: quality numbers for reports (watertight, genus, pieces, ...).
- ``reading``: OBJ/GLB/PLY/STL files into ``MeshData`` (``export --in``).
- ``bake``: vertex colours → a UV atlas (xatlas, inside the function) and a
  rasterised base-colour texture, for the GLB and OBJ writers.

May import: ``..errors``, ``..progress``, ``..settings``; numpy/scipy freely,
trimesh and fast-simplification only inside functions. Never the exporters.
"""

"""The Blender layer: everything that imports bpy lives here, and nothing else.

Thin by design: properties, preferences, operators and panels convert Blender
state into a core ``Request``, run it through the core's backend, and put the
result in the scene. Logic worth testing without Blender belongs in ``core/``.

May import: ``bpy`` (and Blender's bundled modules), ``..core``. Never ``..cli``.
Registration lives in ``addon.py``; the package's top-level ``register()``
imports it lazily so importing ``blender_img3d`` stays cheap outside Blender.
"""

"""The machine the extension runs on: dependencies, their install, models on disk, system check.

- ``requirements``: the one pinned list of runtime and dev packages.
- ``deps``: which of them import here, and the typed error when one is missing.
- ``vendor``: installing them into Blender's per-extension folder with pip.
- ``model_store``: where weights live, what is there, downloads with progress.
- ``sysinfo``: the report behind ``info`` and the preferences' system check.

May import: the rest of ``core``; nothing from ``..blender`` or ``..cli``.
"""

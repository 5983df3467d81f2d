"""Farm batches: thousands of images or prompts in one resumable job, here or on a Ray cluster.

What it holds:

- ``manifest``: reading a batch manifest (a folder of images, a prompts text
  file, CSV or JSONL with per-item overrides), every bad row reported up front;
- ``plan``: items with their output folder ``DIR/<name>/`` and settings hash,
  and what a previous run already finished;
- ``worker``: the worker side, the same in this process and in a Ray actor:
  groups of items through ``core.pipeline`` with the model kept warm;
- ``runner``: the driver: plans, feeds an engine, records completion (each
  item's ``report.json``, the job's ``batch.json``), stops cleanly on cancel;
- ``local`` and ``ray_engine``: the two engines.

What it may import: the rest of ``core`` (never ``bpy``, ``blender/`` or
``cli/``). Heavy libraries (torch through the pipeline, ``ray``) are imported
inside functions, so ``import blender_img3d.core.farm`` stays cheap.
"""

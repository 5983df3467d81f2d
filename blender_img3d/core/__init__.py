"""Pure-Python core of blender_img3d: never imports bpy (a test enforces it).

Heavy libraries (torch, diffusers, transformers, trimesh, ...) are imported
inside the functions that need them, so importing any core module is cheap.
"""

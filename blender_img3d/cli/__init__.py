"""The command line outside Blender: ``python -m blender_img3d <command>``.

``main.py`` parses arguments and turns them into a core ``Request``;
``progress.py`` draws the terminal progress bar; ``interrupts.py`` holds what a
signal ends a command with, light enough for ``__main__`` to load first. May
import ``..core`` only; never bpy or ``..blender``.
"""

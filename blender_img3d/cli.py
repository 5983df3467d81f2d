"""Command line: ``python -m blender_img3d info|generate|decode|export``.

Kept import-light: only argparse runs before a subcommand is chosen, so
``--help`` is instant; each subcommand imports what it needs. Errors print one
line (``error: ...``) and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Optional, Sequence

from . import __version__
from .core.errors import Img3DError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, packages and devices."""
    from .core import sysinfo

    entries = sysinfo.collect(include_devices=not args.no_devices)
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=2))
        return EXIT_OK
    width = max(len(entry.name) for entry in entries)
    for entry in entries:
        mark = "ok " if entry.ok else "!! "
        line = f"{mark}{entry.name:<{width}}  {entry.detail}"
        if entry.advice:
            line += f"  -> {entry.advice}"
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m blender_img3d",
        description="Image or text to a coloured 3D mesh with Shap-E, outside Blender.",
    )
    parser.add_argument("--version", action="version", version=f"blender_img3d {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="print versions, packages and devices")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--no-devices", action="store_true", help="don't import torch")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except Img3DError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_CANCELLED

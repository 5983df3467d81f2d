"""``python -m blender_img3d batch MANIFEST --out-dir DIR``: many items, one warm model, resumable.

The generation, model, decoding, mesh and output options are generate's own
(``cli/main.py`` defines them once); batch adds the manifest, the output
folder, formats, the engine and the failure policy. Ctrl-C stops after
the current step with everything finished so far intact; a second Ctrl-C
aborts at once (atomic writes still leave no partial file).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from ..core import settings as defaults
from ..core.errors import CancelledError, ConfigError

HELP = "many images or prompts in one resumable job (here or on Ray)"
DESCRIPTION = (
    "Make every item of MANIFEST into DIR/<name>/: a folder of images, a .txt of prompts (one "
    "per line), or a .csv/.jsonl with per-item image or prompt, name, seed, batch and setting "
    "overrides. A rerun skips finished items."
)


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only ``batch`` has; ``cli/main.py`` adds generate's shared ones."""
    parser.add_argument("manifest", type=Path, metavar="MANIFEST")
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=defaults.EXPORT_FORMATS,
        metavar="FMT",
        help=f"{', '.join(defaults.EXPORT_FORMATS)}; repeat for several (default glb)",
    )
    job = parser.add_argument_group("job")
    job.add_argument("--force", action="store_true", help="redo items that are already finished")
    job.add_argument(
        "--max-failures", type=int, metavar="N", help="stop after N failed items (default: never)"
    )
    job.add_argument(
        "--group",
        type=int,
        metavar="N",
        help=f"variants per shared prior call, 1 to {defaults.MAX_BATCH} "
        "(default: what the device's memory allows; 1 turns grouping off)",
    )
    job.add_argument("--engine", choices=("local", "ray"), default="local")
    job.add_argument(
        "--address", metavar="ADDR", help="Ray cluster: 'auto' or the head's host:port"
    )
    job.add_argument(
        "--workers", type=int, metavar="N", help="Ray actors (default: one per GPU or CPU)"
    )
    job.add_argument(
        "--cpus-per-worker", type=int, default=1, metavar="N", help="CPU cores per Ray actor"
    )


def _engine(args: argparse.Namespace):
    if args.engine == "ray":
        from ..core.farm.ray_engine import RayEngine

        return RayEngine(args.address, workers=args.workers, cpus_per_worker=args.cpus_per_worker)
    if args.address is not None:
        raise ConfigError("--address needs --engine ray.")
    from ..core.farm.runner import LocalEngine

    return LocalEngine()


class _Interrupts:
    """First Ctrl-C: set the cancel flag (stop cleanly). Second: abort now."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.previous: Any = None

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.cancel.set()
        print(
            "\nstopping: finished items are kept (Ctrl-C again to abort now)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def run(args: argparse.Namespace, base: defaults.Request) -> Optional[Any]:
    """Run the batch, print its outcome; return the summary, or None when cancelled."""
    from ..core.farm.runner import STOPPED, run_batch
    from .progress import ProgressBar

    base.validate_settings()
    defaults.check_bake(base.export, args.formats or ["glb"])
    cancel = threading.Event()
    bar = ProgressBar(quiet=args.quiet)
    summary = None
    with _Interrupts(cancel):
        engine = _engine(args)
        try:
            summary = run_batch(
                args.manifest,
                args.out_dir,
                base,
                args.formats or ["glb"],
                engine=engine,
                force=args.force,
                max_failures=args.max_failures,
                group_rows=args.group,
                progress=bar,
                cancel=cancel,
            )
        except CancelledError:
            pass
        finally:
            bar.close()
            engine.close()  # again is harmless; this covers a batch refused before it began
    if summary is None:
        print(f"cancelled: finished items are in {args.out_dir}; run the same command to go on")
        return None
    for name, item in summary.items.items():
        if item.get("note"):
            print(f"{name}: {item['note']}")
    for failure in summary.failures:
        print(f"failed {failure['name']} ({failure['where']}): {failure['message']}")
    print(
        f"{summary.done} of {summary.total} items done ({summary.made} made, "
        f"{summary.skipped} already finished), {len(summary.failures)} failed "
        f"in {summary.seconds:.1f} s; summary in {Path(args.out_dir) / 'batch.json'}"
    )
    if summary.status == STOPPED:
        print(f"stopped after {len(summary.failures)} failures (--max-failures)")
    return summary

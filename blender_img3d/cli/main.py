"""Command line: ``python -m blender_img3d info|generate|decode|export|batch|serve``.

Kept import-light: only argparse runs before a subcommand is chosen, so
``--help`` is instant; each subcommand imports what it needs. Errors print one
line (``error: ...``) and exit non-zero; ``--debug`` shows the traceback.

Exit codes: 0 done; 1 a typed error (the one line says what to do); 2 bad
arguments (argparse); 70 an internal error (a bug: one line, ``--debug`` for the
traceback); 130 interrupted (Ctrl-C, SIGINT) or cancelled; 143 terminated
(SIGTERM). An interrupt or termination unwinds like an error, so every
temporary file is removed and no output of the run is left half-written; a
second signal during that clean-up exits at once, after deleting them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from ..core import choices, exporters
from ..core import settings as defaults
from ..core.errors import CancelledError, ConfigError, ImageInputError, Img3DError
from ..core.exporters.units import UNITS
from ..core.version import __version__
from .interrupts import EXIT_CANCELLED, exit_code_for, stopped_line
from .serve import add_remote_options, add_serve_parser, remote_backend

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE


def cmd_info(args: argparse.Namespace) -> int:
    """Print versions, packages and devices."""
    from ..core.system import sysinfo

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


def _choices_help(options, default: str) -> str:
    """An option's help built from its closed set, so a new choice documents itself."""
    return "; ".join(f"{c.name}: {c.description}" for c in options) + f" (default {default})"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        metavar="DIR_OR_ID",
        help="local folder in diffusers layout or hub id "
        f"(default: {defaults.IMAGE_MODEL_ID} for images, {defaults.TEXT_MODEL_ID} for text)",
    )
    group.add_argument("--revision", help="hub revision (branch, tag or commit) to pin")
    group.add_argument("--cache-dir", help="hub cache folder (default: huggingface_hub's)")
    group.add_argument(
        "--allow-download", action="store_true", help="download the model if it isn't cached"
    )
    group.add_argument("--device", choices=[d for d in defaults.DEVICES if d != "auto"])
    group.add_argument("--dtype", choices=defaults.DTYPES, default="auto")


def _add_decode_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument(
        "--grid-size",
        type=int,
        default=defaults.DEFAULT_GRID_SIZE,
        metavar="N",
        help=f"marching-cubes grid (default {defaults.DEFAULT_GRID_SIZE})",
    )
    group.add_argument(
        "--query-batch",
        type=int,
        default=defaults.DEFAULT_QUERY_BATCH,
        metavar="N",
        help="SDF points per network call (lower it if memory runs out)",
    )
    group.add_argument(
        "--sdf-method",
        choices=defaults.SDF_METHODS,
        default=defaults.DEFAULT_SDF_METHOD,
        help=_choices_help(choices.SDF_METHODS, defaults.DEFAULT_SDF_METHOD),
    )


def _add_mesh_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("mesh processing")
    group.add_argument(
        "--target-faces",
        type=int,
        default=defaults.DEFAULT_TARGET_FACES,
        metavar="N",
        help=f"decimate to about N faces, 0 keeps all (default {defaults.DEFAULT_TARGET_FACES})",
    )
    group.add_argument(
        "--smooth",
        type=int,
        default=defaults.DEFAULT_SMOOTH_ITERATIONS,
        metavar="N",
        help="volume-preserving smoothing iterations (default 0: off)",
    )
    group.add_argument("--no-repair", action="store_true", help="don't close holes")
    group.add_argument(
        "--keep-components",
        type=int,
        default=defaults.DEFAULT_KEEP_COMPONENTS,
        metavar="N",
        help="keep only the N largest pieces (default 0: every part; specks under "
        f"{defaults.SPECK_AREA_FRACTION * 100:g} %% of the surface always go)",
    )
    group.add_argument("--size", type=float, metavar="L", help="scale so the longest side is L")
    group.add_argument(
        "--raw", action="store_true", help="skip cleanup/repair/decimation (orientation still)"
    )


def _add_output_options(
    parser: argparse.ArgumentParser, required: bool, per_file: bool = True
) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("output")
    if per_file:
        group.add_argument(
            "--out",
            action="append",
            type=Path,
            required=required,
            default=[],
            metavar="FILE",
            help=f"write FILE ({exporters.suffix_list()}); repeat for several formats",
        )
    group.add_argument(
        "--units",
        choices=tuple(UNITS),
        default=defaults.DEFAULT_UNITS,
        help=f"length unit of {exporters.unit_format_labels()} files; 1 Blender unit = 1 m "
        f"(default {defaults.DEFAULT_UNITS})",
    )
    group.add_argument(
        "--dxf-entity",
        choices=defaults.DXF_ENTITIES,
        default=defaults.DEFAULT_DXF_ENTITY,
        help=f"DXF entity (default {defaults.DEFAULT_DXF_ENTITY}, which almost every CAD "
        "program opens; mesh: one MESH entity for AutoCAD 2010+)",
    )
    group.add_argument(
        "--no-merge-coplanar",
        action="store_true",
        help="STEP: one face per triangle instead of merging coplanar triangles",
    )
    textured = exporters.texture_format_labels()
    group.add_argument(
        "--bake",
        action="store_true",
        help=f"bake the vertex colours into a UV texture for {textured} outputs (inside the "
        "GLB; a PNG named like the .mtl beside an OBJ), for engines and viewers that ignore "
        f"vertex colours; other formats are written as usual, and a bake none of the outputs "
        "can carry is an error",
    )
    group.add_argument(
        "--bake-size",
        type=int,
        metavar="N",
        help="with --bake: width and height of the baked texture in pixels, "
        f"{defaults.MIN_TEXTURE_SIZE} to {defaults.MAX_TEXTURE_SIZE} "
        f"(default {defaults.DEFAULT_TEXTURE_SIZE})",
    )
    if per_file:
        group.add_argument("--report", type=Path, metavar="FILE.json", help="write metrics as JSON")
        group.add_argument(
            "--name", help="object name in the files (default: image stem or prompt)"
        )
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    return group


def _add_sampling_options(parser: argparse.ArgumentParser, per_file: bool = True) -> None:
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, default=defaults.DEFAULT_STEPS, metavar="N")
    sampling.add_argument(
        "--guidance",
        type=float,
        metavar="G",
        help=f"default {defaults.DEFAULT_GUIDANCE_IMAGE} (image), "
        f"{defaults.DEFAULT_GUIDANCE_TEXT} (text)",
    )
    sampling.add_argument("--seed", type=int, default=defaults.DEFAULT_SEED, metavar="S")
    sampling.add_argument("--batch", type=int, default=1, metavar="N", help="variants in one pass")
    sampling.add_argument(
        "--schedule",
        choices=defaults.SCHEDULES,
        default=defaults.DEFAULT_SCHEDULE,
        help=_choices_help(choices.SCHEDULES, defaults.DEFAULT_SCHEDULE),
    )
    if per_file:
        sampling.add_argument("--latents-out", type=Path, metavar="FILE.npy", help="save latents")


def _add_image_options(parser: argparse.ArgumentParser, per_file: bool = True) -> None:
    image = parser.add_argument_group("image input")
    image.add_argument(
        "--no-preprocess",
        action="store_true",
        help="hand the image to the model's own processor unchanged",
    )
    image.add_argument(
        "--background",
        choices=defaults.BACKGROUNDS,
        default=defaults.DEFAULT_BACKGROUND,
        help=_choices_help(choices.BACKGROUNDS, defaults.DEFAULT_BACKGROUND),
    )
    image.add_argument(
        "--no-remove-background", action="store_true", help="the same as --background keep"
    )
    image.add_argument(
        "--border",
        type=float,
        default=defaults.DEFAULT_BORDER,
        metavar="F",
        help=f"margin around the object, fraction of the side (default {defaults.DEFAULT_BORDER})",
    )
    if per_file:
        image.add_argument(
            "--save-input", type=Path, metavar="PATH.png", help="write the image the model saw"
        )


def _image_settings(args: argparse.Namespace) -> defaults.ImageSettings:
    return defaults.ImageSettings(
        remove_background=not args.no_remove_background,
        border=args.border,
        background=args.background,
    )


def _export_settings(args: argparse.Namespace) -> defaults.ExportSettings:
    if args.bake_size is not None and not args.bake:
        raise ConfigError("--bake-size is the size of a baked texture: add --bake, or drop it.")
    return defaults.ExportSettings(
        dxf_entity=args.dxf_entity,
        merge_coplanar=not args.no_merge_coplanar,
        bake_texture=args.bake,
        texture_size=defaults.DEFAULT_TEXTURE_SIZE if args.bake_size is None else args.bake_size,
    )


def _mesh_settings(args: argparse.Namespace) -> defaults.MeshSettings:
    return defaults.MeshSettings(
        enabled=not args.raw,
        repair=not args.no_repair,
        keep_components=args.keep_components,
        target_faces=args.target_faces,
        smooth_iterations=args.smooth,
        size=args.size,
    )


def _generation_settings(args: argparse.Namespace) -> defaults.GenerationSettings:
    return defaults.GenerationSettings(
        model=args.model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        allow_download=args.allow_download,
        steps=getattr(args, "steps", defaults.DEFAULT_STEPS),
        guidance=getattr(args, "guidance", None),
        seed=getattr(args, "seed", defaults.DEFAULT_SEED),
        batch=getattr(args, "batch", 1),
        schedule=getattr(args, "schedule", defaults.DEFAULT_SCHEDULE),
        device=args.device or "auto",
        dtype=args.dtype,
        grid_size=getattr(args, "grid_size", defaults.DEFAULT_GRID_SIZE),
        query_batch=getattr(args, "query_batch", defaults.DEFAULT_QUERY_BATCH),
        sdf_method=getattr(args, "sdf_method", defaults.DEFAULT_SDF_METHOD),
    )


def _print_result(result, args: argparse.Namespace) -> None:
    for path in result.outputs:
        print(f"wrote {path}")
    if getattr(args, "latents_out", None) is not None:
        print(f"wrote {args.latents_out}")
    for mesh, metrics in zip(result.meshes, result.metrics):
        from ..core.mesh.metrics import closedness_label

        flags = closedness_label(metrics)
        counts = f"{metrics.get('faces')} faces, {metrics.get('vertices')} vertices"
        print(f"{mesh.name}: {counts}, {flags}")
    for note in result.notes:
        print(f"note: {note}")
    if args.report is not None:
        print(f"wrote {args.report}")


def _run_with_progress(args: argparse.Namespace, work) -> int:
    from .progress import ProgressBar

    bar = ProgressBar(quiet=args.quiet)
    try:
        result = work(bar)
    finally:
        bar.close()
    _print_result(result, args)
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """Image or prompt → mesh files, through the backend seam like every other entry point."""
    from ..core.outputs import plan_for_request

    request = defaults.Request(
        image=args.image,
        prompt=args.prompt,
        name=args.name,
        preprocess=not args.no_preprocess,
        image_settings=_image_settings(args),
        generation=_generation_settings(args),
        mesh=_mesh_settings(args),
        outputs=list(args.out),
        latents_out=args.latents_out,
        save_input=args.save_input,
        report_path=args.report,
        units=args.units,
        export=_export_settings(args),
    )
    # Every output checked before the image is read or a model loaded.
    plan_for_request(request)
    if args.image is not None and not Path(args.image).is_file():
        raise ImageInputError(f"No image file at {args.image}: check the path.")
    backend = remote_backend(args)
    return _run_with_progress(args, lambda bar: backend.submit(request, progress=bar))


def cmd_decode(args: argparse.Namespace) -> int:
    """Saved latents → mesh files (e.g. at another grid size)."""
    from ..core import pipeline

    request = defaults.Request(
        name=args.name,
        generation=_generation_settings(args),
        mesh=_mesh_settings(args),
        outputs=list(args.out),
        report_path=args.report,
        units=args.units,
        export=_export_settings(args),
    )
    request.validate_settings()
    return _run_with_progress(
        args, lambda bar: pipeline.decode_saved(args.latents, request, progress=bar)
    )


def cmd_export(args: argparse.Namespace) -> int:
    """Mesh file → other formats (optionally cleaned/decimated)."""
    from ..core import pipeline

    request = defaults.Request(
        name=args.name,
        mesh=_mesh_settings(args),
        outputs=list(args.out),
        report_path=args.report,
        units=args.units,
        export=_export_settings(args),
    )
    request.mesh.enabled = args.process
    request.validate_settings()
    from ..core.outputs import plan_for_request

    plan_for_request(request, batch=1, inputs=[args.input])
    return _run_with_progress(
        args,
        lambda bar: pipeline.convert_mesh_file(
            args.input, request, progress=bar, up_axis=args.up_axis
        ),
    )


def cmd_batch(args: argparse.Namespace) -> int:
    """Many images or prompts → one folder per item (cli/batch.py); resumable."""
    from . import batch

    base = defaults.Request(
        preprocess=not args.no_preprocess,
        image_settings=_image_settings(args),
        generation=_generation_settings(args),
        mesh=_mesh_settings(args),
        units=args.units,
        export=_export_settings(args),
    )
    summary = batch.run(args, base)
    if summary is None:
        return EXIT_CANCELLED
    return EXIT_ERROR if summary.failures else EXIT_OK


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

    gen = sub.add_parser(
        "generate",
        help="image or text prompt to mesh files",
        description="Generate a coloured mesh from a picture (--image) or a prompt (--prompt).",
    )
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="PATH", help="picture of a single object")
    source.add_argument("--prompt", metavar="TEXT", help="what to generate, e.g. 'a red chair'")
    _add_sampling_options(gen)
    _add_image_options(gen)
    _add_model_options(gen)
    _add_decode_options(gen)
    _add_mesh_options(gen)
    _add_output_options(gen, required=True)
    add_remote_options(gen)
    gen.set_defaults(func=cmd_generate)

    dec = sub.add_parser(
        "decode",
        help="saved latents to mesh files",
        description="Decode latents saved with --latents-out again, e.g. at another grid size.",
    )
    dec.add_argument("--latents", type=Path, required=True, metavar="FILE.npy")
    _add_model_options(dec)
    _add_decode_options(dec)
    _add_mesh_options(dec)
    _add_output_options(dec, required=True)
    dec.set_defaults(func=cmd_decode)

    exp = sub.add_parser(
        "export",
        help=f"convert a mesh file to {'/'.join(n.upper() for n in exporters.FORMATS)}",
        description="Read a mesh (.glb .gltf .obj .ply .stl) and write other formats.",
    )
    exp.add_argument("--in", dest="input", type=Path, required=True, metavar="MESH")
    exp.add_argument(
        "--process", action="store_true", help="also clean, repair and decimate (see below)"
    )
    exp.add_argument(
        "--up-axis",
        choices=("Y", "Z"),
        help="up axis of an OBJ/PLY/STL input (default: Y for OBJ, Z for PLY/STL)",
    )
    _add_mesh_options(exp)
    _add_output_options(exp, required=True)
    exp.set_defaults(func=cmd_export)

    from . import batch

    bat = sub.add_parser("batch", help=batch.HELP, description=batch.DESCRIPTION)
    batch.add_batch_arguments(bat)
    _add_sampling_options(bat, per_file=False)
    _add_image_options(bat, per_file=False)
    _add_model_options(bat)
    _add_decode_options(bat)
    _add_mesh_options(bat)
    _add_output_options(bat, required=False, per_file=False)
    bat.set_defaults(func=cmd_batch)
    add_serve_parser(sub, _add_model_options)
    return parser


class _Interrupted(KeyboardInterrupt):
    """A signal turned into an exception, so ``finally`` blocks and staged writes clean up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # signals taken during the current command


def _on_first_signal(signum: int, frame: Any) -> None:
    # Further signals mean "stop now": no more unwinding, just delete the temporaries.
    for other in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(other) == _on_first_signal:  # not one the user had ignored
            signal.signal(other, _on_second_signal)
    _received.append(signum)
    raise _Interrupted(signum)


def _on_second_signal(signum: int, frame: Any) -> None:
    from ..core.exporters.atomic import remove_temporary_files

    remove_temporary_files()
    os._exit(exit_code_for(signum))


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """SIGINT and SIGTERM raise inside the main thread for the time of one command.

    A signal the process inherited as ignored (``cmd &`` in a script ignores SIGINT) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook

    def quiet_hook(unraisable: Any) -> None:
        # The signal's exception landed where Python can't raise it (a weakref or GC
        # callback) and is dropped; main() still reports the interrupt from _received.
        if not isinstance(unraisable.exc_value, _Interrupted):
            previous_hook(unraisable)

    _received.clear()
    sys.unraisablehook = quiet_hook
    for sig, handler in previous.items():
        if handler != signal.SIG_IGN:
            signal.signal(sig, _on_first_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; always returns an exit code (see the module docstring)."""
    try:
        with _signals_unwind():
            code = _main(argv)
        if not _received:
            return code
        signum = _received[0]  # taken, but its exception was swallowed on the way
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", signal.SIGINT)
    with contextlib.suppress(Exception, KeyboardInterrupt):
        print(stopped_line(signum), file=sys.stderr)
    return exit_code_for(signum)


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CancelledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except Img3DError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line, not a traceback
        if args.debug:
            raise
        log.debug("internal error", exc_info=True)
        print(
            f"error: internal error ({type(exc).__name__}: {exc}); run again with --debug for "
            "the traceback and please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL

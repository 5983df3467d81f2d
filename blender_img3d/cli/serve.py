"""``serve`` (a GPU box answering jobs over HTTP) and ``generate --server`` (sending one there).

The model options are ``generate``'s own (``main`` hands its option builder
in); ``serve`` adds only what a server needs: where to listen, the token,
queue and upload limits, how long results stay, TLS, and the prompt model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

from ..core.server import config as server_config
from ..core.server import limits

EXIT_USAGE = 2  # main's code for bad arguments: a value serve can't run with is one too


def add_serve_parser(
    sub: "argparse._SubParsersAction",
    add_model_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    serve = sub.add_parser(
        "serve",
        help="answer generation jobs over HTTP (a GPU box for the studio)",
        description="Run the GPU server: one worker per GPU with the model kept warm. "
        "Listens on loopback unless --host says otherwise; any other address needs "
        "--token-file. Needs the [server] extra (FastAPI, uvicorn).",
    )
    net = serve.add_argument_group("network")
    net.add_argument(
        "--host",
        default=server_config.DEFAULT_HOST,
        help=f"address to listen on (default {server_config.DEFAULT_HOST}: this machine only; "
        "0.0.0.0: every interface, token required)",
    )
    net.add_argument(
        "--port",
        type=int,
        default=server_config.DEFAULT_PORT,
        help=f"TCP port (default {server_config.DEFAULT_PORT}; 0 picks a free one)",
    )
    net.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="file holding the bearer token clients must send (required beyond loopback)",
    )
    net.add_argument(
        "--tokens-file",
        type=Path,
        metavar="F",
        help="one 'name token' line per client instead of one shared token: "
        "each client sees only its own jobs",
    )
    net.add_argument("--tls-cert", type=Path, metavar="PEM", help="TLS certificate (uvicorn's)")
    net.add_argument("--tls-key", type=Path, metavar="PEM", help="TLS private key (uvicorn's)")
    net.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help=f"open connections at most (default {limits.DEFAULT_MAX_CONNECTIONS}, always below "
        "the open-file limit); at the limit the oldest idle one is closed",
    )
    net.add_argument(
        "--header-timeout",
        type=float,
        default=server_config.DEFAULT_HEADER_TIMEOUT_SECONDS,
        metavar="S",
        help="seconds a client has to send a request's headers "
        f"(default {server_config.DEFAULT_HEADER_TIMEOUT_SECONDS:g})",
    )
    net.add_argument(
        "--body-timeout",
        type=float,
        default=server_config.DEFAULT_BODY_IDLE_SECONDS,
        metavar="S",
        help="seconds a request body may stop arriving before the connection is closed "
        f"(default {server_config.DEFAULT_BODY_IDLE_SECONDS:g})",
    )
    jobs = serve.add_argument_group("jobs")
    jobs.add_argument(
        "--max-queue",
        type=int,
        default=server_config.DEFAULT_MAX_QUEUE,
        metavar="N",
        help=f"jobs waiting at most; more get HTTP 429 (default {server_config.DEFAULT_MAX_QUEUE})",
    )
    jobs.add_argument(
        "--max-upload-mb",
        type=float,
        default=server_config.DEFAULT_MAX_UPLOAD_MB,
        metavar="M",
        help=f"largest image upload (default {server_config.DEFAULT_MAX_UPLOAD_MB:g})",
    )
    jobs.add_argument(
        "--keep-results",
        type=float,
        default=server_config.DEFAULT_KEEP_RESULTS_MINUTES,
        metavar="MINUTES",
        help="delete a job's result this long after it ended "
        f"(default {server_config.DEFAULT_KEEP_RESULTS_MINUTES:g})",
    )
    jobs.add_argument(
        "--jobs-dir",
        type=Path,
        metavar="DIR",
        help="folder for uploads and results (default: a temporary one, removed at exit)",
    )
    jobs.add_argument("--quiet", action="store_true", help="don't log each request")
    serve.add_argument_group("browser page").add_argument(
        "--viewer-script",
        type=Path,
        metavar="FILE",
        help="model-viewer.min.js for the page's 3D preview (default: the one "
        "vendor_install.py --dev installs under .venv/npm)",
    )
    add_model_options(serve)
    serve.add_argument_group("prompt jobs").add_argument(
        "--text-model",
        metavar="DIR_OR_ID",
        help="model for prompt jobs (--model is the one for image jobs)",
    )
    serve.set_defaults(func=cmd_serve)


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remote")
    group.add_argument(
        "--server",
        metavar="URL",
        help="run the job on a GPU server started with 'serve' (its model and device are used; "
        "the files are written here)",
    )
    group.add_argument(
        "--token-file", type=Path, metavar="F", help="file holding the server's token"
    )


def remote_backend(args: argparse.Namespace):
    """The backend ``generate`` submits to: the server given by --server, else this machine."""
    from ..core.backend import get_backend

    if getattr(args, "server", None):
        return get_backend("remote", url=args.server, token_file=args.token_file)
    if getattr(args, "token_file", None):
        from ..core.errors import ConfigError

        raise ConfigError("--token-file goes with --server URL.")
    return get_backend("local")


def config_from_args(args: argparse.Namespace) -> server_config.ServerConfig:
    if args.token_file and args.tokens_file:
        raise server_config.OptionError("Give --token-file or --tokens-file, not both.")
    max_upload_bytes = server_config.upload_bytes(args.max_upload_mb)
    server_config.check_finite("--keep-results", args.keep_results, "minutes")
    token = server_config.read_token_file(args.token_file) if args.token_file else None
    tokens = server_config.read_tokens_file(args.tokens_file) if args.tokens_file else None
    return server_config.ServerConfig(
        host=args.host,
        port=args.port,
        token=token,
        tokens=tokens,
        max_connections=args.max_connections,
        header_timeout_seconds=args.header_timeout,
        body_idle_seconds=args.body_timeout,
        max_queue=args.max_queue,
        max_upload_bytes=max_upload_bytes,
        keep_results_seconds=args.keep_results * 60,
        jobs_dir=args.jobs_dir,
        image_model=args.model,
        text_model=args.text_model,
        revision=args.revision,
        cache_dir=args.cache_dir,
        allow_download=args.allow_download,
        device=args.device or "auto",
        dtype=args.dtype,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        viewer_script=args.viewer_script,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl+C."""
    import sys

    from ..core.server.app import serve

    try:  # every option and the TLS files are checked before "Loading" and "Ready"
        config = config_from_args(args)
        config.validate()
    except server_config.OptionError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        logging.getLogger("blender_img3d").setLevel(logging.INFO)
    print(f"Loading the models on {config.device}...", flush=True)
    clients = len(config.clients)
    auth = (
        ("token required" if clients == 1 else f"tokens of {clients} clients required")
        if clients
        else "no token: this machine only"
    )

    def announce(url: str) -> None:
        print(f"Ready: serving on {url}/v1 ({auth}). Ctrl+C stops.", flush=True)
        print(f"The page: open {url}/ in a browser.", flush=True)

    serve(config, announce=announce)
    return 0

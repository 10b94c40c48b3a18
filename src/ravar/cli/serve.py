"""`ravar serve`: a web page on localhost to try a checkpoint on videos and sentences."""

from __future__ import annotations

import argparse
import math
import socket

from ravar.cli.argtypes import (
    add_backbone_option,
    add_device_option,
    backbones_of,
    positive_float,
    positive_int,
)
from ravar.errors import ServeError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD_MB = 200.0  # default upload size limit (MiB)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve` to the `ravar` sub-parsers `sub`."""
    p = sub.add_parser(
        "serve",
        help="a web page to try a checkpoint: upload a video, type a sentence, see the actions",
        description="Serve a Gradio page over CHECKPOINT: upload a video (or pick an example), "
        "type a sentence that describes one person, choose a time; the page shows the keyframe "
        "with the person's box, the top actions and the result as JSON. Needs the 'app' extra "
        "(pip install 'ravar[app]'). Listens on 127.0.0.1 only unless --host says otherwise; "
        "no public link, no telemetry. Uploads go to a folder of the server's own (inside "
        "$GRADIO_TEMP_DIR when set), removed when it stops (Ctrl+C or kill).",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="e.g. RUN_DIR/best")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=7860, help="default: 7860")
    p.add_argument(
        "--detector", metavar="NAME", help="hog | none | detr:PATH (default: as `ravar predict`)"
    )
    p.add_argument("--examples", metavar="DIR", help="offer the video files of DIR as examples")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="actions shown")
    p.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=MAX_UPLOAD_MB,
        metavar="MB",
        help=f"largest upload accepted, in MiB (default: {MAX_UPLOAD_MB:g}); larger ones are "
        "refused before they are stored",
    )
    add_device_option(p)
    add_backbone_option(p)
    p.set_defaults(func=run_serve)


def check_port(host: str, port: int) -> None:
    """A ServeError naming --host/--port when nothing can listen there."""
    if port > 65535:
        raise ServeError(f"--port {port}: must be at most 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ServeError(f"--host {host}: unknown address ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(address)
        except OSError as e:
            raise ServeError(f"--host {host} --port {port}: cannot listen ({e.strerror})") from None


def run_serve(args: argparse.Namespace) -> int:
    """Check the extra, the port and the examples, load the checkpoint once, serve until
    interrupted (Ctrl+C or SIGTERM), then remove the uploads; exit code 0."""
    from ravar.app.uploads import terminate_as_interrupt, upload_folder

    if not math.isfinite(args.max_upload_mb):
        raise ServeError(f"--max-upload-mb: must be a finite number, got {args.max_upload_mb}")
    with upload_folder(), terminate_as_interrupt():
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from ravar.app.examples import find_examples
    from ravar.app.extra import require_gradio

    require_gradio()
    check_port(args.host, args.port)
    examples = find_examples(args.examples)

    from ravar.app.page import build_page
    from ravar.inference.detectors import build_detector
    from ravar.inference.predictor import Predictor
    from ravar.util.devices import resolve_device
    from ravar.util.hf_quiet import quiet_transformers

    with quiet_transformers():
        detector = "auto" if args.detector is None else build_detector(args.detector)
        device = resolve_device(args.device)
        predictor = Predictor.from_checkpoint(
            args.checkpoint, detector=detector, device=device, backbones=backbones_of(args)
        )
    page = build_page(predictor, examples, top_k=args.top_k)
    try:
        page.launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            quiet=True,
            max_file_size=max(1, int(args.max_upload_mb * 1024 * 1024)),  # bytes
        )
    except OSError as e:
        raise ServeError(f"--host {args.host} --port {args.port}: cannot serve ({e})") from None
    url_host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"ravar serve: http://{url_host}:{args.port}/ (model {predictor.model_name}, detector "
        f"{predictor.detector.kind}, {len(examples)} example(s), uploads up to "
        f"{args.max_upload_mb:g} MiB); Ctrl+C stops",
        flush=True,
    )
    if args.host not in LOOPBACK:
        print(f"note: --host {args.host}: the page is reachable from other machines", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()
    return 0

"""One model server process: ``python -m mlctl.serving --artifact DIR/artifact.json --port 8000``.

This is what local deploys, Docker images and Kubernetes pods run. It reads the artifact's
metadata, loads the model (verifying its sha256), and serves it until SIGTERM. Exit status: 0
after a graceful stop, 1 when the artifact cannot be loaded or the server cannot start (one
line on stderr), 2 for usage errors, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlctl.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, MlctlError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def add_server_options(p: argparse.ArgumentParser, *, log_level: str = "info") -> None:
    """Where to listen, the ready file, batching and logging: what every server process takes
    (the model server here, the gateway's processes in :mod:`mlctl.serving.gateway_worker`)."""
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=_port, default=None, help="port to bind (default: 8000; 0: any free port)")
    where.add_argument("--fd", type=int, default=None, help="serve on this inherited, listening socket")
    p.add_argument("--ready-file", type=Path, default=None, help="write the pid here once ready")
    p.add_argument("--max-batch", type=_positive_int, default=None, help="most rows in one model call")
    p.add_argument("--max-wait-ms", type=_non_negative_float, default=None,
                   help="how long a partial batch may wait while another runs")
    p.add_argument("--queue-size", type=_positive_int, default=None, help="most rows waiting (then 429)")
    p.add_argument("--workers", type=_positive_int, default=None, help="model calls running at once")
    p.add_argument("--no-fast-path", action="store_true",
                   help="always call the estimator's own predict (no verified tree fast path)")
    p.add_argument("--log-level", default=log_level, choices=["critical", "error", "warning", "info", "debug"])


def batching_of(args: argparse.Namespace) -> dict[str, Any]:
    """The batching settings given on the command line (the others keep their defaults)."""
    keys = ("max_batch", "max_wait_ms", "queue_size", "workers", "max_body_bytes")
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlctl.serving", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifact", type=Path, required=True, help="the model's artifact.json")
    add_server_options(p)
    p.add_argument("--max-body-bytes", type=_positive_int, default=None, help="larger bodies get 413")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    batching = batching_of(args)
    try:
        from mlctl.serving.startup import starting

        with starting():  # no garbage collection until the server settles, right before serving
            _serve(args, batching)
    except MlctlError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code if exc.exit_code != EXIT_OK else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


def _serve(args: argparse.Namespace, batching: dict[str, Any]) -> None:
    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.serving import Predictor, run_server

    try:
        artifact = ModelArtifact.from_json(args.artifact)
    except FileNotFoundError:
        raise MlctlError(f"artifact file not found: {args.artifact}") from None
    except (ValueError, TypeError, OSError) as exc:
        raise MlctlError(f"cannot read artifact {args.artifact}: {exc}") from None
    try:
        predictor = Predictor.from_artifact(artifact, fast_path=not args.no_fast_path)
    except MlctlError:
        raise
    except Exception as exc:  # a damaged file the deserializer chokes on, say
        raise MlctlError(f"cannot load model {artifact.ref} from {artifact.path}: "
                         f"{type(exc).__name__}: {exc}") from None
    run_server(predictor, host=args.host, port=8000 if args.port is None else args.port, fd=args.fd,
               ready_file=args.ready_file, log_level=args.log_level, **batching)


if __name__ == "__main__":
    sys.exit(main())

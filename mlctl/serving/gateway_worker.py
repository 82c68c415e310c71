"""One gateway process on an inherited socket: ``python -m mlctl.serving.gateway_worker --models
a,b --fd N``, as the supervisor runs it for ``mlctl serve start --replicas N``.

It loads the configuration from its working directory (the project), the models from the
registry, and serves until SIGTERM. Exit status: 0 after a graceful stop, 1 when a model cannot be
loaded or the server cannot start (one line on stderr), 2 for usage errors, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlctl.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, MlctlError
from mlctl.serving.__main__ import add_server_options, batching_of


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlctl.serving.gateway_worker", description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--models", help="registered models to serve, comma-separated")
    which.add_argument("--all", action="store_true", help="every registered model")
    add_server_options(p, log_level="warning")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    batching = batching_of(args)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        from mlctl.core.config import load_config
        from mlctl.serving.gateway_start import serve_gateway

        serve_gateway(load_config(), models=models, all_models=args.all, host=args.host,
                      port=8000 if args.port is None else args.port, fd=args.fd, ready_file=args.ready_file,
                      fast_path=not args.no_fast_path, log_level=args.log_level, **batching)
    except MlctlError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return exc.exit_code if exc.exit_code != EXIT_OK else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

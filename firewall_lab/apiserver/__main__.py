"""``python -m firewall_lab.apiserver``: run the API server double in the foreground.

Prints the URL on the first line of stdout once it listens; SIGTERM or SIGINT
stop it cleanly (the state file, if any, is saved first).
"""

from __future__ import annotations

import argparse
import logging
import sys

from firewall_lab.apiserver.server import ApiServer, write_kubeconfig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m firewall_lab.apiserver",
        description="Kubernetes API server double for podwall",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state", help="JSON file: loaded on start, saved on change")
    parser.add_argument(
        "--no-save", action="store_true", help="load --state but never write it (benchmarks)"
    )
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    parser.add_argument("--bookmark-interval", type=float, default=60.0)
    parser.add_argument("--history-size", type=int, default=10_000)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    server = ApiServer(
        host=args.host,
        port=args.port,
        state_file=args.state,
        save=not args.no_save,
        history_size=args.history_size,
        bookmark_interval=args.bookmark_interval,
    )

    def ready(url: str) -> None:
        if args.kubeconfig:
            write_kubeconfig(args.kubeconfig, url)
        print(url, flush=True)

    try:
        server.serve_forever(on_ready=ready)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: run every ``bench/bench_*.py`` in name order.

Each benchmark module provides ``main(argv) -> int``; extra arguments are not
passed on (run a module alone to give it options).  Exits non-zero when any
benchmark failed.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
import traceback


def main() -> int:
    failed = 0
    for path in sorted(pathlib.Path(__file__).parent.glob("bench_*.py")):
        name = f"bench.{path.stem}"
        print(f"== {name}", flush=True)
        try:
            status = importlib.import_module(name).main([])
        except Exception:
            traceback.print_exc()
            status = 1
        failed += status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

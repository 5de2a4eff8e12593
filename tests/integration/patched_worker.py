"""`drapto worker` with one part of drapto patched, for tests of what the engine and the
worker refuse:

    python patched_worker.py PATCH[,PATCH...] WORKER-ARGUMENTS...

PATCH is `version=V` (this drapto says it is version V), `argument=A` (every segment
command gets A before its output), or `skip-check` (the worker does not compare its
fingerprint with the engine's before joining: only the engine's gate can refuse it).
The patches act in this process, which computes the fingerprint the worker presents.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import drapto_engine
from drapto_engine.cli.main import main
from drapto_engine.cluster import worker
from drapto_engine.services.encoding import svt


def patch(name: str, value: str) -> None:
    if name == "version":
        drapto_engine.__version__ = value
    elif name == "argument":
        build = svt.segment_argv

        def with_argument(*args: Any, **kwargs: Any) -> list[str]:
            argv = build(*args, **kwargs)
            return [*argv[:-1], value, argv[-1]]

        svt.segment_argv = with_argument
    elif name == "skip-check":

        async def engine_fingerprint(*args: Any, **kwargs: Any) -> str:
            return await worker.asyncio.to_thread(worker.fingerprint)

        worker.engine_toolchain = engine_fingerprint  # type: ignore[assignment]
    else:
        raise SystemExit(f"{Path(__file__).name}: unknown patch {name!r}")


if __name__ == "__main__":
    for item in sys.argv[1].split(","):
        name, _, value = item.partition("=")
        patch(name, value)
    sys.exit(main(["worker", *sys.argv[2:]]))

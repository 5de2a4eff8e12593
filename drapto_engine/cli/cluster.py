"""`drapto cluster init|bundle|revoke|list` and `drapto worker` (the cluster extra)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from drapto_engine.cli import args as checks

COMMANDS = ("cluster", "worker")


def add_cluster_parsers(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="certificates for encoding on other machines")
    actions = cluster.add_subparsers(dest="cluster_action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="create the cluster CA, the engine's certificate and a worker bundle"
    )
    init.add_argument(
        "--bundle",
        type=Path,
        help="worker bundle folder (default: ~/.config/drapto/cluster/worker-bundle)",
    )
    init.add_argument(
        "--force", action="store_true", help="replace an existing CA (old bundles stop working)"
    )
    init.add_argument(
        "--name", type=checks.name, help="the worker certificate's name (default: the folder's)"
    )
    bundle = actions.add_parser("bundle", help="another worker bundle from the existing CA")
    bundle.add_argument("dir", type=Path, metavar="DIR")
    bundle.add_argument("--force", action="store_true", help="replace a bundle in DIR")
    bundle.add_argument(
        "--name",
        type=checks.name,
        help="the worker certificate's name, e.g. the machine's (default: DIR's folder name)",
    )
    revoke = actions.add_parser(
        "revoke", help="shut out a worker certificate (a lost or retired machine)"
    )
    revoke.add_argument("worker_name", metavar="NAME")
    actions.add_parser("list", help="the worker certificates issued and revoked")

    worker = commands.add_parser("worker", help="encode segments for an engine on another machine")
    worker.add_argument("address", metavar="ADDRESS", help="the engine's tls://HOST:PORT")
    worker.add_argument(
        "--bundle",
        type=Path,
        help="worker bundle from `drapto cluster init` (default: ~/.config/drapto/cluster/worker-bundle)",
    )
    worker.add_argument(
        "--slots", type=checks.workers, help="encoders at once (default: from cores and memory)"
    )
    worker.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="ENGINE=LOCAL",
        help="read sources under the engine's ENGINE path from LOCAL here (shared storage)",
    )
    worker.add_argument("--dashboard", metavar="HOST:PORT", help="serve the worker's dashboard")
    worker.add_argument("--name", type=checks.name, help="worker name (default: host-pid)")
    worker.add_argument(
        "--timeout",
        type=checks.positive_seconds,
        default=20.0,
        help="seconds to wait for the engine (default 20)",
    )
    worker.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain tcp:// and dashboards beyond loopback (anyone reaching them can run code)",
    )


def run_cluster(args: argparse.Namespace) -> int:
    from drapto_engine.cluster import INSTALL_HINT, ClusterUsageError, available

    if not available():
        print(f"drapto: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        if args.command == "cluster":
            return _cluster(args)
        return _worker(args)
    except ClusterUsageError as exc:
        print(f"drapto: {exc.one_line()}", file=sys.stderr)
        return 2


def _cluster(args: argparse.Namespace) -> int:
    from drapto_engine.cluster.certs import (
        init_cluster,
        make_bundle,
        revoke_worker,
        worker_certificates,
    )

    if args.cluster_action == "init":
        done = init_cluster(args.bundle, force=args.force, name=args.name)
        print(f"engine certificate: {done.folder}")
        print(f"worker bundle: {done.bundle} (copy it to one worker machine)")
        return 0
    if args.cluster_action == "bundle":
        print(f"worker bundle: {make_bundle(args.dir, force=args.force, name=args.name)}")
        return 0
    if args.cluster_action == "revoke":
        cert = revoke_worker(args.worker_name)
        print(f"revoked worker certificate {cert.name} (serial {cert.serial})")
        return 0
    for cert in worker_certificates():
        state = f"revoked {cert.revoked}" if cert.revoked else "valid"
        print(f"{cert.name}\tserial {cert.serial}\tissued {cert.issued}\t{state}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from drapto_engine.cluster import ClusterUsageError, route_dask_logs
    from drapto_engine.cluster.certs import default_bundle
    from drapto_engine.cluster.tasks import parse_path_map
    from drapto_engine.cluster.worker import EngineLost, WorkerOptions, run_worker

    route_dask_logs()  # Dask logs every connection: to the log file, stderr with --debug
    try:
        path_map = parse_path_map(args.path_map)
    except ValueError as exc:
        raise ClusterUsageError(f"--path-map: {exc}") from exc
    options = WorkerOptions(
        address=args.address,
        bundle=args.bundle or default_bundle(),
        slots=args.slots,
        path_map=path_map,
        insecure=args.insecure,
        dashboard=args.dashboard,
        name=args.name,
        timeout_s=args.timeout,
        debug=args.debug,
    )
    try:
        return asyncio.run(run_worker(options))
    except EngineLost as exc:
        print(f"drapto: {exc.one_line()}", file=sys.stderr)
        return 3

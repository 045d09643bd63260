"""The `celeriac` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cmd_crds(args: argparse.Namespace) -> int:
    from .api import crdgen

    files = crdgen.render_files()
    if args.check:
        stale = [
            str(d / name)
            for d in args.output
            for name, text in files.items()
            if not (d / name).exists() or (d / name).read_text() != text
        ]
        extra = [
            str(p) for d in args.output for p in d.glob("*.celeriac.io.yaml") if p.name not in files
        ]
        if stale or extra:
            print("CRDs differ from the models; run `celeriac crds`:", *stale, *extra, sep="\n  ")
            return 1
        return 0
    if not args.output:
        print("---\n".join(files.values()), end="")
        return 0
    for path in crdgen.write(args.output):
        print(f"wrote {path}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from .reconcile import validation_message
    from .render.resources import RenderError, render_resources
    from .render.yamlout import dump_all

    docs = []
    for path in args.filename:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        docs += [d for d in yaml.safe_load_all(text) if d]
    try:
        objects = render_resources(docs, args.namespace)
    except ValidationError as err:
        print(f"celeriac render: invalid resource: {validation_message(err)}", file=sys.stderr)
        return 1
    except RenderError as err:
        print(f"celeriac render: {err}", file=sys.stderr)
        return 1
    print(dump_all(objects), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run

    return run(
        namespaces=args.namespace,
        kubeconfig=args.kubeconfig,
        local=args.local,
        install_crds=args.install_crds,
        verbose=args.verbose,
        liveness=args.liveness,
        metrics_port=args.metrics_port,
        peering=args.peering,
        priority=args.priority,
        scan=args.scan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="celeriac", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all)",
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG)")
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--local",
        dest="local",
        action="store_true",
        default=None,
        help="always start the built-in local control plane",
    )
    where.add_argument(
        "--no-local",
        dest="local",
        action="store_false",
        help="fail instead of starting a local control plane",
    )
    run.add_argument(
        "--install-crds",
        action="store_true",
        help="apply the CRDs to the cluster first (the local plane always does)",
    )
    run.add_argument(
        "--liveness", metavar="URL", help="serve liveness, e.g. http://0.0.0.0:8080/healthz"
    )
    run.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus /metrics on this port"
    )
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="kopf peering object (ClusterKopfPeering, or KopfPeering per watched namespace): "
        "only the peer with the highest priority acts; default: standalone",
    )
    run.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="peering priority (default: random below 2**30, so replicas never tie)",
    )
    run.add_argument(
        "--no-scan",
        dest="scan",
        action="store_false",
        help="do not watch namespaces and CRDs cluster-wide (for installs that grant only "
        "namespaced Roles; CRDs installed later then need a restart)",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    crds = sub.add_parser("crds", help="generate the CRDs from the API models")
    crds.add_argument(
        "-o",
        "--output",
        type=Path,
        action="append",
        default=[],
        help="directory to write (repeatable); stdout if none",
    )
    crds.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the files in --output differ from the models",
    )
    crds.set_defaults(func=cmd_crds)

    render = sub.add_parser("render", help="print, offline, every object the operator would create")
    render.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        required=True,
        help="YAML file with resources (repeatable; - for stdin)",
    )
    render.add_argument(
        "-n", "--namespace", default="default", help="namespace for resources that name none"
    )
    render.set_defaults(func=cmd_render)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _a: print(f"celeriac {__version__}") or 0)

    args = parser.parse_args(argv)
    if args.command == "crds" and args.check and not args.output:
        root = _repo_root()
        args.output = [root / "crds", root / "charts/celeriac/crds"]
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

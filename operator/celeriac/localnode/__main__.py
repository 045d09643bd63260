"""`python -m celeriac.localnode`: run the local node agent (development and tests only)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .agent import AgentConfig, main, new_agent_id


def parse(argv: list[str] | None = None) -> AgentConfig:
    parser = argparse.ArgumentParser(
        prog="python -m celeriac.localnode",
        description="Run pods of the local control plane as local processes "
        "(development and tests only; needs root).",
    )
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the cluster")
    parser.add_argument("--nodes", type=int, default=3, help="Nodes to register (default 3)")
    parser.add_argument("--state-dir", type=Path, required=True, help="pod dirs and logs")
    parser.add_argument("--agent-id", default=None, help="marker value (default: random)")
    parser.add_argument("--hosts-file", type=Path, default=Path("/etc/hosts"))
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(message)s",
        stream=sys.stderr,
    )
    if not 1 <= args.nodes <= 200:
        parser.error("--nodes must be between 1 and 200")
    return AgentConfig(
        kubeconfig=args.kubeconfig,
        nodes=args.nodes,
        state_dir=args.state_dir.resolve(),
        agent_id=args.agent_id or new_agent_id(),
        hosts_file=args.hosts_file,
    )


if __name__ == "__main__":
    sys.exit(main(parse()))

"""Files shipped verbatim into worker pods (see celeriac_worker.py). They run in
the user's image, where this package is not installed."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_REPORTER = _HERE.parent / "scaling" / "reporter.py"


def worker_files() -> dict[str, str]:
    """ConfigMap keys and contents: the launcher/bootstrap and the busy reporter."""
    return {
        "celeriac_worker.py": (_HERE / "celeriac_worker.py").read_text(),
        "celeriac_busy.py": _REPORTER.read_text(),
    }

#!/usr/bin/env bash
# The test command: installs what it needs (Debian packages, a venv, the control
# plane and helm built from Go modules), checks CRD drift, lints, type-checks, runs pytest.
# Extra arguments go to pytest (e.g. hack/test.sh tests/unit -k crd).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_venv
ensure_control_plane
ensure_tools
cd "$ROOT"
hlog "checking that the committed CRDs match the models"
celeriac crds --check
hlog "ruff"; ruff check operator tests bench
hlog "mypy"; mypy
hlog "pytest"
# pytest exits 5 when it collected no test: that is a failure here, like any non-zero.
exec pytest -p no:cacheprovider "$@"

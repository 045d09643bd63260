# Shared by hack/ scripts: installs what the project needs on a fresh machine.
# Everything heavy is cached outside the clone (CELERIAC_CACHE, pip's cache).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CELERIAC_CACHE="${CELERIAC_CACHE:-$HOME/.cache/celeriac}"
VENV="${CELERIAC_VENV:-$ROOT/.venv}"

hlog() { echo "[celeriac] $*" >&2; }

# Debian packages: redis-server/redis-sentinel for brokers, iproute2 for pod addresses.
ensure_debs() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v openssl >/dev/null || missing+=(openssl)
  ((${#missing[@]})) || return 0
  hlog "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # The packages start system services we do not want; our pods run their own.
  $sudo systemctl disable --now redis-server redis-sentinel >/dev/null 2>&1 || true
  pkill -x redis-server 2>/dev/null || true; pkill -x redis-sentinel 2>/dev/null || true
}

# Python deps in a venv; reinstalled only when pyproject.toml changes.
ensure_venv() {
  local stamp="$VENV/.celeriac-stamp" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    hlog "installing Python dependencies into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >&2
    "$VENV/bin/pip" install -q -e "$ROOT[dev]" >&2
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# Control-plane binaries (built once from Go modules, cached by version).
ensure_control_plane() {
  CELERIAC_CONTROL_PLANE_BIN="$("$ROOT/hack/build-control-plane.sh")"
  export CELERIAC_CONTROL_PLANE_BIN
}

# Client tools for the tests besides kubectl (helm), built from Go modules and cached.
ensure_tools() {
  local bin
  bin="$("$ROOT/hack/build-tools.sh")"
  export CELERIAC_HELM="$bin/helm"
  export PATH="$bin:$PATH"
}

# Sourced by scripts/demo and .ci/run: creates .venv (once) and installs certrecon into it
# with its test extras, pinned by requirements/constraints.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CERTRECON_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.certrecon-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$ROOT/requirements/constraints.txt" -e "$ROOT[test]" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

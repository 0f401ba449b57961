#!/usr/bin/env bash
# Installs what GridLink needs on a development or CI machine, skipping what is already there:
# a Python 3.11 virtual environment with the pinned dependencies, RabbitMQ from Debian, and
# FerretDB 1.24.2 built from its Go module; with --browser, also Debian's Chromium and axe-core
# for the portal's browser tests. Safe to run again; the second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/../.."

FERRETDB_VERSION=v1.24.2
AXE_CORE_VERSION=4.14.1
VENV=.venv
TOOLS=.tools/bin

say() { printf '[bootstrap] %s\n' "$*"; }

# Debian packages are installed as root: directly, or through sudo when there is one.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "installing Debian packages needs root: run this as root, or install sudo" >&2
    exit 1
  fi
}
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Python ---------------------------------------------------------------------------
python=$(command -v python3.11 || command -v python3)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "GridLink needs Python 3.11; found $("$python" --version)" >&2; exit 1; }
stamp="$VENV/.requirements.sha"
wanted=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/pip" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  say "installing Python dependencies into $VENV"
  if [ ! -x "$VENV/bin/pip" ]; then  # none yet, or one a failed run left without pip
    rm -rf "$VENV"
    "$python" -m venv "$VENV" \
      || { echo "could not create $VENV: install Debian's python3.11-venv, then run again" >&2; exit 1; }
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

# --- RabbitMQ -------------------------------------------------------------------------
# (In /usr/sbin, which is not on every user's PATH.)
if [ ! -x /usr/sbin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null 2>&1; then
  say "installing rabbitmq-server from Debian"
  apt_install rabbitmq-server
fi

# --- The portal's browser tests (`bootstrap.sh --browser`, as `make test` runs it): Chromium
# from Debian, and axe-core, the accessibility rules the tests run in it, from npm ---------------
if [ "${1:-}" = "--browser" ] && ! command -v chromedriver >/dev/null 2>&1; then
  say "installing chromium and chromium-driver from Debian"
  apt_install chromium chromium-driver
fi
axe=.tools/npm/node_modules/axe-core
if [ "${1:-}" = "--browser" ] && ! grep -qs "\"version\": \"$AXE_CORE_VERSION\"" "$axe/package.json"; then
  command -v npm >/dev/null || { echo "npm is needed to install axe-core for the portal's tests" >&2; exit 1; }
  say "installing axe-core $AXE_CORE_VERSION from npm"
  npm install --prefix .tools/npm --no-audit --no-fund --silent "axe-core@$AXE_CORE_VERSION"
fi

# --- FerretDB -------------------------------------------------------------------------
if [ ! -x "$TOOLS/ferretdb" ] || ! "$TOOLS/ferretdb" --version 2>/dev/null | grep -q "$FERRETDB_VERSION"; then
  command -v go >/dev/null || { echo "Go 1.21 or newer is needed to build FerretDB (go.dev/dl)" >&2; exit 1; }
  # FerretDB's module asks for a newer Go, which Go fetches by itself from 1.21 on; older ones
  # (Debian 12's golang-go is 1.19) fail with an unclear error instead.
  go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  [ "$go_minor" -ge 21 ] 2>/dev/null \
    || { echo "FerretDB needs Go 1.21 or newer; found $(go env GOVERSION) (go.dev/dl)" >&2; exit 1; }
  say "building FerretDB $FERRETDB_VERSION (a few minutes, once)"
  # `go install …@version` asks the module proxy for the version list, which may be refused;
  # downloading the pinned module and building it needs only the module itself. The module
  # zip leaves build/version/version.txt empty (it is generated in FerretDB's own repo), so it
  # is filled in before building, in a scratch copy.
  dir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  scratch=$(mktemp -d)
  cp -r "$dir/." "$scratch"
  chmod -R u+w "$scratch"
  echo "$FERRETDB_VERSION" > "$scratch/build/version/version.txt"
  mkdir -p "$TOOLS"
  (cd "$scratch" && GOFLAGS=-mod=mod go build -o "$OLDPWD/$TOOLS/ferretdb" ./cmd/ferretdb)
  rm -rf "$scratch"
fi
rabbitmq_version=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo "?")
say "ready: $("$VENV/bin/python" --version), RabbitMQ $rabbitmq_version, FerretDB $("$TOOLS/ferretdb" --version | head -1)"

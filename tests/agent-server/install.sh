#!/usr/bin/env bash
# Installs the real OpenHands agent server from PyPI into one virtual environment per version,
# cached under the user's cache directory, for the tests that run sandbox pods for real.
#
#   install.sh VERSION...     installs each (1.58.2, 1.34.0); an installed one is kept
#   install.sh path VERSION   prints the environment's directory (installed or not)
#
# The agent server does not pin the SDK and tools it is released with: they are pinned here to the
# same version, as its images have them; constraints-VERSION.txt settles what pip cannot.
# The network shim (netns_shim.py) is copied in on every run, so a change to it needs no reinstall.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/openhands-k8s-runtime/agent-server

python312() {
  local candidate
  for candidate in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    if "$candidate" --version >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  echo "agent-server: Python 3.12 is needed (the agent server requires it)" >&2
  return 1
}

install() {
  local version=$1 venv=$cache/$1 constraints=()
  [ -f "$here/constraints-$version.txt" ] && constraints=(-c "$here/constraints-$version.txt")
  local stamp
  stamp=$(cat "$here/install.sh" "${constraints[@]:1}" 2>/dev/null | sha256sum | cut -c1-16)
  if [ -x "$venv/bin/agent-server" ] && [ "$(cat "$venv/.installed" 2>/dev/null)" = "$stamp" ]; then
    echo "agent-server: $version is installed ($venv)"
  else
    rm -rf "$venv"
    "$(python312)" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${constraints[@]}" \
      "openhands-agent-server==$version" "openhands-sdk==$version" "openhands-tools==$version"
    echo "$stamp" >"$venv/.installed"
    echo "agent-server: installed $version into $venv"
  fi
  local site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cp "$here/netns_shim.py" "$here/netns_shim.pth" "$site/"
}

case "${1:-}" in
  path) echo "$cache/${2:?usage: $0 path VERSION}" ;;
  "") echo "usage: $0 VERSION... | path VERSION" >&2; exit 2 ;;
  *) for version in "$@"; do install "$version"; done ;;
esac

#!/usr/bin/env bash
# Sets up everything memlens needs on a fresh Debian machine (as root or with sudo):
# Debian packages, a Python 3.12 virtual environment in .venv with memlens and its plugin shim,
# and the tiny local SmolVLM backbone in the Hub cache. Safe to rerun: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# ffmpeg: system FFmpeg libraries let torchcodec decode dataset videos (else lerobot falls back to PyAV
# with a long warning); chromium: the headless browser the app tests drive.
if ! command -v ffmpeg >/dev/null || ! command -v chromium >/dev/null; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q ffmpeg chromium
fi

# Python 3.12 (lerobot 0.6 needs it): .python-version selects it through pyenv where pyenv is used.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.12 "$(command -v pyenv >/dev/null && pyenv which python3.12 2>/dev/null || true)" python3; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "error: Python 3.12 is required (lerobot 0.6 needs it); install it (e.g. pyenv install 3.12) and rerun." >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv

stamp=.venv/.memlens-install-stamp
want=$(cat pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]' -e plugins/lerobot_policy_smolvla_rmt
  echo "$want" > "$stamp"
fi

HF_HUB_OFFLINE=1 .venv/bin/memlens build-models >/dev/null
echo "memlens is set up: .venv/bin/memlens"

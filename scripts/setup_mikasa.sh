#!/usr/bin/env bash
# Adds MIKASA-Robo (the 1.0.0 VLA memory tasks on ManiSkill 3 / SAPIEN) to memlens's .venv, CPU only, on
# Debian 12 (as root or with sudo). Run scripts/setup.sh first (`make setup-mikasa` does both). Safe to rerun:
# finished steps are skipped. Why each step is as it is (docs/mikasa.md, "Install"):
#  - SAPIEN renders through Vulkan. Debian 12's Mesa 22 software renderer (lavapipe) lacks a feature SAPIEN
#    needs ("Failed to find a supported physical device"); Mesa 25 from bookworm-backports has it.
#  - mikasa-robo-suite 1.0.0 is pure Python but declares Requires-Python <3.12 and pins an old stack
#    (numpy 1.23, torch 2.2, gymnasium 0.29); it runs on memlens's stack, so it is installed without its pins.
#  - mani-skill 3.0.1 and sapien 3.0.3 are installed without their own requirement lists, which would add
#    mplib (its planner segfaults with numpy 2; only MIKASA's motion-planning oracles use it) and
#    opencv-python (it would overwrite the cv2 of lerobot's opencv-python-headless); the rest of their
#    requirements are memlens's `mikasa` extra (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
[ -x .venv/bin/python ] || { echo "error: .venv is missing; run scripts/setup.sh (or make setup) first, then rerun this." >&2; exit 1; }

# 1. Mesa >= 25 (lavapipe, the Vulkan CPU renderer).
mesa_major=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | cut -d. -f1 || true)
if [ "${mesa_major:-0}" -lt 25 ] 2>/dev/null || [ -z "$mesa_major" ]; then
  . /etc/os-release
  if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
    echo "error: this step knows Debian 12 (bookworm) only, found ${PRETTY_NAME:-an unknown system}. Install Mesa >= 25's" \
         "Vulkan drivers (lavapipe) with your package manager, then rerun." >&2
    exit 1
  fi
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q -t bookworm-backports \
    mesa-vulkan-drivers libdrm2 libdrm-amdgpu1 libvulkan1
fi

# 2. Python packages (the wheels are fetched once into .venv/mikasa-wheels).
want="mikasa-robo-suite==1.0.0 mani-skill==3.0.1 sapien==3.0.3 $(sha256sum pyproject.toml | cut -d' ' -f1)"
stamp=.venv/.mikasa-install-stamp
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q -e '.[mikasa]'
  wheels=.venv/mikasa-wheels
  .venv/bin/python -m pip download -q --no-deps --ignore-requires-python -d "$wheels" \
    mikasa-robo-suite==1.0.0 mani-skill==3.0.1 sapien==3.0.3
  .venv/bin/python -m pip install -q --no-deps --ignore-requires-python \
    "$wheels"/mikasa_robo_suite-1.0.0-*.whl "$wheels"/mani_skill-3.0.1-*.whl "$wheels"/sapien-3.0.3-*.whl
  # 3. One real step of a MIKASA task with both cameras on the CPU renderer (~20 s), before the stamp.
  .venv/bin/python -m memlens.tasks.mikasa --check
  echo "$want" > "$stamp"
fi
echo "MIKASA-Robo is set up (check it: .venv/bin/python -m memlens.tasks.mikasa --check). Try:" \
     "memlens record --env mikasa_remember_color3 --episodes 2 --root /tmp/mikasa_demo"

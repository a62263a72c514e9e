#!/usr/bin/env bash
# Create/refresh .venv/ with every pinned dependency (requirements.txt), the system
# library Open3D needs, the package's messages and the package itself (editable).
# Idempotent: each step leaves a stamp and reruns only when its inputs change.
# Usage: scripts/setup_env.sh          (what `make demo` / `make test` call)
# Pins live in requirements.txt (regenerate: .venv/bin/python scripts/freeze_requirements.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"


stamp_ok() {  # stamp_ok STAMP INPUT... : true when STAMP is newer than every input
  local s="$1"; shift
  [[ -f "$s" ]] || return 1
  for f in "$@"; do [[ "$f" -nt "$s" ]] && return 1; done
  return 0
}

# 1. Debian packages: libusb-1.0-0 (needed by open3d) and sweethome3d-furniture (the 3-D models
#    of the realistic world, shared/spec/world.md version 2; ~130 MB, no dependencies)
APT_PKGS=()
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then APT_PKGS+=(libusb-1.0-0); fi
if ! compgen -G "/usr/share/sweethome3d/furniture/*.sh3f" >/dev/null; then APT_PKGS+=(sweethome3d-furniture); fi
if (( ${#APT_PKGS[@]} )); then
  echo "[setup] installing Debian package(s) ${APT_PKGS[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${APT_PKGS[@]}" >/dev/null
fi

# 2. virtual environment + pinned dependencies
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
if ! stamp_ok "$VENV/.stamp-deps" requirements.txt; then
  echo "[setup] installing pinned dependencies (requirements.txt); first time takes a few minutes"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  touch "$VENV/.stamp-deps"
fi

# 3. messages (rosidl via CMake, from the ROS 2 wheels)
if ! stamp_ok "$VENV/.stamp-msgs" msg/*.msg CMakeLists.txt package.xml scripts/build_msgs.sh "$VENV/.stamp-deps"; then
  echo "[setup] building messages (msg/*.msg -> ros2_amodal_seg.msg), ~20 s"
  scripts/build_msgs.sh "$VENV"
  touch "$VENV/.stamp-msgs"
fi

# 4. the package itself, editable (a .pth to the source tree, so ros2_amodal_seg.msg merges in)
if ! stamp_ok "$VENV/.stamp-pkg" setup.py "$VENV/.stamp-deps"; then
  echo "[setup] installing ros2_amodal_seg (editable)"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
  touch "$VENV/.stamp-pkg"
fi

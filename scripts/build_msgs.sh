#!/usr/bin/env bash
# Build the package's messages (msg/*.msg) from the ROS 2 PyPI wheels into .venv/.
# Usage: scripts/build_msgs.sh [VENV_DIR]   (default .venv)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(cd "${1:-$ROOT/.venv}" && pwd)"
PY="$VENV/bin/python"
BUILD="$ROOT/build/msgs"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV"
export CMAKE_PREFIX_PATH="$VENV"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DAMODAL_SEG_MESSAGES_ONLY=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DPYTHON_INSTALL_DIR="${SITE#$VENV/}" >"$BUILD/configure.log" 2>&1 \
  || { tail -40 "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >"$BUILD/build.log" 2>&1 || { tail -60 "$BUILD/build.log"; exit 1; }
cmake --install "$BUILD" >"$BUILD/install.log" 2>&1 || { tail -40 "$BUILD/install.log"; exit 1; }

# The generated ros2_amodal_seg/__init__.py in site-packages would shadow the editable
# source package; our own __init__ extends __path__ so that ros2_amodal_seg.msg is found.
rm -f "$SITE/ros2_amodal_seg/__init__.py"
# rosidl also writes a ros2_amodal_seg-*.egg-info; pip would take it for the package's own
# distribution and delete the generated messages when (re)installing the editable package.
rm -rf "$SITE"/ros2_amodal_seg-*.egg-info
echo "built ros2_amodal_seg messages into $VENV"

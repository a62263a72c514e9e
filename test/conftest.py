"""Shared pytest fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # msg_samples, ros_peer helpers

# Keep torch / BLAS from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# ONNX exports of the test checkpoints (backend auto runs ONNX Runtime on a CPU) stay out of ~/.cache.
os.environ.setdefault("AMODAL_SEG_ONNX_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "amodal_seg_test_onnx"))


@pytest.fixture
def ros_env():
    """Factory: ``ros_env(domain_id)`` -> env dict for a loopback-only ROS subprocess."""
    from ros2_amodal_seg.ros.rosenv import loopback_ros_env

    return loopback_ros_env

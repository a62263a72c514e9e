"""Golden outputs: the processor (model + fusion) on fixed synthetic frames stays within
tolerance of test/golden/processor_golden.json (regenerate with scripts/make_golden.py
after an intended change)."""
from __future__ import annotations

import json
from pathlib import Path


from ros2_amodal_seg.runtime.golden import TOLERANCES, compare_golden, file_sha256, golden_outputs

GOLDEN = Path(__file__).parent / "golden" / "processor_golden.json"


def test_processor_outputs_match_the_golden_file():
    from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT

    expected = json.loads(GOLDEN.read_text())
    assert file_sha256(DEFAULT_CHECKPOINT) == expected["checkpoint_sha256"], (
        "the shipped checkpoint changed since test/golden/processor_golden.json was made: check the new "
        "model's metrics, then regenerate with `.venv/bin/python scripts/make_golden.py`")
    got = golden_outputs()
    errs = compare_golden(expected, got)
    assert not errs, "outputs drifted from test/golden/processor_golden.json " \
                     "(scripts/make_golden.py regenerates it after an intended change):\n" + "\n".join(errs)
    assert sum(len(f["instances"]) for f in expected["frames"].values()) > 0


def test_compare_golden_detects_drift():
    e = {"frames": {"a": {"mode": "fused", "order": [1], "edges": [], "grid_shape": [2, 2],
                          "cells": {"occupied": 100, "free": 10, "inferred": 0},
                          "instances": [{"id": 1, "class_id": 1, "score": 0.9, "occlusion_rate": 0.1,
                                         "amodal_area": 1000, "visible_area": 900, "amodal_bbox": [0, 0, 10, 10],
                                         "depth_m": 5.0, "centroid": [5.0, 0.0, 0.5]}]}}}
    g = json.loads(json.dumps(e))
    assert compare_golden(e, g) == []
    inst = g["frames"]["a"]["instances"][0]
    inst["score"] = 0.9 + 0.5 * TOLERANCES["score"]          # within tolerance
    inst["amodal_area"] = 1030                               # 3 % < 5 %
    assert compare_golden(e, g) == []
    inst["depth_m"] = 5.5
    g["frames"]["a"]["cells"]["occupied"] = 120
    errs = compare_golden(e, g)
    assert len(errs) == 2 and "depth" in errs[0] and "occupied" in errs[1]
    g["frames"]["a"]["instances"] = []
    assert "instances" in compare_golden(e, g)[0]

"""RLE helpers: byte-identical to pycocotools, strict validation of malformed RLE."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as pc

from ros2_amodal_seg import masks
from ros2_amodal_seg.errors import MaskEncodingError


@pytest.mark.parametrize("seed", range(5))
def test_encode_matches_pycocotools_byte_for_byte(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 90, 2)
    m = rng.random((h, w)) > rng.uniform(0.05, 0.95)
    ours = masks.encode(m)
    ref = pc.encode(np.asfortranarray(m.astype(np.uint8)))
    assert ours["counts"].encode("ascii") == ref["counts"]
    assert ours["size"] == [int(h), int(w)]
    np.testing.assert_array_equal(masks.decode(ours), m)
    batch = masks.encode_batch(np.stack([m, ~m]))
    assert batch[0] == ours and batch[1]["counts"].encode() == pc.encode(np.asfortranarray((~m).astype(np.uint8)))["counts"]


def test_compressed_total_equals_h_times_w_for_long_runs():
    m = np.zeros((600, 800), bool)
    m[100:500, 3:790] = True  # runs > 2**15 need multi-char LEB128 codes with deltas
    rle = masks.encode(m)
    assert masks._compressed_total(rle["counts"].encode()) == 600 * 800
    np.testing.assert_array_equal(masks.decode(rle, expected_size=(600, 800)), m)


def test_uncompressed_counts_accepted_and_checked():
    r = {"size": [2, 3], "counts": [1, 2, 3]}
    # column-major runs: 1 zero, 2 ones, 3 zeros -> pixels (1,0) and (0,1) set
    np.testing.assert_array_equal(masks.decode(r), np.array([[0, 1, 0], [1, 0, 0]], bool))
    with pytest.raises(MaskEncodingError, match="sum to 5, expected h\\*w = 6"):
        masks.decode({"size": [2, 3], "counts": [1, 2, 2]})


def test_malformed_rle_rejected():
    good = masks.encode(np.eye(8, dtype=bool))
    with pytest.raises(MaskEncodingError, match="expected h\\*w"):
        masks.decode({"size": [8, 9], "counts": good["counts"]})  # wrong size for the counts
    with pytest.raises(MaskEncodingError, match="does not match expected"):
        masks.decode(good, expected_size=(8, 7))
    with pytest.raises(MaskEncodingError, match="'size' and 'counts'"):
        masks.decode({"counts": good["counts"]})
    with pytest.raises(MaskEncodingError, match="invalid character"):
        masks.decode({"size": [8, 8], "counts": "\x01\x02"})
    with pytest.raises(MaskEncodingError, match="2-D"):
        masks.encode(np.zeros((2, 2, 2)))


def test_roi_crop_paste_and_bbox():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    assert masks.bbox_xywh(m) == [3.0, 2.0, 6.0, 3.0]
    roi = masks.roi_of(m)
    assert roi == (3, 2, 6, 3)
    np.testing.assert_array_equal(masks.paste_roi(masks.crop_to_roi(m, roi), roi, (10, 12)), m)
    with pytest.raises(MaskEncodingError, match="outside"):
        masks.paste_roi(np.ones((3, 6), bool), (8, 2, 6, 3), (10, 12))
    assert masks.bbox_xywh(np.zeros((4, 4), bool)) == [0.0, 0.0, 0.0, 0.0]


def test_iou_matrix_hand_computed():
    a = np.zeros((1, 4, 4), bool)
    a[0, :2, :2] = True            # 4 px
    b = np.zeros((2, 4, 4), bool)
    b[0, :2, :] = True             # 8 px, overlap 4 -> IoU 0.5
    # b[1] empty -> 0
    np.testing.assert_allclose(masks.iou_matrix(a, b), [[0.5, 0.0]])

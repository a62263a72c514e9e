"""numpy/dataclass <-> message helpers: round trips and clear errors on malformed input."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as pc
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

import msg_samples
from ros2_amodal_seg.errors import GeometryError, InvalidInputError, MaskEncodingError
from ros2_amodal_seg.ros import conversions as conv


def test_instance_array_roundtrip_and_rle_is_pycocotools():
    d = msg_samples.make_instance_array(0)
    m = conv.instance_array_to_msg(d)
    msg_samples.assert_instance_arrays_equal(d, conv.msg_to_instance_array(m))
    inst, src = m.instances[0], d.instances[0]
    x, y, w, h = conv.msg_to_roi(inst.amodal_roi)
    crop = np.asfortranarray(src.amodal_mask[y:y + h, x:x + w].astype(np.uint8))
    assert inst.amodal_mask.counts.encode() == pc.encode(crop)["counts"]
    assert not m.instances[1].has_3d and m.instances[0].has_3d
    assert m.instances[3].visible_mask.counts == "" and m.instances[3].visible_roi.width == 0


def test_graph_and_bev_roundtrip():
    g = msg_samples.make_graph(0)
    msg_samples.assert_graphs_equal(g, conv.msg_to_graph(conv.graph_to_msg(g)))
    b = msg_samples.make_bev(0)
    mb = conv.bev_to_msg(b)
    assert [d.label for d in mb.data.layout.dim] == ["layer", "row", "column"]
    assert (mb.info.height, mb.info.width) == (30, 40)
    msg_samples.assert_bevs_equal(b, conv.msg_to_bev(mb))


def test_wrong_mask_size_rejected():
    d = msg_samples.make_instance_array(0)
    d.instances[0].amodal_mask = d.instances[0].amodal_mask[:-1]
    with pytest.raises(MaskEncodingError, match="amodal_mask is"):
        conv.instance_array_to_msg(d)


def test_rle_counts_not_summing_to_hw_rejected():
    m = conv.instance_array_to_msg(msg_samples.make_instance_array(0))
    inst = m.instances[0]
    inst.amodal_mask.height += 1          # counts no longer sum to h*w
    inst.amodal_roi.height += 1
    with pytest.raises(MaskEncodingError, match="sum to"):
        conv.msg_to_instance_array(m)
    m2 = conv.instance_array_to_msg(msg_samples.make_instance_array(0))
    m2.instances[0].amodal_mask.width += 1  # RLE size != ROI size
    with pytest.raises(MaskEncodingError, match="but its ROI"):
        conv.msg_to_instance_array(m2)
    m3 = conv.instance_array_to_msg(msg_samples.make_instance_array(0))
    m3.instances[0].amodal_roi.x_offset = 10_000  # ROI outside the image
    with pytest.raises(MaskEncodingError, match="outside"):
        conv.msg_to_instance_array(m3)


def test_bev_size_mismatch_rejected():
    mb = conv.bev_to_msg(msg_samples.make_bev(0))
    mb.info.width += 1
    with pytest.raises(InvalidInputError, match="expected layers\\*rows\\*cols"):
        conv.msg_to_bev(mb)


def _img(enc, h=4, w=5, step=None, data=None):
    ch = 1 if enc == "mono8" else 3
    step = step if step is not None else w * ch
    data = data if data is not None else bytes(range(step * h))
    return Image(height=h, width=w, encoding=enc, step=step, data=data)


def test_image_conversions():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.image_msg_to_rgb(conv.rgb_to_image_msg(rgb, 5, "cam")), rgb)
    bgr = _img("bgr8", data=rgb[:, :, ::-1].tobytes())
    np.testing.assert_array_equal(conv.image_msg_to_rgb(bgr), rgb)
    padded = rgb.reshape(4, 15)
    padded = np.concatenate([padded, np.zeros((4, 3), np.uint8)], axis=1)  # step 18 > 15
    np.testing.assert_array_equal(conv.image_msg_to_rgb(_img("rgb8", step=18, data=padded.tobytes())), rgb)
    mono = conv.image_msg_to_rgb(_img("mono8"))
    assert mono.shape == (4, 5, 3) and (mono[..., 0] == mono[..., 2]).all()
    with pytest.raises(InvalidInputError, match="unsupported image encoding"):
        conv.image_msg_to_rgb(_img("16UC1", step=10))
    with pytest.raises(InvalidInputError, match="truncated"):
        conv.image_msg_to_rgb(_img("rgb8", data=bytes(10)))
    with pytest.raises(InvalidInputError, match="step"):
        conv.image_msg_to_rgb(_img("rgb8", step=7))


def _cloud(fields, point_step, n, data=None, row_step=None):
    return PointCloud2(height=1, width=n, fields=fields, point_step=point_step,
                       row_step=row_step if row_step is not None else point_step * n,
                       data=data if data is not None else bytes(point_step * n), is_dense=False)


def test_pointcloud_any_layout_and_errors():
    pts = np.array([[1, 2, 3, 9], [np.nan, 0, 0, 1], [4, 5, 6, 7]], np.float32)
    back, dropped = conv.pointcloud2_to_xyzi(conv.xyzi_to_pointcloud2(pts, 1, "lidar"))
    assert dropped == 1
    np.testing.assert_array_equal(back, pts[[0, 2]])
    # an Ouster-like layout: x y z, padding, intensity as float32 at 16, ring uint16 at 20, point_step 24
    F = PointField
    fields = [F(name="x", offset=0, datatype=F.FLOAT32, count=1), F(name="y", offset=4, datatype=F.FLOAT32, count=1),
              F(name="z", offset=8, datatype=F.FLOAT32, count=1),
              F(name="intensity", offset=16, datatype=F.FLOAT32, count=1),
              F(name="ring", offset=20, datatype=F.UINT16, count=1)]
    rec = np.zeros(2, dtype=np.dtype({"names": ["x", "y", "z", "i", "r"], "formats": ["f4"] * 4 + ["u2"],
                                      "offsets": [0, 4, 8, 16, 20], "itemsize": 24}))
    rec["x"], rec["y"], rec["z"], rec["i"], rec["r"] = [1, 2], [3, 4], [5, 6], [7, 8], [1, 2]
    out, _ = conv.pointcloud2_to_xyzi(_cloud(fields, 24, 2, rec.tobytes()))
    np.testing.assert_array_equal(out, [[1, 3, 5, 7], [2, 4, 6, 8]])
    # no intensity -> zeros
    out, _ = conv.pointcloud2_to_xyzi(_cloud(fields[:3], 12, 1, np.float32([1, 2, 3]).tobytes()))
    np.testing.assert_array_equal(out, [[1, 2, 3, 0]])
    with pytest.raises(InvalidInputError, match="no 'z' field"):
        conv.pointcloud2_to_xyzi(_cloud(fields[:2], 12, 1))
    with pytest.raises(InvalidInputError, match="exceeds point_step"):
        conv.pointcloud2_to_xyzi(_cloud(fields[:3], 10, 1, bytes(10)))
    with pytest.raises(InvalidInputError, match="truncated"):
        conv.pointcloud2_to_xyzi(_cloud(fields[:3], 12, 4, bytes(20)))
    bad = [F(name="x", offset=0, datatype=F.FLOAT64, count=1)] + fields[1:3]
    with pytest.raises(InvalidInputError, match="must be FLOAT32"):
        conv.pointcloud2_to_xyzi(_cloud(bad, 16, 1))


def test_camera_info_and_transforms():
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    k2, d2, size = conv.camera_info_to_KD(conv.KD_to_camera_info(K, np.zeros(5), (480, 640), 0, "cam"))
    np.testing.assert_array_equal(k2, K)
    assert size == (480, 640)
    with pytest.raises(GeometryError, match="focal length"):
        conv.camera_info_to_KD(CameraInfo(k=[0.0] * 9))
    T = np.eye(4)
    c, s = np.cos(0.7), np.sin(0.7)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(conv.transform_to_matrix(conv.matrix_to_transform(T)), T, atol=1e-12)


def test_stamp_roundtrip():
    assert conv.time_to_ns(conv.ns_to_time(1_234_567_890_123)) == 1_234_567_890_123
    with pytest.raises(InvalidInputError):
        conv.ns_to_time(-1)

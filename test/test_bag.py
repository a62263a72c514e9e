"""The bag written by ``generate --bag`` round-trips through rosbags (types, counts, stamps, contents)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ros2_amodal_seg.data.bag import (TOPIC_IMAGE, TOPIC_INFO, TOPIC_POINTS, TOPIC_TF_STATIC, bag_topics,
                                      frame_stamps, pointcloud2_to_array, read_bag)
from ros2_amodal_seg.transforms import quaternion_to_rotation
from ros2_amodal_seg.errors import DatasetError
from ros2_amodal_seg.world.cli import generate

N = 4


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag_dataset(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bag_{request.param}")
    generate("shapes-tabletop", N, 5, out, width=160, height=120, bag=True, storage=request.param, progress=False)
    return out, request.param


def test_bag_metadata(bag_dataset):
    out, storage = bag_dataset
    meta = (out / "bag" / "metadata.yaml").read_text()
    assert f"storage_identifier: {storage}" in meta
    topics = bag_topics(out / "bag")
    assert topics[TOPIC_IMAGE]["type"] == "sensor_msgs/msg/Image"
    assert topics[TOPIC_INFO]["type"] == "sensor_msgs/msg/CameraInfo"
    assert topics[TOPIC_POINTS]["type"] == "sensor_msgs/msg/PointCloud2"
    assert topics[TOPIC_TF_STATIC]["type"] == "tf2_msgs/msg/TFMessage"
    assert [topics[t]["count"] for t in (TOPIC_IMAGE, TOPIC_INFO, TOPIC_POINTS, TOPIC_TF_STATIC)] == [N, N, N, 1]
    for t in (TOPIC_IMAGE, TOPIC_INFO, TOPIC_POINTS):
        q = topics[t]["qos"][0]
        assert q.reliability.name == "BEST_EFFORT" and q.durability.name == "VOLATILE"
    q = topics[TOPIC_TF_STATIC]["qos"][0]
    assert q.reliability.name == "RELIABLE" and q.durability.name == "TRANSIENT_LOCAL" and q.depth == 1
    assert "serialization_format: cdr" in meta


def test_bag_contents_match_dataset(bag_dataset):
    out, _ = bag_dataset
    doc = json.loads((out / "annotations.json").read_text())
    images = doc["images"]
    assert len(images) == N
    msgs = list(read_bag(out / "bag"))
    log_times = [m.log_time_ns for m in msgs]
    assert log_times == sorted(log_times)
    by_topic: dict[str, list] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)
    cam, lid = frame_stamps(N, 5)
    for i, im in enumerate(images):
        assert im["stamp_ns"] == int(cam[i]) and im["lidar_stamp_ns"] == int(lid[i])
        img = by_topic[TOPIC_IMAGE][i].msg
        st = img.header.stamp.sec * 1_000_000_000 + img.header.stamp.nanosec
        assert st == im["stamp_ns"]
        assert img.encoding == "rgb8" and img.header.frame_id == "camera_optical_frame"
        assert (img.height, img.width, img.step) == (120, 160, 480)
        png = cv2.cvtColor(cv2.imread(str(out / im["file_name"])), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(np.asarray(img.data).reshape(120, 160, 3), png)
        info = by_topic[TOPIC_INFO][i].msg
        assert info.distortion_model == "plumb_bob" and len(info.d) == 5
        np.testing.assert_allclose(np.asarray(info.k), im["camera"]["K"])
        np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3].reshape(-1), im["camera"]["K"])
        np.testing.assert_allclose(np.asarray(info.r), np.eye(3).reshape(-1))
        pc = by_topic[TOPIC_POINTS][i].msg
        pst = pc.header.stamp.sec * 1_000_000_000 + pc.header.stamp.nanosec
        assert pst == im["lidar_stamp_ns"] and pc.header.frame_id == "lidar"
        assert pc.is_dense and [f.name for f in pc.fields] == ["x", "y", "z", "intensity"]
        assert all(f.datatype == 7 and f.count == 1 for f in pc.fields)
        np.testing.assert_array_equal(pointcloud2_to_array(pc), np.load(out / im["lidar_file_name"]))
        # every image has its own sweep within 50 ms, stamps differ
        assert 0 < abs(pst - st) < 50_000_000
        # the camera rig is the same for the whole bag (one robot)
        assert im["T_base_camera"] == images[0]["T_base_camera"] and im["camera"] == images[0]["camera"]
    tf = by_topic[TOPIC_TF_STATIC][0].msg
    frames = {(t.header.frame_id, t.child_frame_id): t.transform for t in tf.transforms}
    assert set(frames) == {("base_link", "camera_optical_frame"), ("camera_optical_frame", "lidar")}
    for (parent, child), key in ((("base_link", "camera_optical_frame"), "T_base_camera"),
                                 (("camera_optical_frame", "lidar"), "T_camera_lidar")):
        tr = frames[(parent, child)]
        T = np.eye(4)
        T[:3, :3] = quaternion_to_rotation([tr.rotation.x, tr.rotation.y, tr.rotation.z, tr.rotation.w])
        T[:3, 3] = [tr.translation.x, tr.translation.y, tr.translation.z]
        np.testing.assert_allclose(T, np.array(images[0][key]).reshape(4, 4), atol=1e-9)
    assert by_topic[TOPIC_TF_STATIC][0].log_time_ns < by_topic[TOPIC_IMAGE][0].log_time_ns


def test_bag_refuses_existing_folder(bag_dataset, tmp_path):
    out, _ = bag_dataset
    with pytest.raises(DatasetError, match="already exists"):
        generate("shapes-tabletop", 1, 0, out, width=32, height=24, bag=True, progress=False)


def test_read_bag_missing(tmp_path):
    with pytest.raises(DatasetError, match="cannot open bag"):
        list(read_bag(tmp_path / "nope"))

"""``visualization_msgs/MarkerArray`` of one frame's instances for rviz.

Order of markers: one ``DELETEALL`` (clears the previous frame), then per instance with
3-D geometry an oriented box (ns ``boxes``), a label (ns ``labels``: class, score,
occlusion % and depth) and its ground footprint (ns ``footprints``), then one arrow per
occlusion edge from the occluder to the occludee (ns ``occlusion``) where both have 3-D.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ros2_amodal_seg.ros.conversions import make_header
from ros2_amodal_seg.runtime.overlay import instance_color, instance_label
from ros2_amodal_seg.types import AmodalInstanceArrayData, OcclusionGraphData


def _color(instance_id: int, a: float) -> ColorRGBA:
    r, g, b = instance_color(instance_id)
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(a))


def _finite(v) -> bool:
    return bool(np.all(np.isfinite(np.asarray(v, dtype=np.float64))))


def build_markers(instances: AmodalInstanceArrayData, graph: OcclusionGraphData | None = None, *,
                  lifetime_s: float = 0.0, box_alpha: float = 0.45) -> MarkerArray:
    """Markers for one frame (see the module docstring).

    Args:
        instances: the frame's instances (3-D fields in ``instance.frame_id``, metres).
        graph: its occlusion graph (arrows), or None.
        lifetime_s: marker lifetime [s] (0 = until replaced by the next DELETEALL).
        box_alpha: opacity of the boxes.
    """
    stamp = instances.stamp_ns
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    out = [Marker(header=make_header(stamp, instances.instances[0].frame_id if instances.instances else "base_link"),
                  action=Marker.DELETEALL)]
    centers: dict[int, np.ndarray] = {}
    tops: dict[int, float] = {}
    for inst in instances.instances:
        if not _finite(inst.centroid):
            continue
        c = np.asarray(inst.centroid, np.float64)
        size = np.asarray(inst.box_size, np.float64)
        size = np.where(np.isfinite(size) & (size > 0), size, 0.05)
        q = np.asarray(inst.box_orientation, np.float64)
        if not _finite(q) or np.linalg.norm(q) < 1e-9:
            q = np.array([0.0, 0.0, 0.0, 1.0])
        hdr = make_header(stamp, inst.frame_id)
        centers[inst.id] = c
        tops[inst.id] = float(c[2] + 0.5 * size[2])
        out.append(Marker(
            header=hdr, ns="boxes", id=int(inst.id), type=Marker.CUBE, action=Marker.ADD,
            pose=Pose(position=Point(x=c[0], y=c[1], z=c[2]), orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3])),
            scale=Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])),
            color=_color(inst.id, box_alpha), lifetime=life))
        text_h = float(np.clip(0.25 * float(np.max(size)), 0.02, 0.6))
        out.append(Marker(
            header=hdr, ns="labels", id=int(inst.id), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
            pose=Pose(position=Point(x=c[0], y=c[1], z=tops[inst.id] + 1.2 * text_h),
                      orientation=Quaternion(w=1.0)),
            scale=Vector3(x=0.0, y=0.0, z=text_h), color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0),
            text=instance_label(inst.class_name, inst.score, inst.occlusion_rate, inst.depth_m), lifetime=life))
        fp = np.asarray(inst.footprint, np.float64).reshape(-1, 2)
        if len(fp) >= 3 and _finite(fp):
            loop = np.vstack([fp, fp[:1]])
            out.append(Marker(
                header=hdr, ns="footprints", id=int(inst.id), type=Marker.LINE_STRIP, action=Marker.ADD,
                pose=Pose(orientation=Quaternion(w=1.0)), scale=Vector3(x=max(0.005, 0.05 * text_h), y=0.0, z=0.0),
                color=_color(inst.id, 1.0), points=[Point(x=float(x), y=float(y), z=0.0) for x, y in loop],
                lifetime=life))
    if graph is not None:
        frame = next((i.frame_id for i in instances.instances), "base_link")
        for k, e in enumerate(graph.edges):
            a, b = centers.get(e.occluder_id), centers.get(e.occludee_id)
            if a is None or b is None:
                continue
            za, zb = tops[e.occluder_id], tops[e.occludee_id]
            length = float(np.linalg.norm(b - a))
            shaft = float(np.clip(0.03 * length, 0.005, 0.15))
            out.append(Marker(
                header=make_header(stamp, frame), ns="occlusion", id=k, type=Marker.ARROW, action=Marker.ADD,
                pose=Pose(orientation=Quaternion(w=1.0)),
                points=[Point(x=float(a[0]), y=float(a[1]), z=za), Point(x=float(b[0]), y=float(b[1]), z=zb)],
                scale=Vector3(x=shaft, y=2 * shaft, z=3 * shaft),
                color=ColorRGBA(r=1.0, g=0.2, b=0.2, a=max(0.3, min(1.0, float(e.confidence)))), lifetime=life))
    return MarkerArray(markers=out)


def marker_summary(m: MarkerArray) -> dict[str, int]:
    """Count of ADD markers per namespace (tests, logs)."""
    out: dict[str, int] = {}
    for mk in m.markers:
        if mk.action == Marker.ADD:
            out[mk.ns] = out.get(mk.ns, 0) + 1
    return out


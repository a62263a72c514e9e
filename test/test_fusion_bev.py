"""BEV grid: indexing round trip and edges, layers, ray-cast free space, costmap, rendering."""
import numpy as np
import pytest

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.fusion.bev import (BevConfig, BevGrid, BevInstance, bev_to_rgb, build_bev, render_bev_png,
                                        to_occupancy_grid)
from ros2_amodal_seg.types import BEV_LAYERS


def test_grid_shape_and_origin_are_derived_once():
    g = BevGrid(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), resolution=0.5)
    assert g.shape == (8, 8) and g.origin_xy.tolist() == [0.0, -2.0]
    g2 = BevGrid(x_range=(0.0, 1.05), y_range=(0.0, 0.3), resolution=0.1)
    assert g2.shape == (3, 11) and g2.x_max == pytest.approx(1.1)        # ceil, last cell reaches past max
    with pytest.raises(ConfigError):
        BevGrid(x_range=(1.0, 1.0), y_range=(0, 1), resolution=0.1)
    with pytest.raises(ConfigError):
        BevGrid(x_range=(0.0, 1.0), y_range=(0, 1), resolution=0.0)


def test_index_round_trip_for_every_cell():
    g = BevGrid(x_range=(-3.0, 5.0), y_range=(-4.0, 2.0), resolution=0.2)
    rr, cc = np.meshgrid(np.arange(g.rows), np.arange(g.cols), indexing="ij")
    xy = g.cell_to_world(rr.ravel(), cc.ravel())
    r, c, inside = g.world_to_cell(xy)
    assert inside.all() and (r == rr.ravel()).all() and (c == cc.ravel()).all()
    lin, sel = g.linear_index(xy)
    assert (lin == rr.ravel() * g.cols + cc.ravel()).all() and len(sel) == g.rows * g.cols


def test_boundaries_negative_coordinates_and_outside():
    g = BevGrid(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), resolution=0.1)
    pts = np.array([
        [0.0, -2.0],        # lower-left corner: inside, cell (0, 0)
        [4.0, 0.0],         # on the upper x edge: outside (half-open)
        [3.9999, 1.9999],   # last cell
        [0.3, -1.7],        # exactly on inner edges (0.3 / 0.1 = 2.9999999999999996 in floats)
        [1.0, -0.05],       # negative y inside
        [-0.0001, 0.0],     # just below x_min
        [2.0, 2.0],         # on the upper y edge
        [np.nan, 0.0],      # NaN: outside
        [1e9, -1e9],        # far away
    ])
    r, c, inside = g.world_to_cell(pts)
    assert inside.tolist() == [True, False, True, True, True, False, False, False, False]
    assert (r[0], c[0]) == (0, 0)
    assert (r[2], c[2]) == (39, 39)
    assert (r[3], c[3]) == (3, 3)
    assert (r[4], c[4]) == (19, 10)


def test_rasterize_polygon_covers_cell_centres():
    g = BevGrid(x_range=(0.0, 2.0), y_range=(0.0, 2.0), resolution=0.1)
    m = g.rasterize_polygon(np.array([[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]))
    rows, cols = np.nonzero(m)
    assert rows.min() == 5 and rows.max() in (9, 10) and cols.min() == 5 and cols.max() in (9, 10)
    assert m[5:10, 5:10].all() and m.sum() <= 36


def _scene():
    """Sensor at the origin. Ground rays fan out over azimuths -10..10 deg to 6 m, except
    where a 0.5 m high wall at x = 3 m, 0.1 < y < 0.5 stops them (no ground hit behind it)."""
    pts = []
    for az in np.deg2rad(np.arange(-10.0, 10.01, 0.25)):
        d = np.array([np.cos(az), np.sin(az)])
        y_wall = 3.0 * np.tan(az)
        stop = 3.0 / np.cos(az) if 0.1 < y_wall < 0.5 else 6.0
        for rng in np.arange(0.5, stop - 1e-9, 0.1):
            pts.append([*(rng * d), 0.0])
        if stop < 6.0:
            pts += [[3.0, y_wall, 0.2], [3.0, y_wall, 0.5]]
    return np.array(pts, np.float32)


def test_layers_free_space_occupancy_and_costmap():
    cfg = BevConfig(x_range=(0.0, 8.0), y_range=(-4.0, 4.0), resolution=0.5, azimuth_bins=360)
    g = cfg.make_grid()
    inst = BevInstance(id=3, class_id=2, footprint=np.array([[4.1, 1.1], [4.9, 1.1], [4.9, 1.9], [4.1, 1.9]]),
                       height=0.8, rank=0, points=np.zeros((0, 3)))
    bev, occ, warns = build_bev(g, _scene(), np.zeros(2), [inst], cfg, stamp_ns=7)
    assert tuple(bev.layers) == BEV_LAYERS and bev.shape == (16, 16) and bev.stamp_ns == 7
    assert occ.dtype == np.int8 and set(np.unique(occ)) <= {-1, 0, 70, 100}
    r, c, _ = g.world_to_cell(np.array([[3.0, 0.3], [2.0, 0.1], [5.5, -0.6], [7.5, 3.5], [4.5, 1.5], [4.5, 0.3]]))
    wall, before, along, far, fp, shadow = zip(r, c)
    L = bev.layers
    assert L["occupancy"][wall] == 1 and occ[wall] == 100 and L["height"][wall] == pytest.approx(0.5)
    assert L["occupancy"][before] == 0 and occ[before] == 0 and L["height"][before] == 0   # ray passed
    assert L["occupancy"][along] == 0                                  # ground hits out to 6 m
    assert np.isnan(L["occupancy"][shadow]) and occ[shadow] == -1     # behind the wall
    assert np.isnan(L["occupancy"][far]) and occ[far] == -1           # no ray: unknown
    assert L["inferred_occupancy"][fp] == 1 and occ[fp] == 70
    assert L["instance_id"][fp] == 3 and L["class_id"][fp] == 2 and L["height"][fp] == pytest.approx(0.8)
    assert (L["inferred_occupancy"] > 0).sum() == 4                    # 2x2 cells


def test_inferred_value_and_free_priority():
    cfg = BevConfig(x_range=(0.0, 8.0), y_range=(-4.0, 4.0), resolution=0.5, azimuth_bins=360, inferred_value=55)
    g = cfg.make_grid()
    inst = BevInstance(id=1, class_id=1, footprint=np.array([[1.6, -0.4], [1.9, -0.4], [1.9, -0.1], [1.6, -0.1]]),
                       height=np.nan, rank=0, points=np.zeros((0, 3)))
    bev, occ, _ = build_bev(g, _scene(), np.zeros(2), [inst], cfg)
    r, c, _ = g.world_to_cell(np.array([[1.75, -0.25]]))
    assert bev.layers["occupancy"][r[0], c[0]] == 0 and occ[r[0], c[0]] == 55
    assert to_occupancy_grid(bev, 55, inferred_overrides_free=False)[r[0], c[0]] == 0


def test_ransac_ground_handles_an_offset_ground_plane():
    rng = np.random.default_rng(1)
    ground = np.c_[rng.uniform(1, 7, 3000), rng.uniform(-3, 3, 3000), np.full(3000, 0.12)]
    box = np.c_[rng.uniform(4, 4.3, 200), rng.uniform(0, 0.3, 200), rng.uniform(0.4, 0.8, 200)]
    pts = np.concatenate([ground, box])
    base = dict(x_range=(0.0, 8.0), y_range=(-4.0, 4.0), resolution=0.5)
    g = BevGrid(**base)
    occ_h = build_bev(g, pts, np.zeros(2), [], BevConfig(**base, ground_method="height"))[0].layers["occupancy"]
    occ_r, _, w = build_bev(g, pts, np.zeros(2), [], BevConfig(**base, ground_method="ransac"))
    assert (occ_h == 1).sum() > 100                   # 12 cm ground above the 5 cm threshold: all "obstacle"
    assert (occ_r.layers["occupancy"] == 1).sum() == 1 and w == []


def test_no_points_gives_unknown_grid_and_png(tmp_path):
    cfg = BevConfig(x_range=(0.0, 4.0), y_range=(-2.0, 2.0), resolution=0.5)
    inst = BevInstance(id=1, class_id=1, footprint=np.array([[1.1, 0.1], [1.9, 0.1], [1.9, 0.9], [1.1, 0.9]]),
                       height=1.0, rank=0, points=np.zeros((0, 3)))
    bev, occ, _ = build_bev(cfg.make_grid(), None, np.zeros(2), [inst], cfg)
    assert (occ[bev.layers["inferred_occupancy"] == 0] == -1).all() and (occ == 70).sum() == 4
    rgb = bev_to_rgb(bev)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    # +x up, +y left: cell (row 4 = y 0..0.5, col 2 = x 1..1.5) -> image (row 8-1-2, col 8-1-4)
    assert bev.layers["inferred_occupancy"][4, 2] == 1
    assert tuple(rgb[5, 3]) != (128, 128, 128) and tuple(rgb[0, 0]) == (128, 128, 128)
    assert (np.argwhere((rgb != 128).any(axis=2)) == [[4, 2], [4, 3], [5, 2], [5, 3]]).all()
    out = render_bev_png(bev, tmp_path / "bev.png")
    assert out.exists() and out.stat().st_size > 100


def test_config_validation():
    with pytest.raises(ConfigError):
        BevConfig(ground_method="magic")
    with pytest.raises(ConfigError):
        BevConfig(inferred_value=100)
    with pytest.raises(ConfigError):
        BevConfig(x_range=(5.0, 1.0))

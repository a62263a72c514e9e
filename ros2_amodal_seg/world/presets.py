"""Scene presets of the synthetic world (shared/spec/world.md), as frozen configs.

The numbers here are the contract of ``shared/spec/world.md``; ``config/world.yaml``
mirrors them (``load_world_config`` reads it and checks that it matches).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ros2_amodal_seg.errors import ConfigError

#: Reference image width [px] at which the focal length range is given; other
#: sizes scale K by ``width / REF_WIDTH`` so that the field of view is unchanged.
REF_WIDTH = 640
REF_HEIGHT = 480


@dataclass(frozen=True)
class PresetConfig:
    """One scene family.

    Attributes (units: metres, degrees, pixels at the 640 px reference width):
        name: the preset's name (``"tabletop"``, ``"street"``, ``"shapes-tabletop"``, ``"shapes-street"``).
        family: ``"tabletop"`` (grasping) or ``"street"`` (navigation): the scene layout and LiDAR.
        version: world version: 1 (geometric primitives, ``shapes-*``) or 2 (real textured models).
        class_ids: the category ids a scene may contain (ids of :func:`ros2_amodal_seg.classes.classes_for_preset`).
        num_objects: inclusive (min, max) objects per scene.
        size_range: (min, max) largest extent of an object [m].
        camera_height: (min, max) camera height above z = 0 of base_link [m].
        camera_pitch_deg: (min, max) downward pitch of the optical axis [deg].
        fx_range: (min, max) focal length fx = fy [px] at 640 px width.
        principal_jitter_px: max offset of (cx, cy) from the image centre [px].
        noise_sigma_max: max Gaussian pixel-noise sigma [of 255].
        lidar_beams, lidar_vfov_deg, lidar_azimuth_steps, lidar_range: spinning
            pattern (beams, (min, max) elevation [deg], steps per turn, (min, max) range [m]).
        lidar_up, lidar_back: LiDAR mount offset from the camera along the camera
            head's up axis and backwards along its viewing axis [m].
        lidar_range_noise: Gaussian range-noise sigma [m]; lidar_dropout: share of
            beams dropped at random.
        place_x_range: (min, max) distance ahead in base_link x of street objects [m].
        table_size: (length along x, width along y) of the table top [m] (version 1 tabletop).
        table_length_range, table_width_range: (min, max) table-top length / width [m]
            (version 2 tabletop: drawn per scene).
        floor_depth: distance of the floor below the table top [m] (tabletop).
        cluster_sigma: std-dev of object positions around a cluster centre [m] (tabletop).
        min_gap: clearance between object footprints [m] (0: objects may touch).
        lod_triangles_per_px2: version 2: an object gets the coarsest level of detail with at
            least this many triangles per squared pixel of its projected diameter (640 px width).
        max_background_triangles: version 2: catalogue trees and hedges whose coarsest level of
            detail has more triangles are replaced by procedural ones.
    """

    name: str
    family: str
    version: int
    class_ids: tuple[int, ...]
    num_objects: tuple[int, int]
    size_range: tuple[float, float]
    camera_height: tuple[float, float]
    camera_pitch_deg: tuple[float, float]
    fx_range: tuple[float, float] = (450.0, 650.0)
    principal_jitter_px: float = 10.0
    noise_sigma_max: float = 3.0
    lidar_beams: int = 32
    lidar_vfov_deg: tuple[float, float] = (-30.0, 10.0)
    lidar_azimuth_steps: int = 1024
    lidar_range: tuple[float, float] = (0.1, 5.0)
    lidar_up: float = 0.10
    lidar_back: float = 0.0
    lidar_range_noise: float = 0.002
    lidar_dropout: float = 0.01
    place_x_range: tuple[float, float] = (3.0, 35.0)
    table_size: tuple[float, float] = (0.8, 0.6)
    table_length_range: tuple[float, float] = (0.6, 1.6)
    table_width_range: tuple[float, float] = (0.5, 1.0)
    floor_depth: float = 0.75
    cluster_sigma: float = 0.08
    min_gap: float = 0.0
    lod_triangles_per_px2: float = 0.04
    max_background_triangles: int = 3000

    def __post_init__(self) -> None:
        for f in ("num_objects", "size_range", "camera_height", "camera_pitch_deg", "fx_range",
                  "lidar_vfov_deg", "lidar_range", "place_x_range", "table_length_range", "table_width_range"):
            lo, hi = getattr(self, f)
            if lo > hi:
                raise ConfigError(f"preset {self.name!r}: {f} must be (min, max) with min <= max, got {(lo, hi)}")
        if self.family not in ("tabletop", "street"):
            raise ConfigError(f"preset {self.name!r}: family must be 'tabletop' or 'street', got {self.family!r}")
        if self.version not in (1, 2):
            raise ConfigError(f"preset {self.name!r}: version must be 1 or 2, got {self.version!r}")
        if not self.class_ids or min(self.class_ids) < 1:
            raise ConfigError(f"preset {self.name!r}: class_ids must be a non-empty list of ids >= 1")
        if self.num_objects[0] < 1:
            raise ConfigError(f"preset {self.name!r}: num_objects must be >= 1")
        if self.size_range[0] <= 0 or self.fx_range[0] <= 0 or self.lidar_range[0] < 0:
            raise ConfigError(f"preset {self.name!r}: sizes, focal lengths and ranges must be positive")
        if self.lidar_beams < 1 or self.lidar_azimuth_steps < 1:
            raise ConfigError(f"preset {self.name!r}: lidar_beams and lidar_azimuth_steps must be >= 1")
        if self.lod_triangles_per_px2 <= 0 or self.max_background_triangles < 0:
            raise ConfigError(f"preset {self.name!r}: lod_triangles_per_px2 must be > 0 and "
                              "max_background_triangles >= 0")
        if not 0.0 <= self.lidar_dropout < 1.0:
            raise ConfigError(f"preset {self.name!r}: lidar_dropout must be in [0, 1)")


#: version 1: geometric primitives on a checkerboard (fast, for tests; the shipped model's world).
SHAPES_TABLETOP = PresetConfig(
    name="shapes-tabletop", family="tabletop", version=1, class_ids=(1, 2, 3, 4, 5),
    num_objects=(4, 14), size_range=(0.04, 0.25), camera_height=(0.45, 0.9),
    camera_pitch_deg=(35.0, 65.0), lidar_beams=32, lidar_vfov_deg=(-30.0, 10.0), lidar_azimuth_steps=1024,
    lidar_range=(0.1, 5.0), lidar_up=0.10, lidar_back=0.0, lidar_range_noise=0.002, min_gap=0.0)

SHAPES_STREET = PresetConfig(
    name="shapes-street", family="street", version=1, class_ids=(1, 2, 3, 4, 5),
    num_objects=(5, 15), size_range=(0.3, 4.5), camera_height=(1.2, 1.8),
    camera_pitch_deg=(0.0, 10.0), lidar_beams=64, lidar_vfov_deg=(-25.0, 15.0), lidar_azimuth_steps=1024,
    lidar_range=(0.5, 80.0), lidar_up=0.30, lidar_back=0.20, lidar_range_noise=0.01,
    place_x_range=(3.0, 35.0), min_gap=0.2)

#: version 2: real textured models of world.md's 13 classes (grasping).
TABLETOP = PresetConfig(
    name="tabletop", family="tabletop", version=2, class_ids=(7, 8, 9, 10, 11, 12, 13),
    num_objects=(4, 14), size_range=(0.02, 0.45), camera_height=(0.4, 1.0),
    camera_pitch_deg=(30.0, 70.0), noise_sigma_max=4.0, lidar_beams=32, lidar_vfov_deg=(-30.0, 10.0),
    lidar_azimuth_steps=1024, lidar_range=(0.1, 5.0), lidar_up=0.10, lidar_back=0.0, lidar_range_noise=0.002,
    table_length_range=(0.6, 1.6), table_width_range=(0.5, 1.0), floor_depth=0.75, cluster_sigma=0.05,
    min_gap=0.0)

#: version 2: real textured models of world.md's 13 classes (navigation).
STREET = PresetConfig(
    name="street", family="street", version=2, class_ids=(1, 2, 3, 4, 5, 6, 13),
    num_objects=(5, 20), size_range=(0.3, 21.0), camera_height=(1.2, 2.0),
    camera_pitch_deg=(-5.0, 10.0), noise_sigma_max=4.0, lidar_beams=64, lidar_vfov_deg=(-25.0, 15.0),
    lidar_azimuth_steps=1024, lidar_range=(0.5, 80.0), lidar_up=0.30, lidar_back=0.20, lidar_range_noise=0.01,
    place_x_range=(3.0, 40.0), min_gap=0.05)

PRESETS: dict[str, PresetConfig] = {c.name: c for c in (TABLETOP, STREET, SHAPES_TABLETOP, SHAPES_STREET)}
#: the realistic presets (version 2) and the primitive ones (version 1).
REALISTIC_PRESETS: tuple[str, ...] = ("tabletop", "street")
SHAPES_PRESETS: tuple[str, ...] = ("shapes-tabletop", "shapes-street")


def get_preset(name: str) -> PresetConfig:
    """The preset called ``name``.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def load_world_config(path: str | Path) -> dict[str, PresetConfig]:
    """Read ``config/world.yaml`` (``presets: {name: {field: value}}``) into configs.

    Fields not given keep the built-in preset's value; unknown fields raise.

    Raises:
        ConfigError: unreadable file, unknown preset or field, or values out of range.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read world config {path}: {exc}") from exc
    presets = data.get("presets", {})
    if not isinstance(presets, dict):
        raise ConfigError(f"{path}: 'presets' must be a mapping")
    known = {f.name for f in fields(PresetConfig)}
    out = dict(PRESETS)
    for name, values in presets.items():
        base = out.get(name, None)
        if base is None:
            raise ConfigError(f"{path}: unknown preset {name!r}; known: {sorted(PRESETS)}")
        bad = set(values or {}) - known
        if bad:
            raise ConfigError(f"{path}: preset {name!r} has unknown fields {sorted(bad)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in (values or {}).items()}
        out[name] = replace(base, **kw)
    return out


def preset_as_dict(cfg: PresetConfig) -> dict:
    """Plain-dict form (tuples as lists), as written to YAML."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}

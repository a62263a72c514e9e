"""Texture pool for grounds, tables, walls and backgrounds (world.md version 2), and sampling.

Three sources, each image named by a pool name that also decides its split:

* ``skimage/<file>``: photographs and textures shipped in the scikit-image wheel
  (``skimage/data``), those with a stated public-domain/CC0 origin and no annotated-class
  object in view (see :data:`SKIMAGE_TEXTURES`; the cat, coffee cup, astronaut, camera man
  and motorcycle images are left out on purpose);
* ``model/<library stem>/<path in zip>``: the texture images of the catalogue's background
  and furniture models (no people, vehicles or annotated objects), at least 64 px, opaque;
* ``procedural/<kind>/<index>``: seamless procedural textures (:func:`procedural_texture`).

Split (world.md): within each *kind* of texture (``ground``, ``wall``, ``table``, ``photo``,
``material``), a texture is a test texture when
``int(sha1(name).hexdigest()[:8], 16) % 5 == 0`` on its pool name, or, where a kind then has
no test texture, the one with the smallest such value.

API::

    from ros2_amodal_seg.world.textures import texture_pool, sample_texture, procedural_texture
    pool = texture_pool("train")            # lazy Mapping name -> [h, w, 3] uint8 RGB
    pool.names(kind="ground")               # sorted names of one kind
    img = pool["skimage/brick.png"]         # loaded on first use, then cached
    rgb = sample_texture(img, uv)           # [N, 3] float32 in [0, 1]; bilinear, repeat, v up

Images are at most ``max_px`` (default 512) on their longer side; grey images are
replicated to RGB (callers may tint them).
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator

import numpy as np

from ros2_amodal_seg.errors import AssetError, InvalidInputError
from ros2_amodal_seg.world.textured import sample_texture

__all__ = ["texture_pool", "TexturePool", "sample_texture", "procedural_texture", "SKIMAGE_TEXTURES",
           "PROCEDURAL_TEXTURE_KINDS", "TEXTURE_KINDS"]

TEXTURE_KINDS: tuple[str, ...] = ("ground", "wall", "table", "photo", "material")

#: scikit-image data file -> (kind, origin and licence as skimage.data documents it).
SKIMAGE_TEXTURES: dict[str, tuple[str, str]] = {
    "brick.png": ("wall", "brick wall, CC0Textures 'Bricks25', CC0"),
    "grass.png": ("ground", "grass, DeviantArt linolafett 'Grass-01', CC0"),
    "gravel.png": ("ground", "gravel, CC0Textures 'Gravel04', CC0"),
    "text.png": ("wall", "text on a wall, Wikipedia 'Corner.png', public domain"),
    "coins.png": ("table", "Greek coins from Pompeii, Brooklyn Museum, no known copyright restrictions"),
    "cell.png": ("photo", "cell in saline, quantitative phase image, CC0"),
    "clock_motion.png": ("photo", "motion-blurred wall clock, Stefan van der Walt, public domain"),
    "hubble_deep_field.jpg": ("photo", "Hubble eXtreme Deep Field, NASA, public domain"),
    "rocket.jpg": ("photo", "DSCOVR launch on Falcon 9, SpaceX, public domain"),
}

#: procedural texture kind -> (pool kind, variants).
PROCEDURAL_TEXTURE_KINDS: dict[str, tuple[str, int]] = {
    "asphalt": ("ground", 8), "concrete": ("ground", 8), "pavers": ("ground", 8), "turf": ("ground", 6),
    "wood": ("table", 10), "marble": ("table", 6), "cloth": ("table", 8), "checker": ("table", 6),
    "plaster": ("wall", 8), "tiles": ("wall", 8), "wallpaper": ("wall", 8),
}

#: SH3D categories whose textures feed the ``material`` kind (furniture, structure).
_MATERIAL_CATEGORIES = {"Living room", "Bedroom", "Kitchen", "Bathroom", "Office", "Doors and windows",
                        "Exterior", "Miscellaneous", "Staircases", "Lights"}
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def _skimage_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


# ----------------------------------------------------------------------------- procedural

def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1(name.encode()).hexdigest()[:16], 16))


def _noise(rng: np.random.Generator, n: int, sigma: float, octaves: int = 3) -> np.ndarray:
    """Seamless fractal noise ``[n, n]`` in [0, 1] (Gaussian-filtered white noise, wrap mode)."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros((n, n))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * gaussian_filter(rng.standard_normal((n, n)), sigma / (2 ** o), mode="wrap")
        total += amp
        amp *= 0.5
    out -= out.min()
    return out / max(out.max(), 1e-9)


def _colour(rng, base, jitter=0.08) -> np.ndarray:
    return np.clip(np.asarray(base, float) + rng.normal(0, jitter, 3), 0, 1)


def procedural_texture(name: str, size: int = 256) -> np.ndarray:
    """A seamless procedural texture, deterministic per name.

    Args:
        name: ``"<kind>/<index>"`` with a kind of :data:`PROCEDURAL_TEXTURE_KINDS` (the index may
            be any integer; the pool uses 0..variants-1).
        size: side [px].

    Returns:
        ``[size, size, 3]`` uint8 RGB.

    Raises:
        AssetError: unknown kind.
    """
    kind, _, idx = name.partition("/")
    if kind not in PROCEDURAL_TEXTURE_KINDS or not idx.lstrip("-").isdigit():
        raise AssetError(f"procedural/{name}", f"unknown procedural texture; kinds: {sorted(PROCEDURAL_TEXTURE_KINDS)}")
    rng = _rng(name)
    n = int(size)
    y, x = np.mgrid[0:n, 0:n] / n
    if kind == "asphalt":
        g = 0.18 + 0.12 * _noise(rng, n, n / 64, 3) + 0.10 * (rng.random((n, n)) > 0.93)
        img = g[..., None] * _colour(rng, (1.0, 1.0, 1.02), 0.02)
    elif kind == "concrete":
        g = 0.5 + 0.25 * (_noise(rng, n, n / 24, 4) - 0.5) + rng.uniform(0, 0.2)
        img = g[..., None] * _colour(rng, (1.0, 0.98, 0.94), 0.03)
    elif kind == "pavers":
        k = int(rng.integers(4, 9))
        gx, gy = (x * k) % 1, (y * k + 0.5 * (np.floor(x * k) % 2)) % 1
        grout = (np.minimum(gx, 1 - gx) < 0.04) | (np.minimum(gy, 1 - gy) < 0.04)
        base = _colour(rng, rng.choice([(0.55, 0.35, 0.3), (0.6, 0.6, 0.58), (0.5, 0.45, 0.4)]), 0.05)
        shade = 0.85 + 0.3 * _noise(rng, n, n / 32, 3)[..., None]
        img = np.where(grout[..., None], base * 0.45, base * shade)
    elif kind == "turf":
        g = _noise(rng, n, n / 80, 4)
        img = np.stack([0.15 + 0.2 * g, 0.35 + 0.3 * g, 0.08 + 0.1 * g], -1) * rng.uniform(0.8, 1.1)
    elif kind == "wood":
        k = int(rng.integers(4, 14))
        warp = _noise(rng, n, n / 10, 3) * rng.uniform(0.5, 2.0)
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (k * x + warp))
        base = _colour(rng, rng.choice([(0.55, 0.35, 0.18), (0.75, 0.55, 0.35), (0.35, 0.2, 0.1),
                                        (0.85, 0.7, 0.5)]), 0.04)
        img = base * (0.75 + 0.25 * rings[..., None]) * (0.9 + 0.2 * _noise(rng, n, 2, 2)[..., None])
    elif kind == "marble":
        t = _noise(rng, n, n / 12, 5) * rng.uniform(3, 6)
        veins = np.abs(np.sin(2 * np.pi * (2 * x + t))) ** 0.3
        base = _colour(rng, rng.choice([(0.92, 0.92, 0.9), (0.2, 0.2, 0.22), (0.85, 0.8, 0.72)]), 0.03)
        img = base * (0.7 + 0.3 * veins[..., None])
    elif kind == "cloth":
        k = int(rng.integers(16, 64))
        weave = 0.85 + 0.15 * np.sin(2 * np.pi * k * x) * np.sin(2 * np.pi * k * y)
        c1, c2 = _colour(rng, rng.random(3), 0.0), _colour(rng, rng.random(3), 0.0)
        m = int(rng.integers(2, 8))
        plaid = ((np.floor(x * m) + np.floor(y * m)) % 2)[..., None] if rng.random() < 0.5 else 0.0
        img = (c1 * (1 - plaid) + c2 * plaid) * weave[..., None]
    elif kind == "checker":
        m = int(rng.integers(2, 12))
        sel = ((np.floor(x * m) + np.floor(y * m)) % 2)[..., None]
        c1, c2 = _colour(rng, rng.random(3), 0.0), _colour(rng, rng.random(3), 0.0)
        img = c1 * sel + c2 * (1 - sel)
    elif kind == "plaster":
        g = 0.8 + 0.15 * (_noise(rng, n, n / 40, 4) - 0.5)
        img = g[..., None] * _colour(rng, rng.choice([(0.95, 0.93, 0.88), (0.85, 0.88, 0.9), (0.95, 0.85, 0.7)]),
                                     0.04)
    elif kind == "tiles":
        k = int(rng.integers(3, 10))
        gx, gy = (x * k) % 1, (y * k) % 1
        grout = (np.minimum(gx, 1 - gx) < 0.03) | (np.minimum(gy, 1 - gy) < 0.03)
        base = _colour(rng, rng.random(3) * 0.6 + 0.35, 0.0)
        shade = 0.95 + 0.1 * _noise(rng, n, 3, 2)[..., None]
        img = np.where(grout[..., None], np.array([0.8, 0.8, 0.78]), base * shade)
    else:  # wallpaper: vertical stripes with a soft pattern
        m = int(rng.integers(4, 16))
        s = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * m * x))
        c1, c2 = _colour(rng, rng.random(3) * 0.5 + 0.45, 0.0), _colour(rng, rng.random(3) * 0.5 + 0.45, 0.0)
        img = c1 * s[..., None] + c2 * (1 - s[..., None])
        img = img * (0.92 + 0.08 * np.cos(2 * np.pi * 4 * y)[..., None])
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- model textures

def _model_texture_index(lib, max_side_min: int = 64) -> list[tuple[str, str, str]]:
    """``[(pool name, library stem, path in zip)]`` of the usable catalogue textures, cached as
    JSON in the asset cache (keyed like the model cache)."""
    from PIL import Image, UnidentifiedImageError

    folders = {}
    for aid, e in lib.entries.items():
        row = lib.class_map.get(aid)
        if e.category not in _MATERIAL_CATEGORIES or (row is not None and row.role == "object"):
            continue
        folders.setdefault(e.library_file.stem, set()).add(e.model.rsplit("/", 1)[0] + "/")
    out = []
    for stem, info in sorted(lib.libraries.items()):
        index_path = lib.cache_folder(stem) / "textures.json"
        if index_path.exists():
            try:
                rows = json.loads(index_path.read_text())
            except (OSError, ValueError):
                rows = None
        else:
            rows = None
        if rows is None:
            rows = []
            icons = {e.icon for e in lib.entries.values() if e.library_file.stem == stem}
            try:
                with zipfile.ZipFile(info.file) as zf:
                    for n in sorted(zf.namelist()):
                        if not n.lower().endswith(_IMAGE_EXT) or n in icons:
                            continue
                        try:
                            with Image.open(io.BytesIO(zf.read(n))) as im:
                                transparent = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
                                rows.append([n, im.size[0], im.size[1], bool(transparent)])
                        except (OSError, UnidentifiedImageError, zipfile.BadZipFile, zlib.error):
                            continue
            except (OSError, zipfile.BadZipFile) as exc:
                raise AssetError(info.file.name, f"cannot index textures: {exc}") from exc
            index_path.parent.mkdir(parents=True, exist_ok=True)
            index_path.write_text(json.dumps(rows))
        keep = folders.get(stem, set())
        for n, w, h, transparent in rows:
            if transparent or min(w, h) < max_side_min or not any(n.startswith(f) for f in keep):
                continue
            out.append((f"model/{stem}/{n}", stem, n))
    return out


# ----------------------------------------------------------------------------- the pool

class TexturePool(Mapping):
    """Lazy mapping pool name -> ``[h, w, 3]`` uint8 RGB image of one split (see module docstring).

    Images load on first access and stay in an LRU cache of ``cache_size`` images.
    """

    def __init__(self, entries: dict[str, tuple[str, str, str]], split: str, lib=None, max_px: int = 512,
                 cache_size: int = 64):
        self._entries = entries          # name -> (kind, source, locator)
        self.split = split
        self._lib = lib
        self.max_px = int(max_px)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = int(cache_size)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __contains__(self, name) -> bool:
        return name in self._entries

    def names(self, kind: str | None = None) -> list[str]:
        """Sorted names, optionally of one kind (:data:`TEXTURE_KINDS`)."""
        if kind is not None and kind not in TEXTURE_KINDS:
            raise InvalidInputError(f"texture kind must be one of {TEXTURE_KINDS}, got {kind!r}")
        return sorted(n for n, (k, _, _) in self._entries.items() if kind is None or k == kind)

    def kind_of(self, name: str) -> str:
        """Kind of a texture of the pool."""
        if name not in self._entries:
            raise AssetError(name, f"not a texture of the {self.split} pool")
        return self._entries[name][0]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._entries:
            raise KeyError(name)
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        img = self._load(name)
        self._cache[name] = img
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return img

    def _load(self, name: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from ros2_amodal_seg.world.assets import _image_to_rgb

        _, source, locator = self._entries[name]
        if source == "procedural":
            return procedural_texture(locator, size=min(256, self.max_px))
        try:
            if source == "skimage":
                with Image.open(_skimage_dir() / locator) as im:
                    return _image_to_rgb(im, self.max_px)
            stem, path = locator.split("/", 1)
            zf = self._lib._zip(self._lib.libraries[stem].file)
            with Image.open(io.BytesIO(zf.read(path))) as im:
                return _image_to_rgb(im, self.max_px)
        except (OSError, KeyError, UnidentifiedImageError, zipfile.BadZipFile, zlib.error) as exc:
            raise AssetError(name, f"texture cannot be read: {exc}") from exc


def pool_entries(lib=None) -> dict[str, tuple[str, str, str]]:
    """Every texture of both splits: name -> (kind, source, locator); model textures only
    when ``lib`` (an :class:`~ros2_amodal_seg.world.assets.AssetLibrary`) is given."""
    entries: dict[str, tuple[str, str, str]] = {}
    data = _skimage_dir()
    for fname, (kind, _) in SKIMAGE_TEXTURES.items():
        if (data / fname).exists():
            entries[f"skimage/{fname}"] = (kind, "skimage", fname)
    for pk, (kind, count) in PROCEDURAL_TEXTURE_KINDS.items():
        for i in range(count):
            entries[f"procedural/{pk}/{i}"] = (kind, "procedural", f"{pk}/{i}")
    if lib is not None:
        for name, stem, path in _model_texture_index(lib):
            entries[name] = ("material", "model", f"{stem}/{path}")
    return entries


def texture_pool(split: str, kind: str | None = None, lib=None, include_model_textures: bool = True,
                 max_px: int = 512) -> TexturePool:
    """The texture pool of one split (world.md: the held-out rule on the pool name, per kind).

    Args:
        split: ``"train"`` or ``"test"``.
        kind: only textures of this kind (:data:`TEXTURE_KINDS`), or all.
        lib: the :class:`~ros2_amodal_seg.world.assets.AssetLibrary` whose model textures to
            include (a default library is made when None and ``include_model_textures``).
        include_model_textures: include the catalogue models' texture images (needs the
            furniture libraries; the first call indexes them, ~10-20 s, then cached).
        max_px: longer side of the returned images [px].

    Raises:
        InvalidInputError: unknown split or kind.
    """
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', got {split!r}")
    if kind is not None and kind not in TEXTURE_KINDS:
        raise InvalidInputError(f"texture kind must be one of {TEXTURE_KINDS}, got {kind!r}")
    if include_model_textures and lib is None:
        from ros2_amodal_seg.world.assets import AssetLibrary

        lib = AssetLibrary()
    from ros2_amodal_seg.world.assets import held_out

    entries = pool_entries(lib if include_model_textures else None)
    test: set[str] = set()
    for k in TEXTURE_KINDS:
        test |= held_out(n for n, e in entries.items() if e[0] == k)
    chosen = {n: e for n, e in entries.items() if ((n in test) == (split == "test")) and (kind is None or e[0] == kind)}
    return TexturePool(chosen, split, lib=lib, max_px=max_px)

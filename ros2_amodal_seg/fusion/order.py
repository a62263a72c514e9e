"""Occlusion graph and front-to-back order from masks, model scores and LiDAR depth.

Evidence for a pair (i, j) whose amodal masks overlap:

* mask (bit 1): ``|amodal_i & visible_j|`` pixels say j is in front of i, and
  ``|amodal_j & visible_i|`` the opposite; the signed share of the two, scaled by
  how many pixels support it (saturating at ``mask_saturation_px``);
* model (bit 2): the order scores (smaller = nearer), ``tanh(diff / model_scale)``;
* lidar (bit 4): the metric depths when both are known, ``tanh(diff / scale)`` with
  ``scale = lidar_scale_abs_m + lidar_scale_rel * mean depth``.

The weighted sum decides the direction; its magnitude over the weight of the
evidence present is the edge confidence in [0, 1]. Edges are then inserted in
decreasing confidence, skipping any that would close a cycle, so the graph is a
DAG; a Kahn topological sort (ties broken by depth, then order score) gives the
front-to-back order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.types import OcclusionEdgeData

SOURCE_MASK = 1
SOURCE_MODEL = 2
SOURCE_LIDAR = 4


@dataclass(frozen=True)
class OrderConfig:
    """Depth-order parameters.

    Attributes:
        min_overlap_px: amodal-amodal overlap needed to consider a pair [px].
        mask_weight, model_weight, lidar_weight: evidence weights (>= 0).
        mask_saturation_px: mask evidence reaches full strength at this many
            supporting pixels [px].
        model_scale: order-score difference giving tanh(1) strength.
        model_min_diff: smaller order-score differences count as no evidence.
        lidar_scale_abs_m, lidar_scale_rel: depth difference giving tanh(1) strength [m].
    """

    min_overlap_px: int = 1
    mask_weight: float = 3.0
    model_weight: float = 1.0
    lidar_weight: float = 1.0
    mask_saturation_px: int = 20
    model_scale: float = 0.1
    model_min_diff: float = 1e-6
    lidar_scale_abs_m: float = 0.05
    lidar_scale_rel: float = 0.05

    def __post_init__(self) -> None:
        if min(self.mask_weight, self.model_weight, self.lidar_weight) < 0:
            raise ConfigError("order evidence weights must be >= 0")
        if self.mask_saturation_px < 1 or self.model_scale <= 0 or self.lidar_scale_abs_m <= 0:
            raise ConfigError("mask_saturation_px, model_scale and lidar_scale_abs_m must be > 0")


@dataclass
class OrderResult:
    """Acyclic occlusion graph over instance ids ``1..N``.

    Attributes:
        edges: kept edges (occluder in front of occludee), highest confidence first.
        dropped: edges removed to break cycles.
        order: ``[N]`` instance ids, nearest first. rank: ``[N]`` int, rank of id k+1.
    """

    edges: list[OcclusionEdgeData]
    dropped: list[OcclusionEdgeData]
    order: list[int]
    rank: np.ndarray


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def overlap_counts(amodal: np.ndarray, visible: np.ndarray, amodal_boxes: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise overlaps.

    Args:
        amodal, visible: ``[N, H, W]`` bool masks.
        amodal_boxes: optional ``[N, 4]`` (r0, r1, c0, c1) boxes of the amodal masks.

    Returns:
        ``(occ [N, N] int64, aa [N, N] int64)``: ``occ[i, j] = |amodal_i & visible_j|``
        (pixels where j hides i) and ``aa[i, j] = |amodal_i & amodal_j|``.
    """
    n = len(amodal)
    occ = np.zeros((n, n), np.int64)
    aa = np.zeros((n, n), np.int64)
    if amodal_boxes is None:
        boxes = [_bbox(a) for a in amodal]
    else:
        boxes = [tuple(int(v) for v in b) if b[1] > b[0] else None for b in amodal_boxes]
    for i in range(n):
        bi = boxes[i]
        if bi is None:
            continue
        for j in range(i + 1, n):
            bj = boxes[j]
            if bj is None:
                continue
            r0, r1 = max(bi[0], bj[0]), min(bi[1], bj[1])
            c0, c1 = max(bi[2], bj[2]), min(bi[3], bj[3])
            if r0 >= r1 or c0 >= c1:
                continue
            ai, aj = amodal[i, r0:r1, c0:c1], amodal[j, r0:r1, c0:c1]
            n_aa = int(np.count_nonzero(ai & aj))
            if n_aa == 0:
                continue
            aa[i, j] = aa[j, i] = n_aa
            occ[i, j] = int(np.count_nonzero(ai & visible[j, r0:r1, c0:c1]))
            occ[j, i] = int(np.count_nonzero(aj & visible[i, r0:r1, c0:c1]))
    return occ, aa


def _reaches(adj: list[set[int]], src: int, dst: int) -> bool:
    stack, seen = [src], {src}
    while stack:
        a = stack.pop()
        if a == dst:
            return True
        for b in adj[a]:
            if b not in seen:
                seen.add(b)
                stack.append(b)
    return False


def resolve_cycles(edges: list[OcclusionEdgeData], n: int
                   ) -> tuple[list[OcclusionEdgeData], list[OcclusionEdgeData]]:
    """Greedy maximum-confidence DAG: insert edges by decreasing confidence, drop
    any edge whose occludee already reaches its occluder.

    Args:
        edges: candidate edges over ids ``1..n``.

    Returns:
        ``(kept, dropped)``, both sorted by decreasing confidence.
    """
    adj: list[set[int]] = [set() for _ in range(n + 1)]
    kept, dropped = [], []
    for e in sorted(edges, key=lambda e: (-e.confidence, e.occluder_id, e.occludee_id)):
        if e.occluder_id == e.occludee_id or _reaches(adj, e.occludee_id, e.occluder_id):
            dropped.append(e)
            continue
        adj[e.occluder_id].add(e.occludee_id)
        kept.append(e)
    return kept, dropped


def topological_order(n: int, edges: list[OcclusionEdgeData], key: np.ndarray) -> list[int]:
    """Kahn's algorithm over ids ``1..n``: among the nodes with no unplaced occluder,
    the one with the smallest ``key[id - 1]`` comes first.

    Args:
        edges: acyclic edges. key: ``[n]`` float tie-break (e.g. depth; NaN last).

    Raises:
        InvalidInputError: if the edges contain a cycle.
    """
    import heapq

    indeg = np.zeros(n + 1, np.int64)
    adj: list[list[int]] = [[] for _ in range(n + 1)]
    for e in edges:
        adj[e.occluder_id].append(e.occludee_id)
        indeg[e.occludee_id] += 1
    kk = np.where(np.isfinite(key), key, np.inf)
    heap = [(float(kk[i - 1]), i) for i in range(1, n + 1) if indeg[i] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, a = heapq.heappop(heap)
        order.append(a)
        for b in adj[a]:
            indeg[b] -= 1
            if indeg[b] == 0:
                heapq.heappush(heap, (float(kk[b - 1]), b))
    if len(order) != n:
        raise InvalidInputError("occlusion edges contain a cycle; call resolve_cycles first")
    return order


def build_occlusion_graph(amodal: np.ndarray, visible: np.ndarray, order_scores: np.ndarray,
                          depths: np.ndarray, config: OrderConfig = OrderConfig(), *,
                          amodal_boxes: np.ndarray | None = None) -> OrderResult:
    """Occlusion graph over instance ids ``1..N`` (input order).

    Args:
        amodal, visible: ``[N, H, W]`` bool masks.
        order_scores: ``[N]`` float model order scores, smaller = nearer (NaN = none).
        depths: ``[N]`` float metric depths [m] (camera z), NaN where unknown.
        config: weights and scales.
        amodal_boxes: optional ``[N, 4]`` precomputed amodal boxes (speed).

    Returns:
        :class:`OrderResult` (acyclic).
    """
    n = len(amodal)
    order_scores = np.asarray(order_scores, dtype=np.float64).reshape(-1)
    depths = np.asarray(depths, dtype=np.float64).reshape(-1)
    if len(order_scores) != n or len(depths) != n or visible.shape != amodal.shape:
        raise InvalidInputError(f"order inputs disagree: {n} amodal masks, visible {visible.shape}, "
                                f"{len(order_scores)} order scores, {len(depths)} depths")
    occ, aa = overlap_counts(amodal, visible, amodal_boxes)
    cands: list[OcclusionEdgeData] = []
    for i in range(n):
        for j in range(i + 1, n):
            if aa[i, j] < config.min_overlap_px:
                continue
            # positive s: j in front of i
            s, wsum, parts = 0.0, 0.0, []
            e_ji, e_ij = occ[i, j], occ[j, i]  # j hides i / i hides j
            if e_ji + e_ij > 0 and config.mask_weight > 0:
                strength = min(1.0, max(e_ji, e_ij) / config.mask_saturation_px)
                m = (e_ji - e_ij) / (e_ji + e_ij) * strength
                s += config.mask_weight * m
                wsum += config.mask_weight
                parts.append((SOURCE_MASK, m))
            si, sj = order_scores[i], order_scores[j]
            if np.isfinite(si) and np.isfinite(sj) and abs(si - sj) > config.model_min_diff \
                    and config.model_weight > 0:
                m = float(np.tanh((si - sj) / config.model_scale))
                s += config.model_weight * m
                wsum += config.model_weight
                parts.append((SOURCE_MODEL, m))
            di, dj = depths[i], depths[j]
            if np.isfinite(di) and np.isfinite(dj) and config.lidar_weight > 0:
                scale = config.lidar_scale_abs_m + config.lidar_scale_rel * 0.5 * (di + dj)
                m = float(np.tanh((di - dj) / scale))
                s += config.lidar_weight * m
                wsum += config.lidar_weight
                parts.append((SOURCE_LIDAR, m))
            if wsum == 0 or s == 0:
                continue
            front, back = (j, i) if s > 0 else (i, j)
            source = 0
            for bit, m in parts:
                if m * s > 0:
                    source |= bit
            overlap = int(occ[back, front]) if occ[back, front] > 0 else int(aa[i, j])
            cands.append(OcclusionEdgeData(occluder_id=front + 1, occludee_id=back + 1, overlap_px=overlap,
                                           confidence=float(min(1.0, abs(s) / wsum)), source=source))
    kept, dropped = resolve_cycles(cands, n)
    key = np.where(np.isfinite(depths), depths, np.nan)
    if not np.isfinite(key).any():
        key = np.where(np.isfinite(order_scores), order_scores, np.nan)
    elif np.isfinite(order_scores).any():
        # depth-less instances: place them by order score among the known depths
        miss = ~np.isfinite(key) & np.isfinite(order_scores)
        if miss.any():
            known = np.isfinite(key) & np.isfinite(order_scores)
            if known.sum() >= 2 and np.ptp(order_scores[known]) > 0:
                fit = np.polyfit(order_scores[known], key[known], 1)
                key[miss] = np.polyval(fit, order_scores[miss])
    order = topological_order(n, kept, key)
    rank = np.empty(n, np.int64)
    for r, i in enumerate(order):
        rank[i - 1] = r
    return OrderResult(edges=kept, dropped=dropped, order=order, rank=rank)

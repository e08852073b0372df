"""Tasks of a sharded output (:mod:`pipeline.execution.tiling`): blocks stay the output chunks,
every Zarr shard's blocks are in one task (no two tasks write one shard), each block once, the
dry run's task count is the number of tasks made, and the blocks to compute grow to whole shards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.execution import tiling
from pipeline.plan.planner import ArraySpec, make_plan

PLANS = {
    "2-D": dict(shape=(100, 130), chunks=(10, 10), size=5, shards=[30, 40]),
    "2-D, a merged 1-pixel tail": dict(shape=(101, 131), chunks=(10, 10), size=7, shards=20),
    "3-D, window on the last two axes": dict(shape=(3, 50, 70), chunks=(1, 10, 10), size=3, shards=20),
}


def plan_of(case: dict):
    dims = ("band", "y", "x")[-len(case["shape"]):]
    spec = {"a": ArraySpec("a", case["shape"], np.dtype("uint16"), chunks=case["chunks"], dims=dims)}
    return make_plan("a", spec, size=case["size"], chunks=case["chunks"][-1], shards=case["shards"])


def zarr_shards(plan, index) -> set[tuple[int, ...]]:
    """The Zarr shards (pixel coordinates // shard side) block ``index`` covers, from its region."""
    region = tiling.output_region(plan, index)
    return set(itertools.product(*(range(r.start // s, (r.stop - 1) // s + 1) for r, s in zip(region, plan.shards))))


@pytest.mark.parametrize("case", list(PLANS), ids=list(PLANS))
def test_blocks_are_the_chunks_and_tasks_hold_whole_shards(case):
    plan = plan_of(PLANS[case])
    shape, chunks = PLANS[case]["shape"], PLANS[case]["chunks"]
    assert plan.storage_chunks == chunks
    for blocks, n, c in zip(plan.out_chunks, shape, chunks):  # the output chunks; a tail narrower than the halo joins the last
        assert sum(blocks) == n and set(blocks[:-1]) <= {c} and blocks[-1] in ({n % c or c} | ({c + n % c} if n % c < 3 else set()))
    everything = [idx for idx, _ in tiling.block_regions(plan)]
    for strip, threads in itertools.product([1, 2, 3, 5, 100], [1, 2, 4, 7]):
        parts = tiling.task_tiles(plan, strip, everything, threads)
        assert len(parts) == tiling.tile_count(*tiling.task_grid(plan, strip), threads)
        flat = [b for part in parts for b in part]
        assert sorted(flat) == everything  # each block once
        owner: dict[tuple[int, ...], int] = {}
        for k, part in enumerate(parts):
            for b in part:
                for s in zarr_shards(plan, b):
                    assert owner.setdefault(s, k) == k, f"shard {s} in tasks {owner[s]} and {k}"
    order = tiling.ordered(plan, 2, everything)
    assert sorted(order) == everything
    runs = [min(zarr_shards(plan, b)) for b in order]
    seen = [s for s, _ in itertools.groupby(runs)]
    assert len(seen) == len(set(seen))  # a shard's blocks come one after the other


@pytest.mark.parametrize("case", list(PLANS), ids=list(PLANS))
def test_blocks_left_grow_to_whole_shards(case):
    plan = plan_of(PLANS[case])
    everything = [idx for idx, _ in tiling.block_regions(plan)]
    rng = np.random.default_rng(1)
    for _ in range(5):
        left = [everything[i] for i in rng.choice(len(everything), 3, replace=False)]
        want = sorted(b for b in everything if any(zarr_shards(plan, b) & zarr_shards(plan, x) for x in left))
        assert tiling.whole_shards(plan, left) == want


def test_unsharded_tasks_are_the_blocks_tiles():
    spec = {"a": ArraySpec("a", (100, 130), np.dtype("uint16"), chunks=(10, 10))}
    plan = make_plan("a", spec, size=5, chunks=10)
    everything = [idx for idx, _ in tiling.block_regions(plan)]
    assert tiling.task_tiles(plan, 3, everything, 2) == tiling.tiles(plan.nblocks, 3, everything, 2)
    assert tiling.whole_shards(plan, everything[:3]) == everything[:3]

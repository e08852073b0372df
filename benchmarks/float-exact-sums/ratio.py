"""Per-cell ratio after/before of the float kernel grid (``run.sh``): the median of each side's
runs per cell, then the median and the worst over cells, by reducer and dtype, and by W.

    python benchmarks/float-exact-sums/ratio.py benchmarks/float-exact-sums
"""

import collections
import json
import statistics
import sys
from pathlib import Path


def load(path: Path) -> dict[tuple, float]:
    doc = json.loads(path.read_text())
    return {(c["W"], c["reduce"], c["boundary"], c["dtype"], c["nodata"]): c["seconds"] for c in doc["cells"]}


folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
before = [load(p) for p in sorted(folder.glob("before-*.json"))]
after = [load(p) for p in sorted(folder.glob("after-*.json"))]
ratio = {k: statistics.median(a[k] for a in after) / statistics.median(b[k] for b in before) for k in before[0]}
r = sorted(ratio.values())
print(f"{len(r)} cells, {len(before)} runs each: after/before median {statistics.median(r):.2f}, worst {r[-1]:.2f}, best {r[0]:.2f}")
for title, key in (("reducer, dtype", lambda k: (k[1], k[3])), ("W", lambda k: k[0]), ("nodata", lambda k: k[4])):
    groups = collections.defaultdict(list)
    for k, v in ratio.items():
        groups[key(k)].append(v)
    for g, v in sorted(groups.items()):
        print(f"  {title} {g}: median {statistics.median(v):.2f}, worst {max(v):.2f}")

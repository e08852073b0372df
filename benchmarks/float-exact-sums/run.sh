#!/bin/bash
# The float kernel grid before and after the exact float sums (issue 21), run alternately:
#   git worktree add /tmp/before f16504e
#   bash benchmarks/float-exact-sums/run.sh /tmp/before . OUT_DIR   # then: python ratio.py OUT_DIR
# Round 0 warms numba's cache on both sides and is not counted by ratio.py's globs (before-0 and
# after-0 are deleted).
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); out=$(mkdir -p "$3" && cd "$3" && pwd)
B="bench --kernels --kernel-size 2048 --windows 3,15,63 --dtypes float32,float64 --boundaries shrink,reflect --nodata both --no-scipy --repeats 3 --reducers sum,mean,var,std"
for i in 0 1 2 3; do
  for side in before after; do
    src=$before; [ "$side" = after ] && src=$after
    (cd /tmp && PYTHONPATH="$src" python -c "from pipeline.cli.main import entrypoint; entrypoint()" $B --json "$out/$side-$i.json" > /dev/null)
  done
done
rm -f "$out/before-0.json" "$out/after-0.json"

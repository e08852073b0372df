"""The report of ``pipeline bench``: ratios between contenders, the Markdown table, and the
progress line of each contender."""

from __future__ import annotations

from typing import Any


def progress_line(row: dict[str, Any]) -> str:
    """One contender's result as ``pipeline bench`` prints it while running."""
    extra = ""
    if "startup" in row:
        extra = f", start-up {row['startup']:.2f} s (not counted)"
    if row.get("worker_rss"):
        extra += f", worker RSS {row['worker_rss'] / 2**20:.0f} MiB"
    return f"W={row['W']} {row['contender']}: {row['mpix_s']:.1f} Mpix/s, {row['wall']:.2f} s, RSS {row['rss'] / 2**20:.0f} MiB{extra}"


def ratios(results: dict[str, Any]) -> None:
    """Each run's speed relative to this project's and to the codec floor, per window size."""
    for w in {r["W"] for r in results["runs"]}:
        rows = {r["contender"]: r for r in results["runs"] if r["W"] == w and "wall" in r}
        ours, floor = rows.get("pipeline"), rows.get("floor")
        for r in rows.values():
            if ours:
                r["speedup_vs_this"] = ours["mpix_s"] / r["mpix_s"]  # how many times faster this project is
            if floor:
                r["wall_vs_floor"] = floor["mpix_s"] / r["mpix_s"]  # time per pixel, relative to the floor


def table(results: dict[str, Any]) -> str:
    head = "| W | contender | image | wall s | Mpix/s | this project ×faster | × codec floor | peak RSS MiB | CPU/wall | disk MB | exact |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results["runs"]:
        if "wall" not in r:
            lines.append(f"| {r['W']} | {r['contender']} | | | | | | | | | {r['error']} |")
            continue
        exact = {True: "yes", False: "NO"}.get(r.get("exact"), "(reference)" if r["contender"] == "floor" else "?")
        lines.append(
            f"| {r['W']} | {r['contender']} | {r['crop']}² | {r['wall']:.2f} | {r['mpix_s']:.1f} | "
            f"{r.get('speedup_vs_this', float('nan')):.1f} | {r.get('wall_vs_floor', float('nan')):.2f} | "
            f"{_rss(r)} | {r['cpu_wall']:.2f} | {r['disk'] / 1e6:.1f} | {exact} |"
        )
    k = results.get("kernel")
    if isinstance(k, list):
        lines += ["", "| W | kernel (in memory, 1 thread) | Mpix/s | exact |", "|---|---|---|---|"]
        for r in k:
            if "kernel" in r:
                val = f"{r['mpix_s']:.0f} | {'yes' if r['exact'] else 'NO'}" if "mpix_s" in r else f"| {r['error']}"
                lines.append(f"| {r['W']} | {r['kernel']} | {val} |")
            elif "first_call_seconds" in r:
                lines.append(f"\nfirst window_reduce call in a fresh process (imports excluded, JIT load/compile included): {r['first_call_seconds']:.2f} s")
    elif isinstance(k, dict):
        lines.append(f"kernel section failed: {k.get('error')}")
    return "\n".join(lines)


def _rss(r: dict[str, Any]) -> str:
    text = f"{r['rss'] / 2**20:.0f}"
    if r.get("worker_rss"):
        text += f" (worker {r['worker_rss'] / 2**20:.0f})"
    if "startup" in r:
        text += f"; start-up {r['startup']:.1f} s"
    return text

"""A Prefect flow that runs pipeline configs, with retries that rely on pipeline's resume.

Each config is one task.  A task that fails at run time (a killed worker, a full disk, a lost
connection) is retried by Prefect; the retry reruns the same config, and pipeline recomputes only
the blocks that the failed attempt did not finish (the output's ledger), so retries are cheap and
end with the same bytes as an uninterrupted run.  A bad config (exit code 2) is not retried: it
would fail the same way every time.

Install the extra, then run the flow once, or serve it on a schedule:

    pip install -e ".[prefect]"
    python workflows/prefect/flow.py configs/example.yaml
    python workflows/prefect/flow.py --serve --cron "15 2 * * *" 'configs/*.yaml'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.batch import Log, expand_paths, run_one
from pipeline.errors import ExitCode


class PipelineRunFailed(RuntimeError):
    """A config's run failed; ``exit_code`` says whether a retry can help."""

    def __init__(self, record: Any) -> None:
        super().__init__(record.error)
        self.exit_code = record.exit_code


def _retry_helps(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's callback signature
    """Retry runtime failures and interruptions; never bad configs or a held lock."""
    try:
        state.result()
    except PipelineRunFailed as exc:
        return exc.exit_code not in (int(ExitCode.USER_ERROR), int(ExitCode.LOCKED))
    except Exception:  # noqa: BLE001 - anything else is worth another try
        return True
    return False


@task(retries=3, retry_delay_seconds=30, retry_condition_fn=_retry_helps, task_run_name="pipeline {config}")
def run_config(config: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run one config; returns its report record (status done or up-to-date)."""
    logger = get_run_logger()
    record = run_one(config, overrides=overrides, log=Log("json", quiet=True))
    if record.status not in ("done", "up-to-date"):
        raise PipelineRunFailed(record)
    logger.info("%s: %s, %s chunks computed, %s skipped", config, record.status, record.chunks_computed, record.chunks_skipped)
    return record.__dict__


@flow(name="pipeline-batch")
def pipeline_batch(configs: list[str], overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Run each config in turn (globs expanded; one at a time, since each run already uses every
    core); the others still run when one fails, and the flow fails if any failed for good."""
    states = [run_config(c, overrides or (), return_state=True) for c in expand_paths(configs)]
    failed = [s for s in states if not s.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(states)} configs failed: " + "; ".join(str(s.message) for s in failed))
    return [s.result() for s in states]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--serve", action="store_true", help="serve the flow on a schedule instead of running once")
    parser.add_argument("--cron", default="15 2 * * *")
    args = parser.parse_args(argv)
    if args.serve:
        pipeline_batch.serve(
            name="pipeline-nightly", cron=args.cron, parameters={"configs": args.configs, "overrides": args.overrides}
        )
        return 0
    pipeline_batch(args.configs, args.overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A Prefect flow that runs pipeline configs, with retries that rely on pipeline's resume.

Each config is one task.  A task that fails at run time (a killed worker, a full disk, a lost
connection) is retried by Prefect; the retry reruns the same config, and pipeline recomputes only
the blocks that the failed attempt did not finish (the output's ledger), so retries are cheap and
end with the same bytes as an uninterrupted run.  A bad config (exit code 2) is not retried: it
would fail the same way every time.

An input that is not ready yet (exit code 5) is retried too: the delivery may complete before
the retries run out; so is a cluster that is not there yet (exit code 6: the scheduler cannot be
reached, or no worker joined in time).

Template variables: ``--var NAME=VALUE`` (a comma-separated list runs every value, as
``pipeline run --var`` does), and ``--date-var DATE`` which sets DATE to yesterday's UTC date *at
each flow run* (a served flow's parameters are fixed when it starts serving; this is computed when
the run starts).  ``--report FILE`` writes the batch report (the format of ``pipeline run
--report``).

Install the extra, then run the flow once, or serve it on a schedule:

    pip install -e ".[prefect]"
    python workflows/prefect/flow.py configs/example.yaml
    python workflows/prefect/flow.py --serve --cron "15 2 * * *" --date-var DATE \\
        --report reports/prefect-latest.json 'configs/*.yaml'

Prefect sends usage telemetry by default; set ``DO_NOT_TRACK=1`` and
``PREFECT_SERVER_ANALYTICS_ENABLED=false`` in the flow's environment to switch it off.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.batch.runbatch import BatchInfo, Log, Record, expand_paths, run_one, variable_sets, write_report
from pipeline.errors import ExitCode


class PipelineRunFailed(RuntimeError):
    """A config's run failed; ``exit_code`` says whether a retry can help."""

    def __init__(self, record: Any) -> None:
        super().__init__(record.error)
        self.exit_code = record.exit_code
        self.record = record


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
def run_config(config: str, overrides: Sequence[str] = (), variables: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one config (with these template values); returns its report record (status done or up-to-date)."""
    logger = get_run_logger()
    record = run_one(config, overrides=overrides, log=Log("json", quiet=True), batch_vars=variables or {})
    if record.status not in ("done", "up-to-date"):
        raise PipelineRunFailed(record)
    logger.info("%s: %s, %s chunks computed, %s skipped", config, record.status, record.chunks_computed, record.chunks_skipped)
    return record.__dict__


@flow(name="pipeline-batch")
def pipeline_batch(
    configs: list[str],
    overrides: list[str] | None = None,
    variables: list[str] | None = None,
    date_var: str | None = None,
    report: str | None = None,
) -> list[dict[str, Any]]:
    """Run each config for each set of template values in turn (globs expanded; one at a time,
    since each run already uses every core); the others still run when one fails, and the flow
    fails if any failed for good.  ``variables``: ``NAME=VALUE`` strings as for ``--var``;
    ``date_var``: a variable set to yesterday's UTC date when this flow run starts."""
    info = BatchInfo.new()
    assignments = list(variables or ())
    if date_var:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        assignments.append(f"{date_var}={yesterday.isoformat()}")
    items = [(c, vs) for vs in variable_sets(assignments) for c in expand_paths(configs)]
    states = [run_config(c, overrides or (), vs, return_state=True) for c, vs in items]
    records = []
    for (config, vs), state in zip(items, states):
        if state.is_completed():
            records.append(Record(**state.result()))
        else:
            try:
                state.result()
            except PipelineRunFailed as exc:
                records.append(exc.record)
            except Exception as exc:  # noqa: BLE001 - recorded, the flow fails below
                records.append(Record(config, "failed", 1, error=str(exc), variables=vs))
    if report:
        write_report(report, records, info)
    failed = [s for s in states if not s.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(states)} configs failed: " + "; ".join(str(s.message) for s in failed))
    return [s.result() for s in states]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--var", dest="variables", action="append", default=[], help="NAME=VALUE or NAME=a,b,c")
    parser.add_argument("--date-var", help="set this variable to yesterday's UTC date at each flow run")
    parser.add_argument("--report", help="write the batch report (JSON) here")
    parser.add_argument("--serve", action="store_true", help="serve the flow on a schedule instead of running once")
    parser.add_argument("--cron", default="15 2 * * *")
    args = parser.parse_args(argv)
    params = {
        "configs": args.configs,
        "overrides": args.overrides,
        "variables": args.variables,
        "date_var": args.date_var,
        "report": args.report,
    }
    if args.serve:
        pipeline_batch.serve(name="pipeline-nightly", cron=args.cron, parameters=params)
        return 0
    pipeline_batch(**params)
    return 0


if __name__ == "__main__":
    sys.exit(main())

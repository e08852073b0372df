"""A Prefect flow that runs pipeline configs, with retries that rely on pipeline's resume.

Each config and set of template values is one task run, named by both
(``configs/day.yaml DATE=2026-12-05``).  Every run is tried once; then those that failed with a
code a retry may help (1 a runtime failure: a killed worker, a full disk, a lost connection;
4 interrupted; 5 an input not ready yet; 6 the cluster not there yet) are retried in rounds
(``RETRIES``, ``RETRY_DELAY_S`` apart), so one day's retries never hold up the other days.  A
retry reruns the same config, and pipeline recomputes only the blocks that the failed attempt did
not finish (the output's ledger), so retries are cheap and end with the same bytes as an
uninterrupted run.  A bad config (2) or an output locked by another run (3) is not retried.

A failed run is a Failed task run whose message is the run's error (no traceback); the flow run
fails when any run failed for good, and ``main`` exits with the batch's code, as ``pipeline run``
does (4, 1, 6, 3, 5, 2 in that order of precedence).

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
import time
from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.states import Failed

from pipeline.batch.runbatch import BatchInfo, Log, Record, batch_exit_code, expand_paths, run_one, variable_sets, write_report
from pipeline.errors import ExitCode

#: attempts after the first, for each config and set of values that fails with a retryable code
RETRIES = 3
#: seconds between rounds of retries
RETRY_DELAY_S = 30.0
#: exit codes a retry cannot help: a bad config fails the same way every time; a held lock
#: belongs to a run that is still going
FINAL_CODES = frozenset({int(ExitCode.USER_ERROR), int(ExitCode.LOCKED)})


def run_label(config: str, variables: dict[str, str] | None) -> str:
    """``configs/day.yaml DATE=2026-12-05``: a config and its template values, as task runs are named."""
    return " ".join([config, *(f"{k}={v}" for k, v in (variables or {}).items())])


def _task_run_name() -> str:
    from prefect.runtime import task_run

    params = task_run.parameters
    return run_label(params["config"], params.get("variables"))


@task(task_run_name=_task_run_name)
def run_config(config: str, overrides: Sequence[str] = (), variables: dict[str, str] | None = None) -> Any:
    """Run one config (with these template values); the report record as a dict, in a Completed
    state (done or up-to-date) or a Failed one whose message is the run's error (no traceback)."""
    record = run_one(config, overrides=overrides, log=Log("json", quiet=True), batch_vars=variables or {})
    if record.status not in ("done", "up-to-date"):
        return Failed(message=f"exit code {record.exit_code}: {record.error}", data=record.__dict__)
    get_run_logger().info(
        "%s: %s, %s chunks computed, %s skipped",
        run_label(config, variables), record.status, record.chunks_computed, record.chunks_skipped,
    )
    return record.__dict__


def _record(item: tuple[str, dict[str, str]], state: Any) -> Record:
    """The record a task run returned (or, should it have raised, a failure naming the error)."""
    try:
        return Record(**state.result(raise_on_failure=False))
    except Exception as exc:  # noqa: BLE001 - an internal error in the task: recorded as a failure
        return Record(item[0], "failed", int(ExitCode.FAILURE), error=str(exc), variables=item[1])


def run_rounds(items: list[tuple[str, dict[str, str]]], overrides: Sequence[str]) -> list[Record]:
    """Run every item once, then retry those that failed with a retryable code in rounds (at most
    :data:`RETRIES`, :data:`RETRY_DELAY_S` apart): one item's retries never hold up the others,
    and each retry resumes the output of the failed attempt."""
    records: dict[int, Record] = {}
    pending = list(range(len(items)))
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(RETRY_DELAY_S)
        for i in pending:
            records[i] = _record(items[i], run_config(items[i][0], overrides, items[i][1], return_state=True))
        pending = [i for i in pending if records[i].exit_code and records[i].exit_code not in FINAL_CODES]
        if not pending:
            break
    return [records[i] for i in range(len(items))]


@flow(name="pipeline-batch")
def pipeline_batch(
    configs: list[str],
    overrides: list[str] | None = None,
    variables: list[str] | None = None,
    date_var: str | None = None,
    report: str | None = None,
) -> Any:
    """Run each config for each set of template values in turn (globs expanded; one at a time,
    since each run already uses every core); the others still run when one fails.  ``variables``:
    ``NAME=VALUE`` strings as for ``--var``; ``date_var``: a variable set to yesterday's UTC date
    when this flow run starts.  Returns ``{"exit_code": the batch's code, "runs": [records]}``,
    in a Failed state (its message names the failed runs) when the code is not 0."""
    info = BatchInfo.new()
    assignments = list(variables or ())
    if date_var:
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        assignments.append(f"{date_var}={yesterday.isoformat()}")
    items = [(c, vs) for vs in variable_sets(assignments) for c in expand_paths(configs)]
    records = run_rounds(items, overrides or ())
    if report:
        write_report(report, records, info)
    code = batch_exit_code(records)
    result = {"exit_code": code, "runs": [r.__dict__ for r in records]}
    if code:
        failed = [f"{run_label(r.config, r.variables)}: exit code {r.exit_code}" for r in records if r.exit_code]
        return Failed(message=f"{len(failed)} of {len(records)} runs failed (batch exit code {code}): " + "; ".join(failed), data=result)
    return result


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
    state = pipeline_batch(**params, return_state=True)
    return int(state.result(raise_on_failure=False)["exit_code"])


if __name__ == "__main__":
    sys.exit(main())

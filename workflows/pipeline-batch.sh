#!/usr/bin/env bash
# Run a batch of pipeline configs as a scheduled job: the one entry point that the cron line, the
# systemd service and the SLURM scripts call.
#
# Environment (all optional):
#   PIPELINE_HOME        folder holding configs/ and where reports/ and logs go (default: this
#                        script's repository root)
#   PIPELINE             the pipeline command (default: pipeline, or $PIPELINE_HOME/.venv/bin/pipeline)
#   PIPELINE_CONFIGS     configs to run, space-separated; globs allowed (default: configs/*.yaml)
#   PIPELINE_REPORT_DIR  where the JSON report of each batch goes (default: $PIPELINE_HOME/reports)
#   PIPELINE_ARGS        extra arguments for `pipeline run`, e.g. "--set compute.workers=8"
#   PIPELINE_LOCK        lock file that keeps two batches from overlapping (default: $PIPELINE_REPORT_DIR/.batch.lock)
#
# Exit code: that of `pipeline run` (0 all done or up to date; see README "Exit codes"); 75 when
# the previous batch is still running (EX_TEMPFAIL: cron and systemd simply try again next time).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${PIPELINE_HOME:-$(dirname "$here")}"
cd "$home"

if [[ -n "${PIPELINE:-}" ]]; then
  cmd=($PIPELINE)
elif [[ -x "$home/.venv/bin/pipeline" ]]; then
  cmd=("$home/.venv/bin/pipeline")
else
  cmd=(pipeline)
fi

report_dir="${PIPELINE_REPORT_DIR:-$home/reports}"
mkdir -p "$report_dir"
report="$report_dir/pipeline-$(date -u +%Y%m%dT%H%M%SZ)-$$.json"

# no overlapping batches: a run that finds the lock held leaves at once
lock="${PIPELINE_LOCK:-$report_dir/.batch.lock}"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "pipeline-batch: previous batch still running (lock $lock); skipping" >&2
    exit 75
  fi
fi

# word-splitting on purpose: PIPELINE_CONFIGS and PIPELINE_ARGS are space-separated lists
# shellcheck disable=SC2086
set -f  # globs are expanded by `pipeline run` itself, relative to PIPELINE_HOME
configs=(${PIPELINE_CONFIGS:-configs/*.yaml})
extra=(${PIPELINE_ARGS:-})
set +f
status=0
"${cmd[@]}" run --log-format json --report "$report" "${extra[@]}" "${configs[@]}" || status=$?
echo "pipeline-batch: exit $status, report $report" >&2
exit "$status"

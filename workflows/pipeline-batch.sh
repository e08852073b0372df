#!/usr/bin/env bash
# Run a batch of pipeline configs as a scheduled job: the one entry point that the cron line, the
# systemd service and the SLURM scripts call.  Arguments are passed on to `pipeline run`, e.g.
#   pipeline-batch.sh --var DATE=2026-11-20,2026-11-21
#
# Environment (all optional):
#   PIPELINE_HOME          folder holding configs/ and where reports/ and logs go (default: this
#                          script's repository root)
#   PIPELINE               the pipeline command (default: $PIPELINE_HOME/.venv/bin/pipeline if it
#                          exists, else pipeline on PATH)
#   PIPELINE_CONFIGS       configs to run, space-separated; globs allowed (default: configs/*.yaml)
#   PIPELINE_REPORT_DIR    where the JSON report of each batch goes (default: $PIPELINE_HOME/reports);
#                          latest.json there is always the newest report
#   PIPELINE_KEEP_REPORTS  reports kept in PIPELINE_REPORT_DIR, oldest deleted first (default: 60)
#   PIPELINE_METRICS       write Prometheus textfile metrics here (e.g. /var/lib/node_exporter/pipeline.prom)
#   PIPELINE_LOG           append all output to this file, creating its folder (for cron)
#   PIPELINE_ARGS          extra arguments for `pipeline run`, e.g. "--set compute.workers=8"
#   DATE                   the nightly template's day (default: yesterday, UTC), e.g. 2026-12-05
#   PIPELINE_LOCK          lock file that keeps two batches from overlapping (default: $PIPELINE_REPORT_DIR/.batch.lock)
#
# Every line this script and pipeline write is one JSON object (time, level, event, message,
# batch, host); the batch id is shared with the report; both write the time as
# 2026-12-06T15:40:39.817+00:00 (UTC, milliseconds; GNU date's %3N).
#
# Exit code: that of `pipeline run` (0 all done or up to date, 5 an input is not ready yet; see
# README "Exit codes"); 75 when the previous batch is still running (EX_TEMPFAIL: cron and systemd
# simply try again next time).
#
# Signals: SIGTERM/SIGINT/SIGHUP are forwarded to pipeline, which stops cleanly (exit 4, what
# is done is kept, the next batch resumes); this script waits for it and exits with its code.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${PIPELINE_HOME:-$(dirname "$here")}"
cd "$home"

host="$(hostname 2>/dev/null || uname -n)"
export PIPELINE_BATCH_ID="${PIPELINE_BATCH_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}"

json_str() {  # a JSON string literal (backslash, quote and control characters escaped)
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"
  s="${s//$'\t'/\\t}"
  s="${s//$'\r'/\\r}"
  printf '"%s"' "$s"
}

log() {  # log LEVEL MESSAGE [extra JSON fields, e.g. ,"exit_code":3]
  printf '{"time": %s, "level": %s, "event": "wrapper", "message": %s, "batch": %s, "host": %s%s}\n' \
    "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%S.%3N+00:00)")" "$(json_str "$1")" "$(json_str "pipeline-batch: $2")" \
    "$(json_str "$PIPELINE_BATCH_ID")" "$(json_str "$host")" "${3:-}" >&2
}

if [[ -n "${PIPELINE_LOG:-}" ]]; then
  if ! { mkdir -p "$(dirname "$PIPELINE_LOG")" && : >>"$PIPELINE_LOG"; } 2>/dev/null; then
    log error "cannot write the log file $PIPELINE_LOG" ',"exit_code": 2'
    exit 2
  fi
  exec >>"$PIPELINE_LOG" 2>&1
fi

if [[ -n "${PIPELINE:-}" ]]; then
  # shellcheck disable=SC2206
  cmd=($PIPELINE)
elif [[ -x "$home/.venv/bin/pipeline" ]]; then
  cmd=("$home/.venv/bin/pipeline")
elif command -v pipeline >/dev/null 2>&1; then
  cmd=(pipeline)
else
  log error "no pipeline command: set PIPELINE, install into $home/.venv, or put pipeline on PATH" ',"exit_code": 2'
  exit 2
fi

report_dir="${PIPELINE_REPORT_DIR:-$home/reports}"
if ! mkdir -p "$report_dir" 2>/dev/null; then
  log error "cannot create the report folder $report_dir" ',"exit_code": 2'
  exit 2
fi
report="$report_dir/pipeline-$(date -u +%Y%m%dT%H%M%SZ)-$$.json"  # new for every batch: only this one can write it

# no overlapping batches: a run that finds the lock held leaves at once
lock="${PIPELINE_LOCK:-$report_dir/.batch.lock}"
if command -v flock >/dev/null 2>&1; then
  if ! { : >>"$lock"; } 2>/dev/null; then
    log error "cannot open the batch lock file $lock" ',"exit_code": 2'
    exit 2
  fi
  exec 9>"$lock"
  if ! flock -n 9; then
    log warning "previous batch still running (lock $lock); skipping" ',"exit_code": 75'
    exit 75
  fi
fi

# the nightly template configs/day.yaml reads ${DATE}: yesterday's UTC date unless the environment
# sets DATE (a --var DATE=... in the arguments overrides either)
export DATE="${DATE:-$(date -u -d yesterday +%F)}"

# word-splitting on purpose: PIPELINE_CONFIGS and PIPELINE_ARGS are space-separated lists
set -f  # globs are expanded by `pipeline run` itself, relative to PIPELINE_HOME
# shellcheck disable=SC2206
configs=(${PIPELINE_CONFIGS:-configs/*.yaml})
# shellcheck disable=SC2206
extra=(${PIPELINE_ARGS:-})
set +f
metrics=()
[[ -n "${PIPELINE_METRICS:-}" ]] && metrics=(--metrics "$PIPELINE_METRICS")

# pipeline runs in the background so that this shell can forward the signals a scheduler sends
# (systemd's KillMode=mixed and cron's kill reach only this process); then wait for it to stop.
set +e
"${cmd[@]}" run --log-format json --report "$report" --keep-reports "${PIPELINE_KEEP_REPORTS:-60}" \
  "${metrics[@]}" "${extra[@]}" "$@" "${configs[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break  # wait returned early for the trap: wait again
done
set -e
trap - TERM INT HUP

if [[ -f "$report" ]]; then
  log info "exit $status, report $report" ",\"exit_code\": $status, \"report\": $(json_str "$report")"
else
  log error "exit $status, no report written" ",\"exit_code\": $status"
fi
exit "$status"

#!/usr/bin/env bash
# Run the Kedro pipeline forever: the default command of the kedro service
# (../Dockerfile, ../../docker-compose.yml), so that the dashboards fill with time series.
#
# Every iteration:
#   1. if KEDRO_N_SHUTTLES_CHOICES is set (or bad data is injected), regenerate the raw
#      data with the next size of the list, round-robin:
#        kedro run --pipeline data_generation --params data_generation.n_shuttles=N
#   2. if KEDRO_INJECT_BAD_DATA=1 (and this is every KEDRO_INJECT_BAD_DATA_EVERY-th
#      iteration), corrupt data/01_raw/shuttles.csv (docker/inject_bad_data.py) so that
#      data validation fails and the alerts fire;
#   3. kedro run $KEDRO_RUN_ARGS
#   4. sleep KEDRO_RUN_INTERVAL seconds (default 60).
# A failed step is logged and the loop goes on. SIGTERM or SIGINT (docker compose down or
# stop) ends the current step and the loop at once, exit status 0.
# A heartbeat file is touched before and after every iteration for docker/healthcheck.py.
set -uo pipefail

cd "$(dirname "$0")/.."

interval="${KEDRO_RUN_INTERVAL:-60}"
choices="${KEDRO_N_SHUTTLES_CHOICES:-}"
inject="${KEDRO_INJECT_BAD_DATA:-0}"
inject_every="${KEDRO_INJECT_BAD_DATA_EVERY:-1}"
heartbeat="${KEDRO_HEARTBEAT_FILE:-/tmp/kedro-run-loop.heartbeat}"
read -r -a run_args <<< "${KEDRO_RUN_ARGS:-}"
read -r -a sizes <<< "$choices"

log() { echo "run-loop: $*"; }
die() { echo "run-loop: error: $*" >&2; exit 2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_uint "$interval" || die "KEDRO_RUN_INTERVAL must be a whole number of seconds, got '$interval'"
[[ "$inject" == 0 || "$inject" == 1 ]] || die "KEDRO_INJECT_BAD_DATA must be 0 or 1, got '$inject'"
{ is_uint "$inject_every" && (( inject_every >= 1 )); } || die "KEDRO_INJECT_BAD_DATA_EVERY must be 1 or more, got '$inject_every'"
for size in "${sizes[@]}"; do
    { is_uint "$size" && (( size >= 10 )); } || die "KEDRO_N_SHUTTLES_CHOICES must be whole numbers of at least 10, got '$size'"
done

child=""
stop() {
    log "stopping"
    if [[ -n "$child" ]]; then
        # The whole process group: kedro and, under ParallelRunner, its workers.
        kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    exit 0
}
trap stop TERM INT

# Run a command in the background, in a process group of its own (setsid), and wait for
# it: a trapped signal interrupts `wait` at once (it would not interrupt a foreground
# command), and stop() ends the command's whole group.
step() {
    setsid "$@" &
    child=$!
    wait "$child"
    local status=$?
    child=""
    return "$status"
}

log "every ${interval}s: kedro run ${run_args[*]:-}; sizes: ${choices:-unchanged}; bad data: $inject (every $inject_every)"
iteration=0
while true; do
    touch "$heartbeat"
    corrupt=0
    if [[ "$inject" == 1 ]] && (( iteration % inject_every == 0 )); then corrupt=1; fi

    if (( ${#sizes[@]} > 0 )) || [[ "$inject" == 1 ]]; then
        generate=(kedro run --pipeline data_generation)
        if (( ${#sizes[@]} > 0 )); then
            n_shuttles="${sizes[iteration % ${#sizes[@]}]}"
            generate+=(--params "data_generation.n_shuttles=$n_shuttles")
            log "generating raw data: $n_shuttles shuttles"
        fi
        step "${generate[@]}" || log "data generation failed (exit $?)"
    fi
    if (( corrupt )); then
        step python docker/inject_bad_data.py data/01_raw/shuttles.csv || log "bad data injection failed (exit $?)"
    fi

    step kedro run "${run_args[@]}"
    log "kedro run exited with status $?; next run in ${interval}s"
    touch "$heartbeat"
    iteration=$((iteration + 1))
    step sleep "$interval"
done

#!/usr/bin/env bash
# duralog through the shared engine-neutral harness, with the yardsticks of the same sitting.
# usage: bash benchmarks/run_harness.sh [limit] [plain] [sqlitelog] [duralog] [duralog-inline] [dbos] [temporal]
# (default: limit plain sqlitelog duralog duralog-inline; the peers need `bash $BENCH/setup.sh` first)
# env: BENCH=../shared/bench (next to this repository)  PY=.venv/bin/python  RUNS=3  PEER_RUNS=1
#      PEER_W3_RUNS=$PEER_RUNS (Temporal's W3 alone takes minutes a run)
#      DBOS_PY=/tmp/benchlab/venv-dbos/bin/python  TEMPORAL_PY=/tmp/benchlab/venv-temporal/bin/python
#      OUT=/tmp/benchlab/results/duralog.jsonl  LOG=/tmp/benchlab/results/duralog-stderr.log
#      WORK=/tmp/benchlab/work  N1=1000 M=500 K=10 N3=2000  TIMEOUT=300 (seconds per run)
# Then: $PY $BENCH/table.py $OUT   (median (min-max) of the headline metrics)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${BENCH:-$(cd "$HERE/../../shared/bench" && pwd)}
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
RUNS=${RUNS:-3}
OUT=${OUT:-/tmp/benchlab/results/duralog.jsonl}; LOG=${LOG:-/tmp/benchlab/results/duralog-stderr.log}
WORK=${WORK:-/tmp/benchlab/work}
N1=${N1:-1000}; M=${M:-500}; K=${K:-10}; N3=${N3:-2000}; TIMEOUT=${TIMEOUT:-300}
PEER_RUNS=${PEER_RUNS:-1}
PEER_W3_RUNS=${PEER_W3_RUNS:-$PEER_RUNS}
DBOS_PY=${DBOS_PY:-/tmp/benchlab/venv-dbos/bin/python}
TEMPORAL_PY=${TEMPORAL_PY:-/tmp/benchlab/venv-temporal/bin/python}
mkdir -p "$(dirname "$OUT")" "$WORK"
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
cd "$BENCH"
rep() { local label=$1; shift; echo "== $label" >&2; "$PY" repeat.py --runs "$RUNS" --label "$label" --out "$OUT" --log "$LOG" -- timeout "$TIMEOUT" "$@" >/dev/null; }
# The peers are slow (Temporal W2 takes minutes per run): PEER_RUNS runs each, a longer timeout.
peer() { local label=$1; shift; echo "== $label" >&2; "$PY" repeat.py --runs "${RUNS_OF_PEER:-$PEER_RUNS}" --label "$label" --out "$OUT" --log "$LOG" -- timeout 900 "$@" >/dev/null; }
H=(harness.py --workdir "$WORK")
for s in ${*:-limit plain sqlitelog duralog duralog-inline}; do case $s in
limit)
  rep limit-wal-full   "$PY" sqlite_limit.py --mode wal-full --rows 5000 --db "$WORK/limit.sqlite"
  rep limit-wal-normal "$PY" sqlite_limit.py --mode wal-normal --rows 20000 --db "$WORK/limit.sqlite" ;;
plain)
  rep plain-w1 "$PY" "${H[@]}" --adapter plain w1 --n "$N1" ;;
sqlitelog)
  rep sqlitelog-normal-w1 "$PY" "${H[@]}" --adapter sqlitelog w1 --n "$N1"
  rep sqlitelog-full-w1   "$PY" "${H[@]}" --adapter sqlitelog --opt sync=FULL w1 --n "$N1"
  rep sqlitelog-normal-w2 "$PY" "${H[@]}" --adapter sqlitelog w2 --m "$M" --k "$K"
  rep sqlitelog-normal-w3 "$PY" "${H[@]}" --adapter sqlitelog w3 --n "$N3" ;;
duralog)
  for d in full normal; do
    rep "duralog-$d-w1" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d w1 --n "$N1"
    rep "duralog-$d-w2" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d w2 --m "$M" --k "$K"
    rep "duralog-$d-w3" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d w3 --n "$N3"
  done ;;
duralog-inline)  # the no-op step as @duralog.step(inline=True): no hand-off to a step thread
  for d in full normal; do
    rep "duralog-inline-$d-w1" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d --opt steps=inline w1 --n "$N1"
    rep "duralog-inline-$d-w2" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d --opt steps=inline w2 --m "$M" --k "$K"
    rep "duralog-inline-$d-w3" "$PY" "${H[@]}" --adapter duralog_adapter --opt durability=$d --opt steps=inline w3 --n "$N3"
  done ;;
dbos)
  peer dbos-w1          "$DBOS_PY" "${H[@]}" --adapter dbos_adapter w1 --n "$N1"
  peer dbos-wal-w1      "$DBOS_PY" "${H[@]}" --adapter dbos_adapter --opt wal=1 w1 --n "$N1"
  peer dbos-queue-w2    "$DBOS_PY" "${H[@]}" --adapter dbos_adapter --opt w2=queue w2 --m "$M" --k "$K"
  peer dbos-wal-w3      "$DBOS_PY" "${H[@]}" --adapter dbos_adapter --opt wal=1 w3 --n "$N3" ;;
temporal)
  peer temporal-act-w1  "$TEMPORAL_PY" "${H[@]}" --adapter temporal_adapter w1 --n "$N1"
  peer temporal-local-w1 "$TEMPORAL_PY" "${H[@]}" --adapter temporal_adapter --opt kind=local w1 --n "$N1"
  peer temporal-act-w2  "$TEMPORAL_PY" "${H[@]}" --adapter temporal_adapter w2 --m "$M" --k "$K"
  RUNS_OF_PEER=$PEER_W3_RUNS peer temporal-act-tt60-resetsticky-w3 "$TEMPORAL_PY" "${H[@]}" --adapter temporal_adapter --opt task_timeout=60 --opt reset_sticky=1 w3 --n "$N3" ;;
*) echo "unknown section $s" >&2; exit 2 ;;
esac; done

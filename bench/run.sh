#!/usr/bin/env bash
# Runs the benchmarks and prints their tables. Needs the project installed in ./.venv (bash scripts/test.sh does it)
# and, for the PostgreSQL rows, the server named by COHORTA_BENCH_POSTGRES_URL (default: local, database test).
#   bash bench/run.sh                 # all, at the default sizes
#   bash bench/run.sh ingest          # one of: ingest, demo, rules, eligibility, export, analytics, clv, static, live
#   CUSTOMERS=1000000 bash bench/run.sh demo
#   CONCURRENCY=32 DURATION=20 WORKERS_LIST=1,2,4 bash bench/run.sh eligibility
#   CUSTOMERS=1000000 bash bench/run.sh export   # the issue's size (builds a ~15 GB demo DB once, ~12 min)
#   CUSTOMERS=1000000 bash bench/run.sh analytics   # segment list (SEGMENTS=1000) and analytics at the issue's size
#   CUSTOMERS=1000000 bash bench/run.sh static      # a static segment of every customer (issue 4)
#   bash bench/run.sh live          # live membership with 200 segments: writes, bulk events, full recompute vs
#                                   # Polars, a simulated day and its safety net (LIVE_SEGMENTS, DAY_SEGMENTS, ENGINES)
#   CUSTOMERS=1000000 DAY_SEGMENTS=27 bash bench/run.sh live   # the issue's size
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
what=${1:-all}
if [ "$what" = all ] || [ "$what" = ingest ]; then
  $PY -m bench.ingest --batches "${BATCHES:-5}" --batch-size "${BATCH_SIZE:-10000}"
fi
if [ "$what" = all ] || [ "$what" = demo ]; then
  $PY -m bench.demo_load --customers "${CUSTOMERS:-100000}" --engines "${ENGINES:-sqlite,postgresql}"
fi
if [ "$what" = all ] || [ "$what" = rules ]; then
  $PY -m bench.rules_bench --customers "${CUSTOMERS:-100000}" --runs "${RUNS:-5}"
fi
if [ "$what" = all ] || [ "$what" = eligibility ]; then
  $PY -m bench.eligibility_bench --customers "${CUSTOMERS:-100000}" --requests "${REQUESTS:-2000}" \
    --concurrency "${CONCURRENCY:-16}" --duration "${DURATION:-10}" --workers-list "${WORKERS_LIST:-1,2}"
fi
if [ "$what" = all ] || [ "$what" = export ]; then
  $PY -m bench.export_bench --customers "${CUSTOMERS:-100000}" --formats "${FORMATS:-csv,jsonl,parquet}" \
    --attributes "${ATTRIBUTES:-occupation,children,interests}"
fi
if [ "$what" = all ] || [ "$what" = analytics ]; then
  $PY -m bench.analytics_bench --customers "${CUSTOMERS:-100000}" --segments "${SEGMENTS:-1000}" \
    --list-runs "${LIST_RUNS:-50}" --analytics-runs "${ANALYTICS_RUNS:-10}"
fi
if [ "$what" = all ] || [ "$what" = clv ]; then
  $PY -m bench.clv_bench --customers "${CUSTOMERS:-100000}" --engines "${ENGINES:-sqlite,postgresql}" \
    --source "${SOURCE:-synthetic}" --runs "${RUNS:-3}"
fi
if [ "$what" = all ] || [ "$what" = static ]; then
  $PY -m bench.static_bench --customers "${CUSTOMERS:-100000}"
fi
if [ "$what" = all ] || [ "$what" = live ]; then
  $PY -m bench.live_bench --customers "${CUSTOMERS:-100000}" --segments "${LIVE_SEGMENTS:-200}" \
    --engines "${ENGINES:-sqlite,postgresql}" --parts "${PARTS:-recompute,writes,day}" --writes "${WRITES:-200}" \
    --bulk-batches "${BULK_BATCHES:-5}" --bulk-size "${BULK_SIZE:-5000}" --day-segments "${DAY_SEGMENTS:-200}" \
    --step-minutes "${STEP_MINUTES:-5}"
fi

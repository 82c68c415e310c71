#!/usr/bin/env bash
# User story: "Put a new model version in front of half my users, let the numbers decide, and ship
# the winner without one failed request."
# Two versions of a model (v1 champion, v2 challenger) -> an experiment at 50/50 -> a gateway with
# its state in a real Redis, scraped by a real Prometheus -> 10,000 requests whose simulated
# outcomes favour the challenger (conversion 10% vs 16%, fed back by request id) -> the report
# turns significant -> `serve report --promote` moves `champion` to v2 -> the gateway follows the
# alias while requests keep coming -> every request answered 200. Everything listens on 127.0.0.1
# and is stopped by PID. Needs the Debian packages redis-server and prometheus. KEEP=1 keeps the folder.
set -euo pipefail
MLCTL=${MLCTL:-mlctl}
PY=${PYTHON:-python3}
PROMETHEUS=${PROMETHEUS:-prometheus}
REDIS=${REDIS:-redis-server}
REQUESTS=${REQUESTS:-10000}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlctl-ab.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
step() { echo; echo "== $*"; }
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
check() { # check JSON_FILE PYTHON_EXPR MESSAGE
  $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert $2, sys.argv[2]" "$1" "$3"
}
wait_http() { # wait_http URL SECONDS
  for _ in $(seq 1 $(( $2 * 5 ))); do
    if $PY -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "not ready: $1" >&2; return 1
}
RPORT=$(port); GW=$(port); PROM=$(port)

step "mlctl init service ab-demo, two trained versions of churn"
$MLCTL init service "$work/ab-demo" --name ab-demo >/dev/null
cd "$work/ab-demo"
mkdir -p data
$PY - <<'PYEOF'
import csv, random
random.seed(3)
with open("data/churn.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["f0", "f1", "f2", "f3", "label"])
    for _ in range(600):
        x = [round(random.gauss(0, 1), 4) for _ in range(4)]
        w.writerow(x + [int(x[0] - 0.5 * x[1] + random.gauss(0, 0.5) > 0)])
PYEOF
cat >> mlctl.yaml <<'YAML'
train:
  data: data/churn.csv
  target: label
  task: classification
  model: random_forest
  params: {n_estimators: 10, max_depth: 4}
  registered_model: churn
YAML
$MLCTL -q train -o json > train1.json
$MLCTL -q models promote churn 1 --alias champion >/dev/null
$MLCTL -q train --param n_estimators=20 -o json > train2.json
check train2.json 'd["registered"]["version"] == "2" and d["registered"]["alias"] == "challenger"' "v2 is the challenger"

step "a Redis on :$RPORT for the experiment state"
"$REDIS" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$work" \
  >"$work/redis.log" 2>&1 & pids+=($!)
for _ in $(seq 1 50); do "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
  "$RPORT" 2>/dev/null && break; sleep 0.2; done
export MLCTL_SERVE__STATE="redis://127.0.0.1:$RPORT/0"

step "mlctl serve experiment create ab --model churn --variants champion:50,challenger:50"
$MLCTL serve experiment create ab --model churn --variants champion:50,challenger:50 -o json > exp.json
check exp.json 'd["changed"] and d["store"].startswith("redis://")' "experiment stored in Redis"

step "mlctl serve start --models churn on :$GW, scraped by a Prometheus on :$PROM"
$MLCTL serve start --models churn --port "$GW" -o json > gateway.json 2> gateway.log & pids+=($!)
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['127.0.0.1:$GW']
YAML
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:$PROM >"$work/prometheus.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$GW/ready" 120
wait_http "http://127.0.0.1:$PROM/-/ready" 30
check gateway.json 'd["models"][0]["experiment"] == "ab" and d["models"][0]["versions"] == ["1", "2"]' "gateway routes ab"

cat > "$work/load.py" <<'PYEOF'
# load.py URL N OUT [--outcomes]: N requests from 16 threads; with --outcomes, each answer gets its
# simulated outcome by request id: champion converts every 10th request, challenger every 6th.
import json, sys, threading, urllib.request
from collections import Counter
url, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
outcomes = "--outcomes" in sys.argv
counts, lock, seen = Counter(), threading.Lock(), Counter()
def post(path, doc):
    req = urllib.request.Request(url + path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None
def worker(k):
    for i in range(k, n, 16):
        status, doc = post("/v1/models/churn/predict", {"records": [{"f0": i % 7 - 3.0, "f1": 0.5, "f2": -0.2, "f3": 1.0}],
                                                         "user": f"u{i}"})
        with lock:
            counts[f"predict {status}"] += 1
            if doc:
                counts[f"version {doc['version']}"] += 1
                variant = doc.get("variant")
                seen[variant] += 1
                nth = seen[variant]
        if outcomes and doc and variant:
            win = nth % (10 if variant == "champion" else 6) == 0
            status, _ = post("/v1/feedback", {"request_id": doc["request_id"], "reward": 1 if win else 0})
            with lock:
                counts[f"feedback {status}"] += 1
threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
for t in threads: t.start()
for t in threads: t.join()
json.dump(counts, open(out, "w"))
print(dict(counts))
PYEOF

step "$REQUESTS requests with simulated outcomes (the challenger converts better)"
$PY "$work/load.py" "http://127.0.0.1:$GW" "$REQUESTS" load1.json --outcomes
check load1.json "d['predict 200'] == $REQUESTS and d['feedback 200'] == $REQUESTS" "every request and feedback answered 200"
check load1.json 'min(d["version 1"], d["version 2"]) > 0.4 * (d["version 1"] + d["version 2"])' "traffic split about 50/50"

step "mlctl serve report ab --gateway http://127.0.0.1:$GW"
sleep 2  # the gateway adds its counts every second
$MLCTL serve report ab --gateway "http://127.0.0.1:$GW" -o json > report.json
$MLCTL serve report ab --gateway "http://127.0.0.1:$GW" | tail -12
check report.json 'd["decision"]["status"] == "significant" and d["decision"]["winner"] == "challenger"' "challenger wins"
check report.json "sum(v['assigned'] for v in d['variants']) == $REQUESTS and sum(v['trials'] for v in d['variants']) == $REQUESTS" \
  "every request and outcome counted once"
check report.json 'all(v["latency_p99_ms"] is not None for v in d["variants"])' "latency per variant"

step "mlctl serve report ab --promote, while 3,000 more requests arrive"
$PY "$work/load.py" "http://127.0.0.1:$GW" 3000 load2.json & loader=$!
$MLCTL serve report ab --promote -o json > promote.json
check promote.json 'd["promotion"]["to_version"] == "2" and d["experiment"]["status"] == "stopped"' "champion -> v2"
wait "$loader"
check load2.json 'd["predict 200"] == 3000' "no request failed during the promotion"

step "the gateway follows the alias: v2 serves everyone"
for _ in $(seq 1 60); do
  curl --silent "http://127.0.0.1:$GW/v1/models" > models.json
  if $PY -c "import json; d=json.load(open('models.json')); assert d['models'][0]['default'] == '2'" 2>/dev/null; then break; fi
  sleep 0.5
done
check models.json 'd["models"][0]["default"] == "2" and d["models"][0]["experiment"] is None' "default is v2, no experiment"
$PY "$work/load.py" "http://127.0.0.1:$GW" 200 load3.json
check load3.json 'd["predict 200"] == 200 and d["version 2"] == 200' "v2 answers every request"

step "check: the gateway's counts are in Prometheus"
$PY - "http://127.0.0.1:$PROM" "$REQUESTS" <<'PYEOF'
import json, sys, time, urllib.parse, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
q = 'sum(mlctl_gateway_requests_total{model="churn",status="200"})'
for _ in range(60):
    doc = json.load(urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}), timeout=10))
    result = doc["data"]["result"]
    if result and float(result[0]["value"][1]) >= n + 3200:
        break
    time.sleep(0.5)
total = float(result[0]["value"][1])
print(f"gateway requests in Prometheus: {total:.0f}")
assert total >= n + 3200, total
PYEOF

echo
echo "ab: all steps passed"

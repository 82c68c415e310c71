#!/usr/bin/env bash
# User story: "Watch a server metric in Prometheus and get an alert I can trust, then see it resolve."
# A process exports a synthetic CPU metric (prometheus_client) with one injected anomaly; a real
# Prometheus scrapes it and mlctl's own /metrics; a real Alertmanager receives mlctl's alerts and
# forwards them to a webhook receiver that records every notification. `mlctl detect watch` runs for
# a bounded time; then the checks: the alert reached Alertmanager (firing, then resolved) and the
# score metric is queryable in Prometheus. Everything listens on 127.0.0.1 and is stopped by PID.
# Needs the Debian packages prometheus and prometheus-alertmanager. KEEP=1 keeps the folder.
set -euo pipefail
MLCTL=${MLCTL:-mlctl}
PY=${PYTHON:-python3}
PROMETHEUS=${PROMETHEUS:-prometheus}
ALERTMANAGER=${ALERTMANAGER:-$(command -v prometheus-alertmanager || command -v alertmanager || echo alertmanager)}
ANOMALY_AT=${ANOMALY_AT:-40}   # seconds after the exporter starts
WATCH_FOR=${WATCH_FOR:-75s}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlctl-detect.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
step() { echo; echo "== $*"; }
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_http() { # wait_http URL SECONDS
  for _ in $(seq 1 $(( $2 * 5 ))); do
    if $PY -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "not ready: $1" >&2; return 1
}
EXPORTER=$(port); PROM=$(port); AM=$(port); HOOK=$(port); METRICS=$(port)
cd "$work"

step "mlctl init anomaly cpu-watch"
$MLCTL init anomaly cpu-watch --name cpu-watch >/dev/null
cd cpu-watch

step "a service exporting demo_cpu_usage on :$EXPORTER (anomaly at +${ANOMALY_AT}s for 6s)"
cat > "$work/exporter.py" <<'PYEOF'
import math, random, sys, time
from prometheus_client import Gauge, start_http_server
port, anomaly_at = int(sys.argv[1]), float(sys.argv[2])
cpu = Gauge("demo_cpu_usage", "CPU busy percent of the demo service", ["host"])
start_http_server(port, addr="127.0.0.1")
random.seed(11)
t0 = time.monotonic()
while True:
    t = time.monotonic() - t0
    value = 40 + 4 * math.sin(2 * math.pi * t / 30) + random.gauss(0, 0.4)
    if anomaly_at <= t < anomaly_at + 6:
        value += 45
    cpu.labels("web-1").set(round(value, 3))
    time.sleep(0.25)
PYEOF
$PY "$work/exporter.py" "$EXPORTER" "$ANOMALY_AT" & pids+=($!)

step "an Alertmanager on :$AM forwarding to a recording webhook on :$HOOK"
cat > "$work/hook.py" <<'PYEOF'
import http.server, sys
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as fh:
            fh.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PYEOF
$PY "$work/hook.py" "$HOOK" "$work/notifications.jsonl" & pids+=($!)
cat > "$work/alertmanager.yml" <<YAML
route:
  receiver: recorder
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: recorder
    webhook_configs:
      - url: http://127.0.0.1:$HOOK/
        send_resolved: true
YAML
"$ALERTMANAGER" --config.file="$work/alertmanager.yml" --storage.path="$work/am" \
  --web.listen-address=127.0.0.1:$AM --cluster.listen-address= >"$work/alertmanager.log" 2>&1 & pids+=($!)

step "a Prometheus on :$PROM scraping the service and mlctl's /metrics on :$METRICS every second"
cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ['127.0.0.1:$EXPORTER']
$($MLCTL detect rules --name cpu-watch -o json | $PY -c 'import json,sys; print(json.load(sys.stdin)["scrape_config"].replace("9108", "'"$METRICS"'"))')
YAML
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom" \
  --web.listen-address=127.0.0.1:$PROM >"$work/prometheus.log" 2>&1 & pids+=($!)
wait_http "http://127.0.0.1:$AM/-/ready" 30
wait_http "http://127.0.0.1:$PROM/-/ready" 30

step "mlctl detect watch (bounded: $WATCH_FOR)"
$MLCTL detect watch --prometheus "http://127.0.0.1:$PROM" --query 'demo_cpu_usage' --interval 1s \
  --history 5m --alertmanager "http://127.0.0.1:$AM" --metrics-port "$METRICS" --name cpu-watch \
  --duration "$WATCH_FOR" -o json > watch.json
$PY - watch.json <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"points {r['points']}, anomalies {r['anomalies']}, alerts fired {r['alerts_fired']}, "
      f"resolved {r['alerts_resolved']}, outbox {r['outbox_pending']}, poll errors {r['poll_errors']}")
assert r["series"] == 1 and r["points"] >= 30, r
assert r["alerts_fired"] >= 1 and r["alerts_resolved"] >= 1, "the injected anomaly was not alerted and resolved"
assert r["outbox_pending"] == 0, "notifications left undelivered"
PYEOF

step "check: Alertmanager notified firing, then resolved"
for _ in $(seq 1 50); do
  if grep -q '"status":"resolved"' "$work/notifications.jsonl" 2>/dev/null; then break; fi
  sleep 0.2
done
$PY - "$work/notifications.jsonl" <<'PYEOF'
import json, sys
notes = [json.loads(line) for line in open(sys.argv[1])]
statuses = [n["status"] for n in notes]
print("notifications:", statuses)
assert "firing" in statuses and "resolved" in statuses, statuses
first = next(n for n in notes if n["status"] == "firing")
labels = first["alerts"][0]["labels"]
assert labels["alertname"] == "MetricAnomaly" and labels["host"] == "web-1", labels
assert labels["watch"] == "cpu-watch", labels
PYEOF

step "check: the score is queryable in Prometheus"
$PY - "http://127.0.0.1:$PROM" <<'PYEOF'
import json, sys, urllib.parse, urllib.request
q = 'max_over_time(mlctl_detect_anomaly_score{watch="cpu-watch",host="web-1"}[5m])'
url = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
doc = json.load(urllib.request.urlopen(url, timeout=10))
result = doc["data"]["result"]
assert doc["status"] == "success" and len(result) == 1, doc
peak = float(result[0]["value"][1])
print(f"peak anomaly score in Prometheus: {peak:.3f}")
assert peak > 0.5, peak
PYEOF

echo
echo "detect: all steps passed"

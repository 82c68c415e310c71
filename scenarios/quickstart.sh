#!/usr/bin/env bash
# User story: "From a CSV to a served model and back, from the shell."
# init -> train --tune 5 -> deploy local -> predict with curl -> retrain with a changed param
# -> deploy -> rollback -> status -o json, all on embedded defaults (SQLite, files, local
# processes). Every step is checked; the deployment is stopped at the end. KEEP=1 keeps the folder.
set -euo pipefail
MLCTL=${MLCTL:-mlctl}
PY=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlctl-quickstart.XXXXXX")
cleanup() {
  (cd "$work/churn-service" 2>/dev/null && $MLCTL -q deploy stop churn >/dev/null 2>&1) || true
  if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
check() { # check JSON_FILE PYTHON_EXPR MESSAGE
  $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert $2, sys.argv[2]" "$1" "$3"
}

step() { echo; echo "== $*"; }

step "mlctl init service churn-service"
$MLCTL init service "$work/churn-service" --name churn-service >/dev/null
cd "$work/churn-service"

step "bring data: data/churn.csv (2,000 rows, 10 features)"
mkdir -p data
$PY - <<'PYEOF'
import csv, random
random.seed(7)
with open("data/churn.csv", "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow([f"f{i}" for i in range(10)] + ["label"])
    for _ in range(2000):
        x = [round(random.gauss(0, 1), 4) for _ in range(10)]
        score = 1.5 * x[0] - x[1] + 0.8 * x[2] * x[3] + random.gauss(0, 0.5)
        w.writerow(x + [int(score > 0)])
PYEOF
cat >> mlctl.yaml <<'YAML'
train:
  data: data/churn.csv
  target: label
  task: classification
  model: random_forest
  params: {n_estimators: 40, max_depth: 6}
  metrics: [f1, accuracy, roc_auc]
  gates: {min_f1: 0.7}
  registered_model: churn
YAML

step "mlctl train --tune 5"
$MLCTL train --tune 5 -o json > train1.json
check train1.json 'd["registered"]["version"] == "1" and d["registered"]["alias"] == "challenger"' "v1 registered"
$PY -c "import json; d=json.load(open('train1.json')); print('run', d['run_id'], 'metrics', d['metrics'])"

step "mlctl models promote churn 1 --alias champion"
$MLCTL models promote churn 1 --alias champion

step "mlctl deploy churn@champion --target local --port 0"
$MLCTL deploy churn@champion --target local --port 0 --replicas 2 -o json > deploy1.json
check deploy1.json 'd["status"]["health"] == "healthy" and d["release"]["revision"] == 1' "deployed v1"
endpoint=$($PY -c "import json; print(json.load(open('deploy1.json'))['status']['endpoint'])")
echo "serving at $endpoint"

step "curl $endpoint/v1/predict"
row='{"records": [{"f0": 1.2, "f1": -0.3, "f2": 0.5, "f3": 0.1, "f4": 0, "f5": 0, "f6": 0, "f7": 0, "f8": 0, "f9": 0}]}'
curl --fail --silent --show-error -H 'Content-Type: application/json' -d "$row" "$endpoint/v1/predict" | tee predict1.json
echo
check predict1.json 'd["version"] == "1" and len(d["predictions"]) == 1' "v1 answers"
code=$(curl --silent -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"records": [{"f0": "x"}]}' \
  "$endpoint/v1/predict")
[ "$code" = 422 ] || { echo "bad input gave HTTP $code, expected 422"; exit 1; }

step "retrain with a changed param: mlctl train --param n_estimators=80"
$MLCTL train --param n_estimators=80 -o json > train2.json
check train2.json 'd["registered"]["version"] == "2"' "v2 registered"
$MLCTL models promote churn 2 --alias champion

step "mlctl deploy churn@champion (version 2)"
port=$($PY -c "import json; print(json.load(open('deploy1.json'))['status']['endpoint'].rsplit(':', 1)[1])")
$MLCTL deploy churn@champion --port "$port" --replicas 2 -o json > deploy2.json
check deploy2.json 'd["release"]["revision"] == 2 and d["status"]["version"] == "2"' "deployed v2"
curl --fail --silent -H 'Content-Type: application/json' -d "$row" "$endpoint/v1/predict" > predict2.json
check predict2.json 'd["version"] == "2"' "v2 answers on the same endpoint"

step "mlctl rollback churn"
$MLCTL rollback churn -o json > rollback.json
check rollback.json 'd["to_release"]["version"] == "1" and d["alias_moved"]["to"] == "1"' "rolled back to v1"
curl --fail --silent -H 'Content-Type: application/json' -d "$row" "$endpoint/v1/predict" > predict3.json
check predict3.json 'd["version"] == "1"' "v1 answers again"
$MLCTL releases churn

step "mlctl status -o json"
$MLCTL status -o json > status.json
check status.json 'd["deployments"][0]["version"] == "1" and d["deployments"][0]["health"] == "healthy"' \
  "status shows v1 healthy"
check status.json 'd["counts"]["runs"] >= 2 and d["counts"]["releases"] == 3' "runs and releases counted"
$MLCTL status
echo
echo "quickstart: all steps passed"

#!/usr/bin/env bash
# User story: "I just installed mlctl. Show me a project."
# The main job on embedded defaults, with no server: scaffold the service template into a
# temporary folder, then look at it the way a user would. Set KEEP=1 to keep the folder.
set -euo pipefail
MLCTL=${MLCTL:-mlctl}
work=$(mktemp -d "${TMPDIR:-/tmp}/mlctl-demo.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi

echo "== mlctl init service $work/demo-service"
$MLCTL init service "$work/demo-service" --name demo-service

cd "$work/demo-service"
echo
echo "== mlctl status"
$MLCTL status
echo
echo "== mlctl config show --origin"
$MLCTL config show --origin
echo
echo "== mlctl status -o json (what a CI script reads)"
$MLCTL status -o json
echo
echo "== mlctl doctor (optional engines; none is needed for the above)"
$MLCTL doctor
if [ "${KEEP:-0}" = 1 ]; then echo; echo "project kept in $work/demo-service"; fi

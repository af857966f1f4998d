#!/bin/bash
# Starts one Qdrant peer of the StatefulSet: pod 0 founds the cluster, the others join it
# through pod 0's stable DNS name. A restarted peer rejoins from its stored raft state.
set -euo pipefail
index="${HOSTNAME##*-}"
self="http://${HOSTNAME}.qdrant-headless:6335"
if [ "${index}" = "0" ]; then
  exec ./entrypoint.sh --uri "${self}"
fi
exec ./entrypoint.sh --bootstrap "http://qdrant-0.qdrant-headless:6335" --uri "${self}"

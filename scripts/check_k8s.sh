#!/usr/bin/env bash
# Renders and checks everything under deploy/ with the real tools:
# kustomize (kubectl's), kubernetes-validate --strict, promtool, hadolint.
# Usage: bash scripts/check_k8s.sh [output-dir]   (rendered overlays are kept there)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out="${1:-$(mktemp -d)}"
mkdir -p "$out"

for overlay in dev production; do
  "$bin/kubectl" kustomize "deploy/k8s/overlays/$overlay" > "$out/$overlay.yaml"
  # Prometheus Operator kinds have no bundled schema: --no-warn hides only those warnings.
  "$bin/kubernetes-validate" --strict --quiet --no-warn "$out/$overlay.yaml"
  echo "ok: overlay $overlay ($(grep -c '^kind:' "$out/$overlay.yaml") objects) -> $out/$overlay.yaml"
done

"$bin/python" deploy/prometheus/slo_rules.py --check
"$bin/python" deploy/grafana/dashboard.py --check
promtool check rules deploy/prometheus/rules/segue.rules.yml
promtool test rules deploy/prometheus/tests/*.yml
promtool check config deploy/prometheus/prometheus.local.yml
for dockerfile in deploy/docker/*.Dockerfile; do
  "$bin/hadolint" --no-color "$dockerfile"
done
echo "ok: deploy/ checks passed"

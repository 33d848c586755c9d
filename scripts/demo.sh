#!/usr/bin/env bash
# scripts/demo.sh: `postern demo`, two organisations exchanging mail over enforced, verified
# TLS on loopback (lab CA, two key rings, two `postern serve` processes, a message from a
# client to org A and on to org B, the story of each hop). Arguments go to `postern demo`
# (--keep, --json, --peer postfix). POSTERN_DEMO_KEEP=1 keeps the temporary directory.
#
# scripts/relay-demo.sh is the single-node walk-through with the shell commands.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
postern=${POSTERN_BIN:-$top/build/postern}
args=("$@")
[ -n "${POSTERN_DEMO_KEEP:-}" ] && args+=(--keep)
exec "$postern" demo "${args[@]}"

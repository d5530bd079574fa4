#!/bin/sh
# The main job (`make demo`): runs the seed programs in examples/.
# Usage: scripts/demo.sh BUILD_DIR
set -e
build=${1:-build/release}
for ex in scoped_layers missing_scope bidirectional; do
    echo "=== examples/$ex.c"
    "$build/examples/$ex"
    echo
done

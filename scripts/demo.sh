#!/bin/sh
# The main job (`make demo`): runs the seed programs in examples/, then trains the BiLSTM
# sentiment classifier on ../shared/data/rt-polarity (train.tsv, dev.tsv) with the default
# settings and evaluates it. Without that folder it trains on a small synthetic task instead.
# Usage: scripts/demo.sh BUILD_DIR
set -e
build=${1:-build/release}
for ex in scoped_layers missing_scope bidirectional; do
    echo "=== examples/$ex.c"
    "$build/examples/$ex"
    echo
done

data=../shared/data/rt-polarity
out=$build/demo-model
rm -rf "$out"
if [ -f "$data/train.tsv" ] && [ -f "$data/dev.tsv" ]; then
    echo "=== recur train on rt-polarity (movie-review sentences)"
    "$build/recur" train --train "$data/train.tsv" --dev "$data/dev.tsv" --out "$out"
    echo "=== recur eval"
    "$build/recur" eval --model "$out" "$data/dev.tsv"
else
    echo "=== $data not found: training on a synthetic sentiment task"
    syn=$build/demo-data
    mkdir -p "$syn"
    for part in train:2000:1 dev:400:2; do
        name=${part%%:*}; rest=${part#*:}; n=${rest%%:*}; seed=${rest#*:}
        awk -v n="$n" -v seed="$seed" 'BEGIN {
            srand(seed); split("good great wonderful moving funny brilliant", P, " ");
            split("bad awful boring dull tedious mess", N, " ");
            split("the movie film a is plot actors and story it", U, " ");
            print "label\ttext";
            for (i = 0; i < n; i++) {
                y = int(rand() * 2); len = 4 + int(rand() * 8); s = "";
                for (k = 0; k < len; k++) {
                    if (rand() < 1/3) w = (y ? P[1 + int(rand() * 6)] : N[1 + int(rand() * 6)]);
                    else w = U[1 + int(rand() * 10)];
                    s = s (k ? " " : "") w;
                }
                print y "\t" s;
            } }' > "$syn/$name.tsv"
    done
    "$build/recur" train --train "$syn/train.tsv" --dev "$syn/dev.tsv" --out "$out" --epochs 3
    "$build/recur" eval --model "$out" "$syn/dev.tsv"
fi

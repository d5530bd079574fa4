#!/bin/sh
# Runs every test binary given (names relative to DIR) and prints the total
# "N passed, N failed". Exit status is non-zero if any test failed or a binary crashed.
dir=$1; shift
total_pass=0; total_fail=0; crashed=""
export RECUR_SRC_DIR="${RECUR_SRC_DIR:-$(pwd)}"
for t in "$@"; do
    out=$("$dir/$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[^ ]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        crashed="$crashed $t"; total_fail=$((total_fail + 1)); continue
    fi
    p=$(printf '%s' "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    [ $rc -ne 0 ] && [ "$f" = 0 ] && { crashed="$crashed $t"; total_fail=$((total_fail + 1)); }
done
[ -n "$crashed" ] && echo "binaries that did not finish cleanly:$crashed"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]

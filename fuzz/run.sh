#!/bin/sh
# fuzz/run.sh MODE BUILD SECONDS TARGET... - the runner behind `make fuzz` and `make fuzz-merge`
# (fuzz/fuzz.mk), for the libFuzzer binaries BUILD/fuzz_TARGET.
#
#   run    each target for SECONDS, one after the other. The working corpus is BUILD/corpus/T
#          (new inputs go there; the committed seeds in fuzz/corpus/T are only read), crash,
#          leak and timeout inputs go to BUILD/crashes/T/, the log to BUILD/logs/T.log. Prints
#          one line per target; exits non-zero when any target found a problem.
#   merge  add to fuzz/corpus/T the inputs of BUILD/corpus/T that reach new code.
set -u
mode=$1 build=$2 secs=$3
shift 3
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

max_len() {
    case $1 in
    ckpt_bundle) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

status=0
for t in "$@"; do
    bin=$build/fuzz_$t seeds=fuzz/corpus/$t work=$build/corpus/$t crashes=$build/crashes/$t logs=$build/logs
    mkdir -p "$work" "$crashes" "$logs"
    dict=""
    [ -f "fuzz/dict/$t.dict" ] && dict="-dict=fuzz/dict/$t.dict"
    if [ "$mode" = merge ]; then
        "$bin" -merge=1 -max_len="$(max_len "$t")" $dict "$seeds" "$work" >"$logs/$t.merge.log" 2>&1 ||
            { echo "$t: merge failed (see $logs/$t.merge.log)"; status=1; continue; }
        echo "$t: $(ls "$seeds" | wc -l) seeds in $seeds"
        continue
    fi
    log=$logs/$t.log
    before=$(ls "$crashes" | wc -l)
    "$bin" -max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$crashes/" $dict "$work" "$seeds" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    found=$(($(ls "$crashes" | wc -l) - before))
    printf '%-12s %10s execs %7s exec/s  %-22s corpus %5s  crashes %d\n' "$t" "${execs:-?}" "${rate:-?}" \
        "${cov:-cov: ?}" "$(ls "$work" | wc -l)" "$found"
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
        status=1
        echo "--- $t: exit status $rc; artifacts in $crashes/; the end of $log:"
        tail -n 60 "$log"
    fi
done
exit $status

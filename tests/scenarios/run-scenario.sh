#!/usr/bin/env bash
# Runs one scenario: `certflow run <name>.bpmn` on a fresh database, then compares what it prints
# with <name>.trace and its exit code with <name>.exit (default 0). Optional files next to the BPMN:
#   <name>.args        extra arguments for `certflow run`, one per line (blank lines are skipped)
#   <name>.exit        the expected exit code of `certflow run`
#   <name>.then        a follow-up shell snippet, run with $CERTFLOW, $DB and $SCENARIOS set once the
#                      run is over (for `certflow incidents`, `params`, `retry` on the same database);
#                      its output is compared with <name>.then.trace and its exit code with
#                      <name>.then.exit (default 0)
# Timestamps (job due times, incident creation) depend on the clock, so both outputs go through
# the same filter first: every ISO 8601 UTC time becomes <now> or <now+Nm>, N being whole minutes
# after the moment the scenario started.
#
# Usage: run-scenario.sh CERTFLOW-BINARY SCENARIO.bpmn
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 CERTFLOW-BINARY SCENARIO.bpmn" >&2
    exit 2
fi
CERTFLOW=$1
bpmn=$2
dir=$(cd "$(dirname "$bpmn")" && pwd)
name=$(basename "$bpmn" .bpmn)
base=$dir/$name

if [ ! -x "$CERTFLOW" ]; then
    echo "FAIL $name: $CERTFLOW is not an executable" >&2
    exit 1
fi
if [ ! -f "$base.trace" ]; then
    echo "FAIL $name: $base.trace is missing" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/certflow-scenario.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
DB=$work/certflow.db
started=$(date -u +%s)

# Replaces each ISO 8601 UTC time (as certflow prints it) by its distance from `started`, rounded
# to whole minutes: a retry due in 5 minutes reads <now+5m> however long the run took.
normalize() {
    local line stamp secs mins out
    while IFS= read -r line || [ -n "$line" ]; do
        out=$line
        while [[ $out =~ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z ]]; do
            stamp=${BASH_REMATCH[0]}
            secs=$(date -u -d "${stamp%.*}Z" +%s 2>/dev/null) || secs=$started
            mins=$(((secs - started + 30) / 60))
            if [ "$mins" -eq 0 ]; then
                out=${out/"$stamp"/<now>}
            else
                out=${out/"$stamp"/<now+${mins}m>}
            fi
        done
        printf '%s\n' "$out"
    done
}

# Compares actual output with an expected file; prints a unified diff on mismatch.
compare() {
    local what=$1 expected=$2 actual=$3
    if diff -u --label "$expected (expected)" --label "$what (actual)" "$expected" "$actual" \
        >"$work/diff"; then
        return 0
    fi
    echo "FAIL $name: $what differs from $(basename "$expected"):"
    cat "$work/diff"
    return 1
}

expected_exit() {
    if [ -f "$1" ]; then
        tr -d ' \t\r\n' <"$1"
    else
        echo 0
    fi
}

args=()
if [ -f "$base.args" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        [ -n "$line" ] && args+=("$line")
    done <"$base.args"
fi

failed=0
"$CERTFLOW" run "$bpmn" --db "$DB" "${args[@]}" >"$work/run.raw"
rc=$?
normalize <"$work/run.raw" >"$work/run.out"
compare "certflow run" "$base.trace" "$work/run.out" || failed=1
want=$(expected_exit "$base.exit")
if [ "$rc" != "$want" ]; then
    echo "FAIL $name: certflow run exited with $rc, expected $want"
    failed=1
fi

if [ -f "$base.then" ]; then
    if [ ! -f "$base.then.trace" ]; then
        echo "FAIL $name: $base.then exists but $base.then.trace is missing"
        exit 1
    fi
    CERTFLOW=$CERTFLOW DB=$DB SCENARIOS=$dir bash "$base.then" >"$work/then.raw"
    rc=$?
    normalize <"$work/then.raw" >"$work/then.out"
    compare "$name.then" "$base.then.trace" "$work/then.out" || failed=1
    want=$(expected_exit "$base.then.exit")
    if [ "$rc" != "$want" ]; then
        echo "FAIL $name: $name.then exited with $rc, expected $want"
        failed=1
    fi
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "ok $name"

#!/usr/bin/env bash
# Crash test (issue 3, shared/reference/reliability.md §1.5): runs the workload in workload.bpmn
# while the engine process dies again and again, then checks that every promise was kept.
#
#   1. Starts a wave of M instances, each with `certflow run` under
#      CERTFLOW_CRASH_AT=before-commit:1, so that the start is committed and nothing else: all the
#      work is left for the crash loop. Whenever every instance has ended, the next wave starts
#      (at most CRASH_MAX_WAVES), so that the rounds always find work to interrupt.
#   2. K rounds: `certflow resume --wait` dies at a named crash point (job-locked, plugin-running,
#      before-commit, after-commit; pass count at random), or is killed with SIGKILL after a
#      random delay, or stops cleanly (--timeout) while calls still run on worker threads, or
#      runs free. Before it, now and then (and always when nothing but the message is left),
#      the harness delivers the message Proceed to one instance or to all (`certflow
#      correlate`), itself under a crash point or SIGKILL now and then. Runs never overlap: one
#      process owns the database at a time. After each round: no step has completed more often
#      than the model allows, committed work never went missing, quick_check is ok, and no
#      sanitizer report, engine error or incident showed up.
#   3. Resumes without crashes until every instance has ended (bounded), then checks with
#      sqlite3: every instance COMPLETED; per instance each activity completed exactly as often
#      as the model says (the loop task three times, the join three times, all else once) and
#      nothing ended canceled or stayed open; the loop counter and the value copied from it are
#      3 (each outcome applied exactly once); no job, subscription, non-root execution or
#      incident is left; PRAGMA integrity_check is ok; every task step used one idempotency key,
#      however often it ran (keys.log, written by setVariablesTask's keyLog).
#   4. Checks the harness itself: the first four rounds hit each crash point once, a fair share
#      of rounds really died (exit 137), work moved on between crashes, and every query of the
#      harness ran (a failing query fails the run instead of passing a check by accident).
#
# Usage: crash-test.sh CERTFLOW-BINARY
# Environment: CRASH_ITERATIONS (rounds, default 30), CRASH_INSTANCES (per wave, default 10),
# CRASH_MAX_WAVES (default 10), CRASH_SEED (default: from the clock; printed, so that a failing
# run can be repeated), CRASH_KEEP=1 keeps the work folder (it is always kept on failure).
# Prints one line per round and a last line "N passed, N failed"; exits 1 on any failure.
set -u

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 CERTFLOW-BINARY" >&2
    exit 2
fi
CERTFLOW=$1
HERE=$(cd "$(dirname "$0")" && pwd)
WORKLOAD=$HERE/workload.bpmn
ITERATIONS=${CRASH_ITERATIONS:-30}
INSTANCES=${CRASH_INSTANCES:-10}
SEED=${CRASH_SEED:-$(($(date +%s) % 1000000))}
RANDOM=$SEED

for tool in sqlite3 timeout; do
    command -v $tool >/dev/null || {
        echo "crash-test: $tool is not installed" >&2
        exit 2
    }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/certflow-crash.XXXXXX") || exit 2
DB=$WORK/crash.db
KEYS=$WORK/keys.log
passed=0
failed=0

finish() {
    check_queries
    echo "$passed passed, $failed failed"
    if [ "$failed" -ne 0 ] || [ "${CRASH_KEEP:-0}" = 1 ]; then
        echo "work folder kept: $WORK (seed $SEED)"
    else
        rm -rf "$WORK"
    fi
    [ "$failed" -eq 0 ]
    exit $?
}

# Called before finish: queries that failed on the way make the run fail.
check_queries() {
    if [ -s "$WORK/sql-errors" ]; then
        bad "queries of the harness failed, so some checks did not run:"
        head -n 10 "$WORK/sql-errors" | sed 's/^/    /'
    fi
}

ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}

bad() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}

# Every query of the harness goes through here; a query that fails (a typo, a locked database)
# is recorded and fails the run at the end, so that a broken check cannot pass in silence.
sql() {
    if ! sqlite3 -bail "$DB" "$@" 2>"$WORK/sql.err"; then
        {
            echo "sqlite3 failed: $(cat "$WORK/sql.err")"
            echo "  query: $(echo "$1" | tr -s ' \n' ' ' | cut -c1-200)"
        } >>"$WORK/sql-errors"
    fi
}

# R = a number from $1 to $2, from the seeded generator. (Not printed for $(...): a subshell
# would reseed RANDOM, and the run could not be repeated from its seed.)
rand() {
    R=$(($1 + RANDOM % ($2 - $1 + 1)))
}

# Sanitizer reports, engine errors (log level error: a batch not applied or not committed, a
# lost caller) and incidents in a run's stderr are failures of their own: a crash must cost
# nothing but time.
check_stderr() {
    local what=$1 file=$2
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$file"; then
        bad "$what: sanitizer report (see $file):"
        grep -m 8 -E 'ERROR: |runtime error:|^    #[0-5] ' "$file" | sed 's/^/    /'
        return 1
    fi
    if grep -qE '^[0-9T:.Z-]+ (error|warn  incident) ' "$file"; then
        bad "$what: the engine logged errors or incidents (see $file):"
        grep -m 5 -E '^[0-9T:.Z-]+ (error|warn  incident) ' "$file" | sed 's/^/    /'
        return 1
    fi
    return 0
}

# --- what the model promises, per instance ---

# activity id, how many completed activity instances
EXPECTED_HISTORY="Start 1
Fork 1
Task_a1 1
Timer_a 1
Task_a2 1
Merge 3
Task_loop 3
Check 3
Sub 1
Sub_start 1
Task_sub1 1
Task_sub2 1
Sub_end 1
Catch_proceed 1
Task_c 1
Join 3
Task_final 1
End 1"
# task activity, how many logical steps (distinct idempotency keys)
EXPECTED_STEPS="Task_a1 1
Task_a2 1
Task_loop 3
Task_sub1 1
Task_sub2 1
Task_c 1
Task_final 1"
# variable, value as sqlite3 prints it
EXPECTED_VARS="count 3
final 3
a1 done
a2 done
s1 done
s2 done
c done"

# Work that can never be undone: history rows that ended. Never decreases, even across crashes.
progress() {
    sql "SELECT count(*) FROM history_activity WHERE end_state IS NOT NULL"
}

# No step has run more often than the model allows, even half way.
check_no_duplicates() {
    local where=$1 over
    over=$(sql "WITH expected(activity_id, n) AS (VALUES $(echo "$EXPECTED_HISTORY" |
        awk -v q="'" '{printf "%s(%s%s%s, %d)", (NR > 1 ? ", " : ""), q, $1, q, $2}'))
                SELECT h.instance_id || ' ' || h.activity_id || ': ' || count(*) || ' > ' || e.n
                FROM history_activity h JOIN expected e USING (activity_id)
                WHERE h.end_state = 'completed'
                GROUP BY h.instance_id, h.activity_id HAVING count(*) > e.n")
    if [ -n "$over" ]; then
        bad "$where: steps completed more often than the model allows:"
        echo "$over" | sed 's/^/    /'
        return 1
    fi
    return 0
}

echo "crash test: seed $SEED, $INSTANCES instances, $ITERATIONS rounds, work folder $WORK"

# --- 1. start instances; each run dies right after its start was committed ---

started=0
waves=0

# Starts a wave of $INSTANCES instances (business keys crash-N, N counting on over all waves).
start_wave() {
    local i n before=0
    [ -f "$DB" ] && before=$(sql "SELECT count(*) FROM process_instance")
    for i in $(seq 1 "$INSTANCES"); do
        n=$((started + 1))
        CERTFLOW_CRASH_AT=before-commit:1 timeout -k 5 60 "$CERTFLOW" run "$WORKLOAD" --db "$DB" \
            --business-key "crash-$n" --var count:Long=0 --var "keyLog=$KEYS" \
            >"$WORK/start-$n.out" 2>"$WORK/start-$n.err"
        rc=$?
        check_stderr "start $n" "$WORK/start-$n.err" || return 1
        if [ "$rc" != 137 ] || ! grep -q 'crash point reached' "$WORK/start-$n.err"; then
            bad "start $n: expected the run to die at before-commit (exit 137), got exit $rc:"
            sed 's/^/    /' "$WORK/start-$n.err" | head -n 5
            return 1
        fi
        started=$n
    done
    waves=$((waves + 1))
    local after
    after=$(sql "SELECT count(*) FROM process_instance")
    if [ "$after" != $((before + INSTANCES)) ]; then
        bad "wave $waves: $INSTANCES runs made $((after - before)) instances"
        return 1
    fi
    return 0
}

start_wave || finish
n=$(sql "SELECT count(*) FROM process_instance WHERE state = 'ACTIVE'")
done_tasks=$(sql "SELECT count(*) FROM history_activity
                  WHERE activity_type = 'serviceTask' AND end_state IS NOT NULL")
if [ "$n" = "$INSTANCES" ] && [ "$done_tasks" = 0 ]; then
    ok "$INSTANCES instances started; each start committed, nothing more, before its run crashed"
else
    bad "after the starts: $n active instances (expected $INSTANCES), $done_tasks tasks done (expected 0)"
    finish
fi

# --- 2. the crash loop ---

points=(job-locked plugin-running before-commit after-commit)
declare -A crashed_at=([job-locked]=0 [plugin-running]=0 [before-commit]=0 [after-commit]=0)
crashes=0
kills=0
stops=0
rounds_with_progress=0
correlations=0
last_progress=$(progress)
MAX_WAVES=${CRASH_MAX_WAVES:-10}

# Runs certflow ARGS... as round $round's step $1, at crash point $2 ("" for none, "kill:MS" to
# SIGKILL it after MS milliseconds). Sets rc. Fails the round on sanitizer output or a hang.
engine_step() {
    local name=$1 crash=$2
    shift 2
    local out=$WORK/round-$round-$name.out err=$WORK/round-$round-$name.err
    if [[ $crash == kill:* ]]; then
        # timeout sends the SIGKILL: it knows its child, so no process id can be reused by the
        # time the signal goes out. The braces keep bash's "Killed" notice off the output.
        local ms=${crash#kill:}
        {
            timeout -s KILL "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))" \
                "$CERTFLOW" "$@" >"$out" 2>"$err"
        } 2>/dev/null
        rc=$?
    elif [ -n "$crash" ]; then
        CERTFLOW_CRASH_AT=$crash timeout -k 5 60 "$CERTFLOW" "$@" >"$out" 2>"$err"
        rc=$?
    else
        timeout -k 5 60 "$CERTFLOW" "$@" >"$out" 2>"$err"
        rc=$?
    fi
    check_stderr "round $round $name" "$err" || return 1
    if [ "$rc" = 124 ]; then
        bad "round $round $name: certflow $* hung (killed after 60 s)"
        return 1
    fi
    if [[ $crash != kill:* ]] && [ "$rc" = 137 ] && ! grep -q 'crash point reached' "$err"; then
        bad "round $round $name: exit 137 without reaching the crash point (killed by whom?)"
        return 1
    fi
    return 0
}

# Counts a step that died: at a crash point ($1 = the CERTFLOW_CRASH_AT value) or by SIGKILL.
count_death() {
    if [[ $1 == kill:* ]]; then
        kills=$((kills + 1))
    else
        crashes=$((crashes + 1))
        crashed_at[${1%%:*}]=$((${crashed_at[${1%%:*}]} + 1))
    fi
}

# CRASH = a crash point with a pass count that fits how often that point is passed.
random_crash() {
    rand 0 3
    case $R in
    0) rand 1 2 && CRASH=job-locked:$R ;;
    1) rand 1 4 && CRASH=plugin-running:$R ;;
    2) rand 1 6 && CRASH=before-commit:$R ;;
    3) rand 1 6 && CRASH=after-commit:$R ;;
    esac
}

# MODE = how a step ends: mostly a random crash point, sometimes SIGKILL after up to $1 ms,
# sometimes a clean stop (resume --timeout) in the middle of the work, sometimes no crash.
random_mode() {
    rand 0 9
    case $R in
    0 | 1) rand 100 "$1" && MODE=kill:$R ;;
    2) MODE= ;;
    3) rand 200 900 && MODE=stop:$R ;;
    *) random_crash && MODE=$CRASH ;;
    esac
}

for round in $(seq 1 "$ITERATIONS"); do
    note=""
    active=$(sql "SELECT count(*) FROM process_instance WHERE state = 'ACTIVE'")
    # Keep work in the database: when everything has ended, the next wave starts (bounded).
    if [ "$active" = 0 ] && [ "$waves" -lt "$MAX_WAVES" ]; then
        start_wave || break
        note=" wave $waves started;"
    fi
    # The message: when only messages are left to wait for, or now and then, to one instance or
    # to all, itself under a crash point or SIGKILL now and then.
    jobs=$(sql "SELECT count(*) FROM job")
    waiting=$(sql "SELECT count(*) FROM event_subscription WHERE name = 'Proceed'")
    rand 0 2
    if [ "$waiting" != 0 ] && [ "$round" -gt 4 ] && { [ "$jobs" = 0 ] || [ "$R" = 0 ]; }; then
        random_mode 600
        cmode=$MODE
        [[ $cmode == stop:* ]] && cmode=
        rand 0 2
        if [ "$R" = 0 ] || [ "$jobs" = 0 ]; then
            target=(--all)
        else
            rand 1 "$started"
            target=(--business-key "crash-$R")
        fi
        engine_step correlate "$cmode" correlate Proceed "${target[@]}" --db "$DB" || break
        correlations=$((correlations + 1))
        note="$note correlate ${target[*]} [${cmode:-no crash}] exit $rc;"
        [ "$rc" = 137 ] && count_death "$cmode"
    fi
    # The first four rounds hit each crash point once, so that every point is exercised; the
    # fifth stops cleanly while calls are still running on worker threads.
    if [ "$round" -le 4 ]; then
        mode=${points[$((round - 1))]}:1
    elif [ "$round" = 5 ]; then
        mode=stop:300
    else
        random_mode 2000
        mode=$MODE
    fi
    if [[ $mode == stop:* ]]; then
        ms=${mode#stop:}
        engine_step resume "" resume --wait --timeout "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))" \
            --db "$DB" || break
        stops=$((stops + 1))
    else
        engine_step resume "$mode" resume --wait --timeout 3 --db "$DB" || break
    fi
    case $rc in
    137) count_death "$mode" ;;
    0 | 1) ;;
    *)
        bad "round $round: resume exited with $rc:"
        sed 's/^/    /' "$WORK/round-$round-resume.err" | head -n 5
        break
        ;;
    esac
    now=$(progress)
    if [ "$now" -lt "$last_progress" ]; then
        bad "round $round: committed work went missing (ended history rows $last_progress → $now)"
        break
    fi
    [ "$now" -gt "$last_progress" ] && rounds_with_progress=$((rounds_with_progress + 1))
    qc=$(sql "PRAGMA quick_check")
    if [ "$qc" != ok ]; then
        bad "round $round: PRAGMA quick_check says: $qc"
        break
    fi
    check_no_duplicates "round $round" || break
    active=$(sql "SELECT count(*) FROM process_instance WHERE state = 'ACTIVE'")
    printf 'round %2d:%s resume [%s] exit %s; progress %s → %s, %s active\n' "$round" "$note" \
        "${mode:-no crash}" "$rc" "$last_progress" "$now" "$active"
    last_progress=$now
done

# --- 3. run to the end without crashes ---

for attempt in 1 2 3 4 5; do
    active=$(sql "SELECT count(*) FROM process_instance WHERE state = 'ACTIVE'")
    [ "$active" = 0 ] && break
    waiting=$(sql "SELECT count(*) FROM event_subscription WHERE name = 'Proceed'")
    if [ "$waiting" != 0 ]; then
        round=final-$attempt
        engine_step correlate "" correlate Proceed --all --db "$DB" || break
        correlations=$((correlations + 1))
    fi
    round=final-$attempt
    engine_step resume "" resume --wait --timeout 30 --db "$DB" || break
done

states=$(sql "SELECT state || ' ' || count(*) FROM process_instance GROUP BY state ORDER BY state")
if [ "$states" = "COMPLETED $started" ]; then
    ok "all $started instances ($waves waves) COMPLETED"
else
    bad "not every instance completed: $(echo "$states" | tr '\n' ',' | sed 's/,$//')"
    sql "SELECT '    instance ' || e.instance_id || ' at ' || coalesce(e.activity_id, '-') || ' ' || e.state
         FROM execution e JOIN process_instance p ON p.id = e.instance_id
         WHERE p.state = 'ACTIVE' AND e.parent_id IS NOT NULL ORDER BY e.instance_id, e.id LIMIT 30"
    sql "SELECT '    job ' || id || ' ' || type || ' at ' || coalesce(activity_id, '-') || ' of instance ' ||
                instance_id || ', retries ' || retries || coalesce(', last error: ' || last_error, '')
         FROM job ORDER BY id LIMIT 30"
    sql "SELECT '    incident ' || id || ' at ' || activity_id || ': ' || message FROM incident
         WHERE resolved_at IS NULL ORDER BY id LIMIT 10"
fi

# Per instance and activity: completed activity instances, and nothing else.
expected_rows=$(echo "$EXPECTED_HISTORY" | wc -l)
mismatch=$(sql "WITH expected(activity_id, n) AS (VALUES $(echo "$EXPECTED_HISTORY" |
    awk -v q="'" '{printf "%s(%s%s%s, %d)", (NR > 1 ? ", " : ""), q, $1, q, $2}')),
                instances(id) AS (SELECT id FROM process_instance),
                want AS (SELECT i.id AS instance_id, e.activity_id, e.n FROM instances i, expected e),
                got AS (SELECT instance_id, activity_id, count(*) AS n FROM history_activity
                        WHERE end_state = 'completed' GROUP BY instance_id, activity_id)
           SELECT 'instance ' || w.instance_id || ' ' || w.activity_id || ': completed ' ||
                  coalesce(g.n, 0) || ' times, expected ' || w.n
           FROM want w LEFT JOIN got g USING (instance_id, activity_id)
           WHERE coalesce(g.n, 0) <> w.n
           UNION ALL
           SELECT 'instance ' || instance_id || ' ' || activity_id || ': not in the model, ' ||
                  count(*) || ' rows'
           FROM history_activity WHERE activity_id NOT IN (SELECT activity_id FROM expected)
           GROUP BY instance_id, activity_id
           UNION ALL
           SELECT 'instance ' || instance_id || ' ' || activity_id || ': ' || count(*) ||
                  ' activity instances ended ' || coalesce(end_state, 'never')
           FROM history_activity WHERE end_state IS NOT 'completed'
           GROUP BY instance_id, activity_id, end_state")
rows=$(sql "SELECT count(*) FROM history_activity")
want_rows=$(echo "$EXPECTED_HISTORY" | awk -v m="$started" '{s += $2} END {print s * m}')
if [ -z "$mismatch" ] && [ "$rows" = "$want_rows" ]; then
    ok "each of the $expected_rows activities completed exactly as often as the model says ($rows history rows)"
else
    bad "history does not match the model ($rows rows, expected $want_rows):"
    echo "$mismatch" | head -n 30 | sed 's/^/    /'
fi

# Variables of each instance's process scope: the loop counter was incremented exactly 3 times.
vars_bad=""
while read -r name value; do
    wrong=$(sql "SELECT 'instance ' || p.id || ' ' || '$name' || ' = ' || coalesce(v.value, '(missing)')
                 FROM process_instance p
                 LEFT JOIN execution r ON r.instance_id = p.id AND r.parent_id IS NULL
                 LEFT JOIN variable v ON v.execution_id = r.id AND v.name = '$name'
                 WHERE v.value IS NULL OR CAST(v.value AS TEXT) <> '$value'")
    [ -n "$wrong" ] && vars_bad="$vars_bad$wrong (expected $value)"$'\n'
done <<<"$EXPECTED_VARS"
if [ -z "$vars_bad" ]; then
    ok "every instance has count = 3 and final = 3 and each branch's variable: outcomes applied exactly once"
else
    bad "variables differ from what exactly-once outcomes give:"
    printf '%s' "$vars_bad" | head -n 20 | sed 's/^/    /'
fi

leftovers=$(sql "SELECT 'jobs: ' || (SELECT count(*) FROM job) ||
                        ', subscriptions: ' || (SELECT count(*) FROM event_subscription WHERE instance_id IS NOT NULL) ||
                        ', non-root executions: ' || (SELECT count(*) FROM execution WHERE parent_id IS NOT NULL) ||
                        ', open incidents: ' || (SELECT count(*) FROM incident WHERE resolved_at IS NULL) ||
                        ', incidents ever: ' || (SELECT count(*) FROM incident)")
if [ "$leftovers" = "jobs: 0, subscriptions: 0, non-root executions: 0, open incidents: 0, incidents ever: 0" ]; then
    ok "nothing left over: no job, subscription, execution or incident"
else
    bad "left over after the end: $leftovers"
    sql "SELECT '    incident ' || id || ' instance ' || instance_id || ' at ' || activity_id || ' (' || type || '): ' || message FROM incident ORDER BY id LIMIT 10"
fi

ic=$(sql "PRAGMA integrity_check")
if [ "$ic" = ok ]; then
    ok "PRAGMA integrity_check: ok"
else
    bad "PRAGMA integrity_check: $ic"
fi

# Idempotency keys: one key per logical step, however often the step ran; no key shared.
if [ ! -s "$KEYS" ]; then
    bad "no idempotency key was logged to $KEYS"
else
    key_bad=$(awk -v expected="$EXPECTED_STEPS" -v m="$started" '
        BEGIN {
            n = split(expected, lines, "\n")
            for (i = 1; i <= n; i++) {
                split(lines[i], f, " ")
                want[f[1]] = f[2]
            }
        }
        {
            calls++
            if (!(($2, $3) in seen_pair))
                seen_pair[$2, $3] = 1
            if (!(($1) in owner)) {
                owner[$1] = $2 " " $3
                steps[$2, $3]++
            } else if (owner[$1] != $2 " " $3) {
                print "key " $1 " used by " owner[$1] " and by " $2 " " $3
            }
        }
        END {
            for (i = 1; i <= m; i++)
                for (a in want)
                    if (steps[i, a] != want[a])
                        print "instance " i " " a ": " steps[i, a] + 0 " distinct keys, expected " want[a]
        }' "$KEYS")
    calls=$(wc -l <"$KEYS")
    keys=$(cut -d' ' -f1 "$KEYS" | sort -u | wc -l)
    if [ -z "$key_bad" ]; then
        ok "one idempotency key per step: $keys steps, $calls calls ($((calls - keys)) re-runs after crashes)"
    else
        bad "idempotency keys do not match the steps:"
        echo "$key_bad" | head -n 20 | sed 's/^/    /'
    fi
fi

# --- 4. the harness itself: did it test anything? ---

summary="crashes at points: job-locked ${crashed_at[job-locked]}, plugin-running ${crashed_at[plugin-running]}, before-commit ${crashed_at[before-commit]}, after-commit ${crashed_at[after-commit]}; SIGKILLs $kills; clean stops mid-work $stops; correlations $correlations; rounds with progress $rounds_with_progress of $ITERATIONS"
echo "$summary"
missing=""
for p in "${points[@]}"; do
    [ "${crashed_at[$p]}" -gt 0 ] || missing="$missing $p"
done
if [ -n "$missing" ]; then
    bad "the harness never crashed at:$missing (a crash point that is never reached tests nothing)"
else
    ok "every crash point was reached at least once"
fi
min_crashes=$((ITERATIONS / 4 < 4 ? 4 : ITERATIONS / 4))
if [ $((crashes + kills)) -ge "$min_crashes" ]; then
    ok "$((crashes + kills)) rounds really died (exit 137), at least $min_crashes wanted"
else
    bad "only $((crashes + kills)) rounds died (exit 137); at least $min_crashes wanted"
fi
min_progress=$((ITERATIONS / 4 < 3 ? 3 : ITERATIONS / 4))
if [ "$rounds_with_progress" -ge "$min_progress" ]; then
    ok "work moved on in $rounds_with_progress rounds between crashes"
else
    bad "work moved on in only $rounds_with_progress rounds; at least $min_progress wanted"
fi

finish

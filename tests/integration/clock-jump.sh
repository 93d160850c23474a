#!/usr/bin/env bash
# Wall-clock jumps neither lose nor repeat a timer firing (issue 3, item 4). The clock is moved
# with faketime (LD_PRELOAD) for whole `certflow resume` runs on one database:
#  - +1 day: a PT1H intermediate timer fires once; an unbounded R/PT1H timer start event, missed
#    24 times, starts one instance, not 24;
#  - the same +1 day again: nothing is due, nothing fires twice;
#  - -1 hour (clock set back): a timer due in one hour does not fire early;
#  - +1 day + 2 hours: the cycle fires once more, the set-back timer fires once.
# Usage: clock-jump.sh CERTFLOW-BINARY
set -u
CERTFLOW=$1
command -v faketime >/dev/null || { echo "faketime is not installed (tools/deps.sh installs it)"; exit 77; }
W=$(mktemp -d "${TMPDIR:-/tmp}/certflow-clock.XXXXXX")
trap 'rm -rf "$W"' EXIT
# faketime preloads a library; ASan must then not insist on being first in the link order.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
pass=0
failed=0
check() {
    if [ "$2" = "$3" ]; then pass=$((pass + 1)); echo "ok   $1"
    else failed=$((failed + 1)); echo "FAIL $1: expected '$2', got '$3'"; fi
}
sql() { sqlite3 "$W/c.db" "$1"; }
cat > "$W/clock.bpmn" <<'BPMN'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="waiter" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait">
      <bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="e"/>
    <bpmn:endEvent id="e"/>
  </bpmn:process>
  <bpmn:process id="ticker" isExecutable="true">
    <bpmn:startEvent id="tick">
      <bpmn:timerEventDefinition><bpmn:timeCycle>R/PT1H</bpmn:timeCycle></bpmn:timerEventDefinition>
    </bpmn:startEvent>
    <bpmn:sequenceFlow id="g1" sourceRef="tick" targetRef="te"/>
    <bpmn:endEvent id="te"/>
  </bpmn:process>
</bpmn:definitions>
BPMN
"$CERTFLOW" run "$W/clock.bpmn" --process waiter --db "$W/c.db" > "$W/run1.out" 2>&1
check "the first instance waits at its timer" "ACTIVE" "$(sql "SELECT state FROM process_instance WHERE id = 1")"
faketime -f "+1d" "$CERTFLOW" resume --db "$W/c.db" > "$W/r1.out" 2>&1
check "+1 day: the PT1H timer fired exactly once" "1" "$(sql "SELECT count(*) FROM history_activity WHERE instance_id = 1 AND activity_id = 'wait' AND end_state = 'completed'")"
check "+1 day: the waiting instance completed" "COMPLETED" "$(sql "SELECT state FROM process_instance WHERE id = 1")"
check "+1 day: the cycle missed 24 times starts one instance" "1" "$(sql "SELECT count(*) FROM process_instance p JOIN process_definition d ON d.id = p.definition_id WHERE d.key = 'ticker'")"
faketime -f "+1d" "$CERTFLOW" resume --db "$W/c.db" > "$W/r2.out" 2>&1
check "+1 day again: nothing fires twice" "1" "$(sql "SELECT count(*) FROM process_instance p JOIN process_definition d ON d.id = p.definition_id WHERE d.key = 'ticker'")"
"$CERTFLOW" run "$W/clock.bpmn" --process waiter --db "$W/c.db" > "$W/run2.out" 2>&1
faketime -f "-1h" "$CERTFLOW" resume --db "$W/c.db" > "$W/r3.out" 2>&1
check "-1 hour: a timer due in one hour does not fire early" "ACTIVE" "$(sql "SELECT state FROM process_instance WHERE id = (SELECT max(p.id) FROM process_instance p JOIN process_definition d ON d.id = p.definition_id WHERE d.key = 'waiter')")"
faketime -f "+26h" "$CERTFLOW" resume --db "$W/c.db" > "$W/r4.out" 2>&1
check "+26 hours: the set-back timer fired exactly once" "1" "$(sql "SELECT count(*) FROM history_activity h WHERE h.activity_id = 'wait' AND h.instance_id = (SELECT max(p.id) FROM process_instance p JOIN process_definition d ON d.id = p.definition_id WHERE d.key = 'waiter') AND end_state = 'completed'")"
check "+26 hours: the cycle fired once more, not once per missed hour" "2" "$(sql "SELECT count(*) FROM process_instance p JOIN process_definition d ON d.id = p.definition_id WHERE d.key = 'ticker'")"
check "no incident" "0" "$(sql "SELECT count(*) FROM incident")"
check "integrity" "ok" "$(sql "PRAGMA integrity_check")"
echo "$pass passed, $failed failed"
[ "$failed" = 0 ]

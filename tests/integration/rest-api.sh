#!/usr/bin/env bash
# Integration test of certflowd's admin APIs, driven with curl and the certflow CLI against a
# daemon on 127.0.0.1: the Camunda 7 subset under /engine-rest (a deploy byte for byte as Camunda
# Modeler sends it, parse errors as ENGINE-09005 with line and element id, start by key, instances,
# variables, the activity tree, history, an incident lifted with PUT /job/{id}/retries, message
# correlation), tenant isolation (another tenant's ids are 404), write-only secrets in /api/v1,
# /health and /metrics (every line valid Prometheus text), and `certflow --url`.
#
# Usage: rest-api.sh CERTFLOWD CERTFLOW
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed,
# 77 (skipped) when a tool it needs is missing.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 CERTFLOWD CERTFLOW" >&2
    exit 2
fi
CERTFLOWD=$(realpath "$1")
CERTFLOW=$(realpath "$2")
for tool in curl jq openssl timeout; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done

W=$(mktemp -d "${TMPDIR:-/tmp}/certflowd-rest.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -9 "$PID" 2>/dev/null; fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$W"; else echo "kept $W"; fi
}
trap cleanup EXIT

PASSED=0
FAILED=0
ok() {
    PASSED=$((PASSED + 1))
    echo "ok   $*"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL $*"
}
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}
check_re() { # check_re DESCRIPTION REGEX ACTUAL
    if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else fail "$1: '$3' does not match /$2/"; fi
}

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo $((20000 + RANDOM % 40000))
}

# ---- configuration and processes --------------------------------------------------------------
MTLS=$(free_port)
BASIC=$(free_port)
HTTP=$(free_port)
while [ "$BASIC" = "$MTLS" ]; do BASIC=$(free_port); done
while [ "$HTTP" = "$MTLS" ] || [ "$HTTP" = "$BASIC" ]; do HTTP=$(free_port); done
mkdir -p "$W/processes"
cat >"$W/certflow.ini" <<EOF
; written by tests/integration/rest-api.sh
[daemon]
data_dir = $W/var
plugin_dir = $(dirname "$CERTFLOWD")/../plugins
shutdown_timeout = 10
[processes]
dir = $W/processes
seed =
[mtls]
port = $MTLS
[basic]
port = $BASIC
[http]
port = $HTTP
EOF

# The diagram Camunda Modeler would deploy: a receive task that waits for message "go".
cat >"$W/diagram_1.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_1" targetNamespace="http://bpmn.io/schema/bpmn" exporter="Camunda Modeler" exporterVersion="5.31.0">
  <bpmn:process id="rest-wait" name="Wait for go" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Wait" />
    <bpmn:receiveTask id="Wait" name="Wait for go" messageRef="Msg_go"><bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing></bpmn:receiveTask>
    <bpmn:sequenceFlow id="F2" sourceRef="Wait" targetRef="End" />
    <bpmn:endEvent id="End"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
  <bpmn:message id="Msg_go" name="go" />
</bpmn:definitions>
EOF
# A service task whose mode comes from a process variable when the call starts.
cat >"$W/rest-fail.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_fail" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="rest-fail" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Task_call" />
    <bpmn:serviceTask id="Task_call" camunda:delegateExpression="${throwErrorTask}">
      <bpmn:extensionElements>
        <camunda:field name="mode" expression="${mode}" />
        <camunda:field name="errorMessage" stringValue="the CA is down" />
      </bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="F2" sourceRef="Task_call" targetRef="End" />
    <bpmn:endEvent id="End"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
EOF
# Two problems a designer must see with line and element id.
cat >"$W/broken.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_broken" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="broken" isExecutable="true">
    <bpmn:startEvent id="Start" />
    <bpmn:scriptTask id="Script_1" scriptFormat="groovy" />
  </bpmn:process>
</bpmn:definitions>
EOF

OUT=$W/certflowd.out
LOG=$W/certflowd.log
(cd "$W" && exec "$CERTFLOWD" --config "$W/certflow.ini" >>"$OUT" 2>>"$LOG") &
PID=$!
for _ in $(seq 1 300); do
    grep -q "listening on http://127.0.0.1:$HTTP" "$OUT" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "listening on http://127.0.0.1:$HTTP" "$OUT" 2>/dev/null; then
    echo "FAIL certflowd did not start; its output:" >&2
    cat "$OUT" "$LOG" >&2
    exit 1
fi
ADMIN_PW=$(cat "$W/var/admin-password")
DB=$W/var/certflow.db
CA=$W/var/tls/ca.pem
E=http://127.0.0.1:$HTTP/engine-rest
V1=http://127.0.0.1:$HTTP/api/v1
EVE_PW="eve-$(openssl rand -hex 8)"
BOB_PW="bob-$(openssl rand -hex 8)"
CERTFLOW_PASSWORD=$EVE_PW "$CERTFLOW" user add eve --admin --tenant other --db "$DB" >/dev/null
check "certflow user add eve (admin of tenant other)" "0" "$?"
CERTFLOW_PASSWORD=$BOB_PW "$CERTFLOW" user add bob --tenant default --db "$DB" >/dev/null
check "certflow user add bob (tenant default, may start nothing)" "0" "$?"

# Every answer is kept (api runs in command substitutions, so each gets a file of its own), so
# that the secret check at the end can look through all of them.
api() { # api USER:PASSWORD CURL-ARGS... ; body in $W/last.json, status echoed
    local cred=$1 f
    shift
    f=$(mktemp "$W/resp.XXXXXX")
    curl -sS --max-time 30 -u "$cred" -o "$f" -w '%{http_code}' "$@"
    cp "$f" "$W/last.json"
}
A="admin:$ADMIN_PW"
JSON='Content-Type: application/json'
jqr() { jq -r "$1" "$W/last.json" 2>/dev/null; }
DATE_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[+-][0-9]{4}$'

# ---- version and the Modeler's connection check ------------------------------------------------
check "GET /version answers 200" "200" "$(api "$A" "$E/version")"
check_re "version is a Camunda 7 version" '^7\.[0-9]+\.[0-9]+$' "$(jqr .version)"
check "GET /deployment?maxResults=0 (connection check) answers 200" "200" "$(api "$A" "$E/deployment?maxResults=0")"
check "... with an empty list" "0" "$(jqr length)"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$E/deployment?maxResults=0")
check "the connection check without credentials answers 401" "401" "$code"

# ---- deploy exactly as Camunda Modeler does ----------------------------------------------------
B='----WebKitFormBoundaryq2Zm7KD3a1xYUb0T'
{
    printf -- '--%s\r\nContent-Disposition: form-data; name="deployment-name"\r\n\r\ndiagram_1\r\n' "$B"
    printf -- '--%s\r\nContent-Disposition: form-data; name="deployment-source"\r\n\r\nCamunda Modeler\r\n' "$B"
    printf -- '--%s\r\nContent-Disposition: form-data; name="enable-duplicate-filtering"\r\n\r\ntrue\r\n' "$B"
    printf -- '--%s\r\nContent-Disposition: form-data; name="diagram_1.bpmn"; filename="diagram_1.bpmn"\r\nContent-Type: text/xml\r\n\r\n' "$B"
    cat "$W/diagram_1.bpmn"
    printf '\r\n--%s--\r\n' "$B"
} >"$W/modeler.body"
modeler_deploy() {
    api "$A" -H "Content-Type: multipart/form-data; boundary=$B" -H 'Accept: application/json' \
        --data-binary @"$W/modeler.body" "$E/deployment/create"
}
check "Modeler deploy answers 200" "200" "$(modeler_deploy)"
DEP_ID=$(jqr .id)
DEF_ID=$(jqr '.deployedProcessDefinitions | keys[0]')
check_re "the answer has a deployment id" '^[0-9]+$' "$DEP_ID"
check "deployedProcessDefinitions holds rest-wait version 1" "rest-wait 1 diagram_1.bpmn default" \
    "$(jqr "[.deployedProcessDefinitions[\"$DEF_ID\"] | .key, .version, .resource, .tenantId] | join(\" \")")"
check "deployedProcessDefinitions is keyed by the definition id" "$DEF_ID" "$(jqr ".deployedProcessDefinitions[\"$DEF_ID\"].id")"
check_re "deploymentTime is yyyy-MM-dd'T'HH:mm:ss.SSSZ" "$DATE_RE" "$(jqr .deploymentTime)"
check "Modeler deploy again (duplicate filtering) answers 200" "200" "$(modeler_deploy)"
check "... and deploys nothing new" "null" "$(jqr .deployedProcessDefinitions)"
check "GET /process-definition/{id}/xml answers 200" "200" "$(api "$A" "$E/process-definition/$DEF_ID/xml")"
check "... with the deployed XML" "$(cat "$W/diagram_1.bpmn")" "$(jqr .bpmn20Xml)"
check "GET /process-definition?key=rest-wait&latestVersion=true" "1 rest-wait" \
    "$(api "$A" "$E/process-definition?key=rest-wait&latestVersion=true" >/dev/null; jqr '[length, .[0].key] | join(" ")')"

# ---- parse errors: ENGINE-09005 with line and element id -------------------------------------
code=$(api "$A" -F deployment-name=broken -F "broken.bpmn=@$W/broken.bpmn;type=text/xml" "$E/deployment/create")
check "deploying a broken BPMN answers 400" "400" "$code"
msg=$(jqr .message)
PREFIX="ENGINE-09005 Could not parse BPMN process. Errors: "
check "the message starts with the Modeler's parse-error prefix" "$PREFIX" "${msg:0:${#PREFIX}}"
check_re "the problem names line and element id" 'line 5 \| element Script_1' "$msg"
check "nothing was deployed" "0" "$(api "$A" "$E/process-definition?key=broken" >/dev/null; jqr length)"
printf 'not xml at all' >"$W/junk.bpmn"
code=$(api "$A" -F "junk.bpmn=@$W/junk.bpmn" "$E/deployment/create")
check "deploying a file that is not XML answers 400" "400" "$code"
check_re "... with ENGINE-09005" '^ENGINE-09005 Could not parse BPMN process\. Errors: ' "$(jqr .message)"
printf -- '--XYZ\r\nContent-Disposition: form-data; name="a.bpmn"; filename="a.bpmn"\r\n\r\n<x/>' >"$W/cut.body"
code=$(api "$A" -H 'Content-Type: multipart/form-data; boundary=XYZ' --data-binary @"$W/cut.body" "$E/deployment/create")
check "a multipart body without its closing boundary answers 400" "400" "$code"
code=$(api "$A" -H "$JSON" -d '{}' "$E/deployment/create")
check "a deploy that is not multipart answers 415" "415" "$code"
code=$(api "$A" -F "rest-fail.bpmn=@$W/rest-fail.bpmn" "$E/deployment/create")
check "deploy rest-fail.bpmn with curl -F answers 200" "200" "$code"

# ---- start by key, instance, variables, activity tree, history --------------------------------
code=$(api "$A" -H "$JSON" -d '{"businessKey":"order-1","variables":{"customer":{"value":"ACME","type":"String"},"amount":{"value":42,"type":"Long"},"due":{"value":"2017-04-06T13:57:45.000+0200","type":"Date"},"doc":{"value":"{\"a\":[1,2]}","type":"Json"},"vip":{"value":true,"type":"Boolean"}}}' "$E/process-definition/key/rest-wait/start")
check "POST /process-definition/key/rest-wait/start answers 200" "200" "$code"
PI=$(jqr .id)
check "the new instance runs with its business key" "false order-1 default $DEF_ID" "$(jqr '[.ended, .businessKey, .tenantId, .definitionId] | map(tostring) | join(" ")')"
check "its self link points at /process-instance/{id}" "$E/process-instance/$PI" "$(jqr '.links[0].href')"
code=$(api "$A" -H "$JSON" -d '{}' "$E/process-definition/$DEF_ID/start")
check "POST /process-definition/{id}/start answers 200" "200" "$code"
PI2=$(jqr .id)
code=$(api "$A" -H "$JSON" -d '{}' "$E/process-definition/key/rest-wait/tenant-id/default/start")
check "POST /process-definition/key/{key}/tenant-id/{tenant}/start answers 200" "200" "$code"
PI3=$(jqr .id)
code=$(api "$A" -H "$JSON" -d '{"variables":{"x":{"value":"y","type":"Object"}}}' "$E/process-definition/key/rest-wait/start")
check "an unsupported variable type answers 400" "400" "$code"
api "$A" "$E/process-instance?processDefinitionKey=rest-wait&businessKey=order-1" >/dev/null
check "GET /process-instance filters by key and business key" "$PI" "$(jqr '[.[].id] | join(",")')"
api "$A" "$E/process-instance/count?processDefinitionKey=rest-wait" >/dev/null
check "GET /process-instance/count" "3" "$(jqr .count)"
api "$A" "$E/process-instance?processDefinitionKey=rest-wait&firstResult=1&maxResults=1" >/dev/null
check "firstResult/maxResults page the list" "$PI2" "$(jqr '[.[].id] | join(",")')"
check "GET /process-instance/{id} answers 200" "200" "$(api "$A" "$E/process-instance/$PI")"
check "GET /process-instance/{id}/variables answers 200" "200" "$(api "$A" "$E/process-instance/$PI/variables")"
check "a String variable" "ACME String" "$(jqr '[.customer.value, .customer.type] | join(" ")')"
check "a Long variable" "42 Long" "$(jqr '[.amount.value, .amount.type] | map(tostring) | join(" ")')"
check "a Date variable in Camunda's format (UTC)" "2017-04-06T11:57:45.000+0000 Date" "$(jqr '[.due.value, .due.type] | join(" ")')"
check "a Json variable" '{"a":[1,2]} Json' "$(jqr '[.doc.value, .doc.type] | join(" ")')"
check "a Boolean variable" "true Boolean" "$(jqr '[.vip.value, .vip.type] | map(tostring) | join(" ")')"
code=$(api "$A" -H "$JSON" -d '{"modifications":{"amount":{"value":43,"type":"Long"},"note":{"value":"hi"}},"deletions":["vip"]}' "$E/process-instance/$PI/variables")
check "POST /process-instance/{id}/variables answers 204" "204" "$code"
api "$A" "$E/process-instance/$PI/variables" >/dev/null
check "... modifications and deletions are applied" "43 hi null" "$(jqr '[.amount.value, .note.value, .vip] | map(tostring) | join(" ")')"
check "GET /process-instance/{id}/activity-instances answers 200" "200" "$(api "$A" "$E/process-instance/$PI/activity-instances")"
check "the tree's root is the process instance" "$PI processDefinition" "$(jqr '[.id, .activityType] | join(" ")')"
check "the token waits in the receive task" "Wait receiveTask" "$(jqr '.childActivityInstances[0] | [.activityId, .activityType] | join(" ")')"
api "$A" "$E/history/activity-instance?processInstanceId=$PI&sortBy=startTime&sortOrder=asc" >/dev/null
check "history in start order" "Start,Wait" "$(jqr '[.[].activityId] | join(",")')"
check "the start event ended, the receive task did not" "true false" "$(jqr '[(.[0].endTime != null), (.[1].endTime != null)] | map(tostring) | join(" ")')"
check_re "history times are in Camunda's format" "$DATE_RE" "$(jqr '.[0].startTime')"
api "$A" "$E/history/activity-instance?processInstanceId=$PI&sortBy=startTime&sortOrder=desc" >/dev/null
check "history in reverse with sortOrder=desc" "Wait,Start" "$(jqr '[.[].activityId] | join(",")')"
code=$(api "$A" "$E/history/activity-instance?processInstanceId=$PI&sortBy=startTime")
check "sortBy without sortOrder answers 400" "400" "$code"

# ---- message correlation -----------------------------------------------------------------------
code=$(api "$A" -H "$JSON" -d '{"messageName":"go","businessKey":"no-such-order"}' "$E/message")
check "a message that matches nothing answers 400" "400" "$code"
check_re "... saying it cannot be correlated" "^Cannot correlate message 'go': No process definition or execution matches" "$(jqr .message)"
code=$(api "$A" -H "$JSON" -d '{"messageName":"go","businessKey":"order-1","processVariables":{"approved":{"value":true,"type":"Boolean"}},"resultEnabled":true}' "$E/message")
check "POST /message with resultEnabled answers 200" "200" "$code"
check "... one Execution result for the waiting instance" "Execution $PI" "$(jqr '.[0] | [.resultType, .execution.processInstanceId] | join(" ")')"
check "an ended instance is 404 in the runtime view" "404" "$(api "$A" "$E/process-instance/$PI")"
api "$A" "$E/history/process-instance/$PI" >/dev/null
check "the history says COMPLETED" "COMPLETED" "$(jqr .state)"
api "$A" "$E/history/variable-instance?processInstanceId=$PI" >/dev/null
check "the message's variable is visible in history" "true" "$(jqr '[.[] | select(.name == "approved") | .value] | .[0] | tostring')"
code=$(api "$A" -H "$JSON" -d '{"messageName":"go","all":true}' "$E/message")
check "POST /message with all=true to the two waiting instances answers 204" "204" "$code"
api "$A" "$E/process-instance/count?processDefinitionKey=rest-wait" >/dev/null
check "... and both went on" "0" "$(jqr .count)"

# ---- an incident, lifted with PUT /job/{id}/retries ------------------------------------------
code=$(api "$A" -H "$JSON" -d '{"variables":{"mode":{"value":"fail","type":"String"}}}' "$E/process-definition/key/rest-fail/start")
check "start rest-fail (its task fails for good) answers 200" "200" "$code"
FPI=$(jqr .id)
for _ in $(seq 1 100); do
    api "$A" "$E/incident?processInstanceId=$FPI" >/dev/null
    [ "$(jqr length)" = "1" ] && break
    sleep 0.1
done
check "GET /incident shows a failedJob incident at the task" "failedJob Task_call the CA is down" \
    "$(jqr '.[0] | [.incidentType, .activityId, .incidentMessage] | join(" ")')"
INC=$(jqr '.[0].id')
JOB=$(jqr '.[0].configuration')
check_re "its configuration is the job id" '^[0-9]+$' "$JOB"
check_re "incidentTimestamp is in Camunda's format" "$DATE_RE" "$(jqr '.[0].incidentTimestamp')"
api "$A" "$E/incident?incidentType=failedJob&processInstanceId=$FPI" >/dev/null
check "the incidentType filter finds it" "$INC" "$(jqr '.[0].id')"
api "$A" "$E/process-instance/$FPI/activity-instances" >/dev/null
check "the activity tree carries the incident id" "$INC" "$(jqr '.childActivityInstances[0].incidentIds[0]')"
code=$(api "$A" -H "$JSON" -d '{"modifications":{"mode":{"value":"complete","type":"String"}}}' "$E/process-instance/$FPI/variables")
check "the variable the task reads is changed (204)" "204" "$code"
code=$(api "$A" -X PUT -H "$JSON" -d '{"retries":1}' "$E/job/$JOB/retries")
check "PUT /job/{id}/retries answers 204" "204" "$code"
for _ in $(seq 1 100); do
    api "$A" "$E/history/process-instance/$FPI" >/dev/null
    [ "$(jqr .state)" = "COMPLETED" ] && break
    sleep 0.1
done
check "the job ran again and the instance completed" "COMPLETED" "$(jqr .state)"
api "$A" "$E/incident?processInstanceId=$FPI" >/dev/null
check "the incident is resolved" "0" "$(jqr length)"
check "PUT retries on an unknown job answers 404" "404" "$(api "$A" -X PUT -H "$JSON" -d '{"retries":1}' "$E/job/999999/retries")"

# ---- cancel -----------------------------------------------------------------------------------
api "$A" -H "$JSON" -d '{"businessKey":"to-cancel"}' "$E/process-definition/key/rest-wait/start" >/dev/null
CPI=$(jqr .id)

# ---- tenant isolation -------------------------------------------------------------------------
EVE="eve:$EVE_PW"
check "another tenant's admin: GET /process-instance/{id} is 404" "404" "$(api "$EVE" "$E/process-instance/$CPI")"
check "... GET variables is 404" "404" "$(api "$EVE" "$E/process-instance/$CPI/variables")"
check "... GET activity-instances is 404" "404" "$(api "$EVE" "$E/process-instance/$CPI/activity-instances")"
check "... GET history is 404" "404" "$(api "$EVE" "$E/history/process-instance/$FPI")"
check "... DELETE is 404" "404" "$(api "$EVE" -X DELETE "$E/process-instance/$CPI")"
check "... POST variables is 404" "404" "$(api "$EVE" -H "$JSON" -d '{"modifications":{"x":{"value":1}}}' "$E/process-instance/$CPI/variables")"
check "... PUT job retries is 404" "404" "$(api "$EVE" -X PUT -H "$JSON" -d '{"retries":1}' "$E/job/$JOB/retries")"
check "... the definition's XML is 404" "404" "$(api "$EVE" "$E/process-definition/$DEF_ID/xml")"
check "... start by the definition id is 404" "404" "$(api "$EVE" -H "$JSON" -d '{}' "$E/process-definition/$DEF_ID/start")"
check "... start by key finds no definition (404)" "404" "$(api "$EVE" -H "$JSON" -d '{}' "$E/process-definition/key/rest-wait/start")"
api "$EVE" "$E/process-instance" >/dev/null
check "... the instance list is empty" "0" "$(jqr length)"
api "$EVE" "$E/incident" >/dev/null
check "... the incident list is empty" "0" "$(jqr length)"
check "... naming the foreign tenant in tenantIdIn is 403" "403" "$(api "$EVE" "$E/process-instance?tenantIdIn=default")"
check "... the message does not reach the other tenant" "400" "$(api "$EVE" -H "$JSON" -d '{"messageName":"go","businessKey":"to-cancel"}' "$E/message")"
check "the instance still runs after all that" "200" "$(api "$A" "$E/process-instance/$CPI")"
BOB="bob:$BOB_PW"
check "a non-admin user may read in its tenant" "200" "$(api "$BOB" "$E/process-instance/$CPI")"
check "... but not deploy (403)" "403" "$(api "$BOB" -F "rest-fail.bpmn=@$W/rest-fail.bpmn" "$E/deployment/create")"
check "... nor start a process it has no grant for (403)" "403" "$(api "$BOB" -H "$JSON" -d '{}' "$E/process-definition/key/rest-wait/start")"
check "... nor cancel (403)" "403" "$(api "$BOB" -X DELETE "$E/process-instance/$CPI")"
check "DELETE /process-instance/{id} answers 204" "204" "$(api "$A" -X DELETE "$E/process-instance/$CPI")"
api "$A" "$E/history/process-instance/$CPI" >/dev/null
check "... and the instance ended canceled" "EXTERNALLY_TERMINATED" "$(jqr .state)"
check "DELETE again answers 404" "404" "$(api "$A" -X DELETE "$E/process-instance/$CPI")"

# ---- secrets are write-only -------------------------------------------------------------------
SECRET="s3cret-$(openssl rand -hex 12)"
code=$(api "$A" -X PUT -H "$JSON" -d "{\"value\":\"$SECRET\"}" "$V1/params/rest-fail/Task_call/secretToken")
check "PUT a secret task parameter answers 200" "200" "$code"
check "... and echoes it masked" "*** true" "$(jqr '[.value, .secret] | map(tostring) | join(" ")')"
check "GET the secret parameter answers 200" "200" "$(api "$A" "$V1/params/rest-fail/Task_call/secretToken")"
check "... masked" "***" "$(jqr .value)"
api "$A" "$V1/params/rest-fail/Task_call" >/dev/null
check "the activity's schema marks secretToken secret" "true" "$(jqr '.parameters[] | select(.name == "secretToken") | .secret')"
check "a value outside the valid values answers 400" "400" "$(api "$A" -X PUT -H "$JSON" -d '{"value":"sometimes"}' "$V1/params/rest-fail/Task_call/mode")"
check "an unknown parameter answers 400" "400" "$(api "$A" -X PUT -H "$JSON" -d '{"value":"x"}' "$V1/params/rest-fail/Task_call/noSuchParam")"
check "a non-admin may not set parameters (403)" "403" "$(api "$BOB" -X PUT -H "$JSON" -d '{"value":"x"}' "$V1/params/rest-fail/Task_call/secretToken")"
check "another tenant does not see the parameter (404)" "404" "$(api "$EVE" "$V1/params/rest-fail/Task_call/secretToken")"
api "$A" "$V1/users" >/dev/null
check "users are listed without password hashes" "0" "$(grep -c 'argon2' "$W/last.json")"
check "... and say whether they have a password" "true" "$(jqr '.[] | select(.name == "admin") | .hasPassword')"

# Templates: writes are checked with cf_ca_template_check(), secret settings never come back.
TSECRET="tpl-$(openssl rand -hex 12)"
check "a template with settings its connector does not have answers 400" "400" \
    "$(api "$A" -H "$JSON" -d '{"name":"bad1","connector":"embedded","settings":{"server":"x"}}' "$V1/templates")"
check_re "... naming the field" 'settings\.server' "$(jqr .message)"
check "a template with a bad procedure answers 400" "400" \
    "$(api "$A" -H "$JSON" -d '{"name":"bad2","procedure":{"validity":"1Y"}}' "$V1/templates")"
check_re "... naming the field" 'procedure\.validity' "$(jqr .message)"
check "a cmp template without its server answers 400" "400" \
    "$(api "$A" -H "$JSON" -d '{"name":"bad3","connector":"cmp","settings":{"reference":"r"}}' "$V1/templates")"
check "none of them was stored" "404 404 404" \
    "$(api "$A" "$V1/templates/bad1") $(api "$A" "$V1/templates/bad2") $(api "$A" "$V1/templates/bad3")"
code=$(api "$A" -H "$JSON" -d "{\"name\":\"viacmp\",\"connector\":\"cmp\",\"settings\":{\"server\":\"127.0.0.1:1\",\"reference\":\"ref-1\",\"secret\":\"$TSECRET\"}}" "$V1/templates")
check "a valid cmp template answers 201" "201" "$code"
check "... and shows its secret masked" "***|ref-1" "$(jqr '"\(.settings.secret)|\(.settings.reference)"')"
api "$A" "$V1/templates" >/dev/null
check "the template list masks it" "***" "$(jqr '.[] | select(.name == "viacmp") | .settings.secret')"
api "$A" "$V1/templates/viacmp" >/dev/null
check "GET /templates/viacmp masks it" "***" "$(jqr .settings.secret)"
stored_secret() {
    sqlite3 "$DB" "SELECT json_extract(settings, '\$.secret') || '|' || json_extract(settings, '\$.reference') FROM certificate_template WHERE name = 'viacmp'"
}
if command -v sqlite3 >/dev/null; then
    sealed_before=$(stored_secret)
    check_re "the secret is stored sealed, not in clear" '^cfsealed:1:[A-Za-z0-9+/=]{40,}\|ref-1$' "$sealed_before"
    if grep -qaF "$TSECRET" "$DB" "$DB-wal" 2>/dev/null; then
        fail "the template secret is in the database file in clear"
    else
        ok "no byte of the database holds the template secret in clear"
    fi
fi
code=$(api "$A" -X PUT -H "$JSON" -d '{"settings":{"server":"127.0.0.1:2","reference":"ref-2","secret":"***"}}' "$V1/templates/viacmp")
check "writing the masked template back answers 200" "200|127.0.0.1:2|***" "$code|$(jqr '"\(.settings.server)|\(.settings.secret)"')"
if command -v sqlite3 >/dev/null; then
    check "... and keeps the stored (sealed) secret" "${sealed_before%|ref-1}|ref-2" "$(stored_secret)"
else
    echo "skip the stored-secret checks (sqlite3 is not installed)"
fi
check "an update that breaks the template answers 400" "400" \
    "$(api "$A" -X PUT -H "$JSON" -d '{"connector":"embedded"}' "$V1/templates/viacmp")"
api "$A" "$V1/templates/viacmp" >/dev/null
check "... and changes nothing" "cmp" "$(jqr .connector)"
"$CERTFLOW" templates show viacmp --db "$DB" >"$W/tpl-show.out" 2>&1
check_re "certflow templates show masks the secret" '"secret":"\*\*\*"' "$(grep '^settings:' "$W/tpl-show.out")"
if grep -rqF "$TSECRET" "$W"/resp.* "$W/tpl-show.out" "$OUT" "$LOG"; then
    fail "the template secret appears in an answer, the CLI output or a log"
else
    ok "the template secret appears in no answer, CLI output or log"
fi

# ---- health and metrics -----------------------------------------------------------------------
check "GET /health/live without credentials answers 200" "200" "$(curl -sS -o "$W/live.json" -w '%{http_code}' "http://127.0.0.1:$HTTP/health/live")"
check "... UP" "UP" "$(jq -r .status "$W/live.json")"
check "GET /health/ready answers 200" "200" "$(curl -sS -o "$W/ready.json" -w '%{http_code}' "http://127.0.0.1:$HTTP/health/ready")"
check "... database and definitions UP" "UP UP" "$(jq -r '[.checks.database.status, .checks.definitions.status] | join(" ")' "$W/ready.json")"
check "GET /metrics answers 200" "200" "$(api "$A" "http://127.0.0.1:$HTTP/metrics")"
cp "$W/last.json" "$W/metrics.txt"
# Each line: a HELP or TYPE comment, or name{label="value",...} number.
bad=$(grep -Ev '^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$' "$W/metrics.txt" |
    grep -Ev '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]Inf|NaN)$' | head -3)
if [ -z "$bad" ] && [ -s "$W/metrics.txt" ]; then ok "every /metrics line is valid Prometheus text"; else fail "invalid /metrics lines: $bad"; fi
for m in 'certflow_build_info{' 'certflow_process_instances{state="COMPLETED"}' 'certflow_incidents_open{type="failedJob"}' \
    'certflow_jobs_due ' 'certflow_jobs_running ' 'certflow_pushes_total{result="accepted"}' \
    'certflow_http_requests_total{code="2xx"}' 'certflow_http_request_duration_seconds_bucket{le="+Inf"}' \
    'certflow_http_request_duration_seconds_count ' 'certflow_db_commits_total '; do
    if grep -qF "$m" "$W/metrics.txt"; then ok "/metrics has $m"; else fail "/metrics lacks $m"; fi
done
check "completed instances are counted" "4" "$(sed -n 's/^certflow_process_instances{state="COMPLETED"} //p' "$W/metrics.txt")"
check "/metrics carries no tenant names" "0" "$(grep -cwE 'default|other' "$W/metrics.txt")"

# ---- certflow --url ---------------------------------------------------------------------------
CLI() { CERTFLOW_PASSWORD=$ADMIN_PW "$CERTFLOW" --url "https://127.0.0.1:$BASIC" --cacert "$CA" --user admin "$@"; }
CLI status >"$W/cli.out" 2>&1
check "certflow --url status exits 0" "0" "$?"
check_re "... and says ready" 'ready' "$(head -1 "$W/cli.out")"
CLI deploy "$W/diagram_1.bpmn" >"$W/cli.out" 2>&1
check "certflow deploy of an unchanged file exits 0" "0" "$?"
check_re "... saying nothing changed" 'no changes' "$(cat "$W/cli.out")"
CLI deploy "$W/broken.bpmn" >"$W/cli.out" 2>&1
check "certflow deploy of a broken file exits 1" "1" "$?"
check_re "... and prints the problem with line and id" 'line 5 \| element Script_1' "$(cat "$W/cli.out")"
CLI -o json list pd >"$W/cli.json" 2>&1
check "certflow list pd -o json exits 0" "0" "$?"
check "... with stable JSON" "rest-fail,rest-wait" "$(jq -r '[.[].key] | sort | join(",")' "$W/cli.json")"
CLI start rest-wait --business-key cli-1 --var n:Long=7 --var who=cli -o json >"$W/cli.json" 2>&1
check "certflow start exits 0" "0" "$?"
CLI_PI=$(jq -r .id "$W/cli.json")
CLI -o json get pi "$CLI_PI" >"$W/cli.json" 2>&1
check "certflow get pi -o json shows its variables" "7 cli" \
    "$(jq -r '"\(.variables[] | select(.name == "n") | .value) \(.variables[] | select(.name == "who") | .value)"' "$W/cli.json")"
CLI get pi "$CLI_PI" >"$W/cli.out" 2>&1
check_re "certflow get pi prints the waiting activity" 'Wait +receiveTask +active' "$(cat "$W/cli.out")"
CLI list pi >"$W/cli.out" 2>&1
check_re "certflow list pi lists it" "^$CLI_PI +rest-wait +cli-1 +ACTIVE" "$(grep "^$CLI_PI " "$W/cli.out")"
CLI cancel "$CLI_PI" >/dev/null 2>&1
check "certflow cancel exits 0" "0" "$?"
CLI cancel "$CLI_PI" >/dev/null 2>&1
check "certflow cancel of an ended instance exits 1" "1" "$?"
CLI params get rest-fail Task_call secretToken >"$W/cli.out" 2>&1
check "certflow params get shows a secret masked" "***" "$(cat "$W/cli.out")"
CLI list nonsense >/dev/null 2>&1
check "a usage error exits 2" "2" "$?"
CERTFLOW_PASSWORD=$ADMIN_PW "$CERTFLOW" --url "https://127.0.0.1:$BASIC" --cacert "$CA" --user admin --password x status >/dev/null 2>&1
check "a password on the command line is refused (exit 2)" "2" "$?"
"$CERTFLOW" --url "https://127.0.0.1:$MTLS" --cacert "$CA" --cert "$W/var/tls/admin.pem" --key "$W/var/tls/admin.key" list inc >"$W/cli.out" 2>&1
check "certflow with a client certificate exits 0" "0" "$?"
CERTFLOW_PASSWORD=wrong-password "$CERTFLOW" --url "https://127.0.0.1:$BASIC" --cacert "$CA" --user admin list pd >/dev/null 2>&1
check "a wrong password exits 1" "1" "$?"

# ---- the secret never came back ---------------------------------------------------------------
if grep -rqF "$SECRET" "$W"/resp.* "$W/cli.out" "$W/cli.json" "$OUT" "$LOG" "$W/metrics.txt"; then
    fail "the secret parameter value appears in an answer or a log"
else
    ok "the secret parameter value appears in no answer and no log"
fi

kill "$PID" 2>/dev/null
wait "$PID" 2>/dev/null
PID=
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

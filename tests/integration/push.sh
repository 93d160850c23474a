#!/usr/bin/env bash
# Integration test of certflowd's push endpoint and authentication, driven with real clients:
# curl and openssl s_client against certflowd on 127.0.0.1, with a test PKI made on the fly with
# the openssl command. Covers reliability.md §5 cases 6-10 and 14 (kill -9 in a push burst), the
# CertificatePublicationException line, the folder watch, --check-config and a clean SIGTERM.
#
# Usage: push.sh CERTFLOWD CERTFLOW
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 CERTFLOWD CERTFLOW" >&2
    exit 2
fi
CERTFLOWD=$(realpath "$1")
CERTFLOW=$(realpath "$2")
for tool in curl openssl sqlite3 base64 sha256sum timeout; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done

W=$(mktemp -d "${TMPDIR:-/tmp}/certflowd-push.XXXXXX")
PID=
BURST_PIDS=
GEN_PIDS=
cleanup() {
    for p in $BURST_PIDS $GEN_PIDS; do kill "$p" 2>/dev/null; done
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
section() { echo "# $* (at ${SECONDS}s)"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        echo $((20000 + RANDOM % 40000))
    fi
}

# ---- test PKI ---------------------------------------------------------------------------------
P=$W/pki
mkdir -p "$P"
ossl() { openssl "$@" 2>>"$P/openssl.log"; }
mkca() { # mkca NAME CN
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$1.key" \
        -out "$P/$1.pem" -days 30 -subj "/O=certflow test/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
mkleaf() { # mkleaf NAME CA CN EXT...
    local name=$1 ca=$2 cn=$3
    shift 3
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$name.key" \
        -out "$P/$name.csr" -subj "/O=certflow test/CN=$cn"
    local ext=$P/$name.ext
    printf '%s\n' "$@" >"$ext"
    ossl x509 -req -in "$P/$name.csr" -CA "$P/$ca.pem" -CAkey "$P/$ca.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 30 -out "$P/$name.pem" -extfile "$ext"
}
mkca ca "certflow test CA"
mkca rogue "rogue CA"
mkleaf server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth"
mkleaf client ca "pusher" "extendedKeyUsage=clientAuth"
mkleaf unmapped ca "nobody" "extendedKeyUsage=clientAuth"
mkleaf untrusted rogue "pusher" "extendedKeyUsage=clientAuth"
cat "$P/server.pem" "$P/ca.pem" >"$P/server-chain.pem"
# Certificates to push: one key and request, signed again with new serials.
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/dev.key" -out "$P/dev.csr" \
    -subj "/O=certflow test/CN=device.example.test"
mkpush() { # mkpush NAME: DER in NAME.der, wrapped Base64 in NAME.b64
    ossl x509 -req -in "$P/dev.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 30 -outform DER -out "$P/$1.der"
    base64 -w 64 "$P/$1.der" >"$P/$1.b64"
}
for n in c1 c2 c3 c4 c5 c6 c7 cfail cmsg; do mkpush $n; done
# The 200 certificates of the kill -9 burst are made meanwhile, by four background jobs.
GEN_PIDS=
for k in 0 1 2 3; do
    (for i in $(seq $((k * 50 + 1)) $((k * 50 + 50))); do mkpush "b$i"; done) &
    GEN_PIDS="$GEN_PIDS $!"
done
if [ ! -s "$P/c1.der" ] || [ ! -s "$P/client.pem" ]; then
    echo "FAIL cannot make the test PKI:" >&2
    cat "$P/openssl.log" >&2
    exit 1
fi

# ---- configuration, processes, start ----------------------------------------------------------
MTLS=$(free_port)
BASIC=$(free_port)
HTTP=$(free_port)
while [ "$BASIC" = "$MTLS" ]; do BASIC=$(free_port); done
while [ "$HTTP" = "$MTLS" ] || [ "$HTTP" = "$BASIC" ]; do HTTP=$(free_port); done
DB=$W/var/certflow.db
mkdir -p "$W/processes"
cat >"$W/certflow.ini" <<EOF
; written by tests/integration/push.sh
[daemon]
data_dir = $W/var
shutdown_timeout = 20
[processes]
dir = $W/processes
seed =
settle_ms = 200
debounce_ms = 50
[tls]
cert = $P/server-chain.pem
key = $P/server.key
truststore = $P/ca.pem
[mtls]
port = $MTLS
[basic]
port = $BASIC
[http]
port = $HTTP
EOF

cat >"$W/processes/push-test.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_push_test" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="push-test" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Task_set" />
    <bpmn:serviceTask id="Task_set" camunda:delegateExpression="${setVariablesTask}">
      <bpmn:extensionElements>
        <camunda:inputOutput>
          <camunda:inputParameter name="variables">seenSubject=${Certificate_SubjectDN}
seenSerial=${Certificate_CertSerial}</camunda:inputParameter>
        </camunda:inputOutput>
      </bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="F2" sourceRef="Task_set" targetRef="End" />
    <bpmn:endEvent id="End"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
EOF
cat >"$W/processes/push-fail.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_push_fail" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="push-fail" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Task_publish" />
    <bpmn:serviceTask id="Task_publish" camunda:delegateExpression="${throwErrorTask}">
      <bpmn:extensionElements>
        <camunda:inputOutput>
          <camunda:inputParameter name="mode">error</camunda:inputParameter>
          <camunda:inputParameter name="errorCode">PublicationFailed</camunda:inputParameter>
          <camunda:inputParameter name="errorMessage">LDAP directory refused the entry</camunda:inputParameter>
        </camunda:inputOutput>
      </bpmn:extensionElements>
      <bpmn:incoming>F1</bpmn:incoming><bpmn:outgoing>F2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="F2" sourceRef="Task_publish" targetRef="End" />
    <bpmn:endEvent id="End"><bpmn:incoming>F2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
EOF
cat >"$W/processes/push-msg.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="Defs_push_msg" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:message id="M" name="Ping" />
  <bpmn:process id="push-msg" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing><bpmn:messageEventDefinition id="MD" messageRef="M" /></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="End" />
    <bpmn:endEvent id="End"><bpmn:incoming>F1</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
EOF

LOG=$W/certflowd.log
OUT=$W/certflowd.out
start_daemon() {
    (cd "$W" && exec "$CERTFLOWD" --config "$W/certflow.ini" >>"$OUT" 2>>"$LOG") &
    PID=$!
    for _ in $(seq 1 300); do
        if grep -q "listening on https://127.0.0.1:$BASIC" "$OUT" 2>/dev/null &&
            [ "$(grep -c 'ready (database' "$OUT")" -ge "$1" ]; then
            return 0
        fi
        if ! kill -0 "$PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "FAIL certflowd did not start; its log:" >&2
    cat "$OUT" "$LOG" >&2
    exit 1
}
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$@"; }
wait_for() { # wait_for SECONDS SQL EXPECTED
    local deadline=$((SECONDS + $1)) v
    while :; do
        v=$(sql "$2" 2>/dev/null)
        if [ "$v" = "$3" ] || [ $SECONDS -ge $deadline ]; then
            echo "$v"
            return
        fi
        sleep 0.1
    done
}

# --check-config reports unknown keys with their line
printf '[daemon]\ndata_dir = x\nbogus = 1\n[nosuch]\nkey = 2\n' >"$W/bad.ini"
"$CERTFLOWD" --config "$W/bad.ini" --check-config >"$W/check.out" 2>&1
check "--check-config fails on unknown keys" "2" "$?"
if grep -q "bad.ini:3: unknown key bogus" "$W/check.out" && grep -q "bad.ini:5: unknown section \[nosuch\]" "$W/check.out"; then
    ok "--check-config names each bad line"
else
    fail "--check-config output: $(cat "$W/check.out")"
fi
"$CERTFLOWD" --config "$W/certflow.ini" --check-config >/dev/null 2>&1
check "--check-config accepts the test configuration" "0" "$?"

start_daemon 1
ADMIN_PW=$(cat "$W/var/admin-password")
check "admin password file is private" "600" "$(stat -c %a "$W/var/admin-password")"
defs=$(wait_for 20 "SELECT count(*) FROM process_definition WHERE key IN ('push-test','push-fail','push-msg')" 3)
check "the processes folder is deployed" "3" "$defs"

# Users: pusher (client certificate and password, may start push-test and push-fail in tenant
# default), limited (password, tenant default, may start nothing).
PUSHER_PW="pusher-$(openssl rand -hex 8)"
LIMITED_PW="limited-$(openssl rand -hex 8)"
CERTFLOW_PASSWORD=$PUSHER_PW "$CERTFLOW" user add pusher --tenant default --allow push-test \
    --allow push-fail --allow push-msg --cert "$P/client.pem" --db "$DB" >/dev/null
check "certflow user add pusher" "0" "$?"
CERTFLOW_PASSWORD=$LIMITED_PW "$CERTFLOW" user add limited --tenant default --tenant other --db "$DB" >/dev/null
check "certflow user add limited" "0" "$?"

MTLS_URL=https://127.0.0.1:$MTLS/ws/certificate/register
BASIC_URL=https://127.0.0.1:$BASIC/ws/certificate/register
CT='Content-Type: application/pkix-cert'
mtls() { curl -sS --max-time 20 --cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" "$@"; }
basic() { curl -sS --max-time 20 --cacert "$P/ca.pem" "$@"; }
certs() { sql "SELECT count(*) FROM certificate"; }
insts() { sql "SELECT count(*) FROM process_instance"; }
json_field() { # json_field NAME FILE
    sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$2"
}

# ---- 1. push over mTLS starts the process ----
section "1. push over mTLS starts the process"
code=$(mtls -o "$W/r1.json" -w '%{http_code}' -H "$CT" --data-binary @"$P/c1.b64" "$MTLS_URL/default/push-test?tenantId=default")
check "push over mTLS answers 201" "201" "$code"
CID=$(json_field certificateId "$W/r1.json")
IID=$(json_field processInstanceId "$W/r1.json")
if [ -n "$CID" ] && [ -n "$IID" ] && [ "$IID" != "null" ]; then ok "201 body has certificateId=$CID processInstanceId=$IID"; else fail "201 body: $(cat "$W/r1.json")"; fi
state=$(wait_for 20 "SELECT state FROM process_instance WHERE id=$IID" COMPLETED)
check "the pushed certificate's process runs to its end" "COMPLETED" "$state"
SHA1=$(sha256sum "$P/c1.der" | cut -d' ' -f1)
check "certificate row: fingerprint, tenant, template, instance" "$SHA1|default|default|$IID" \
    "$(sql "SELECT c.sha256, c.tenant_id, t.name, c.instance_id FROM certificate c JOIN certificate_template t ON t.id=c.template_id WHERE c.id=$CID")"
SERIAL=$(openssl x509 -inform DER -in "$P/c1.der" -noout -serial | cut -d= -f2)
check "variable Certificate_CertSerial" "$SERIAL" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='Certificate_CertSerial'")"
check "variable Certificate_SubjectDN" "CN=device.example.test,O=certflow test" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='Certificate_SubjectDN'")"
check "variable Certificate_IssuerDN" "CN=certflow test CA,O=certflow test" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='Certificate_IssuerDN'")"
check "variable certificateId" "$CID" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='certificateId'")"
check "variable Certificate_Fingerprint" "$SHA1" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='Certificate_Fingerprint'")"
check "variable Certificate_Cert holds the DER" "$(xxd -p "$P/c1.der" | tr -d '\n')" "$(sql "SELECT lower(hex(value)) FROM variable WHERE instance_id=$IID AND name='Certificate_Cert'")"
check "variables Certificate_NotBefore/NotAfter are dates" "7|7" "$(sql "SELECT group_concat(type,'|') FROM variable WHERE instance_id=$IID AND name IN ('Certificate_NotBefore','Certificate_NotAfter')")"
api_vars=$(mtls "https://127.0.0.1:$MTLS/engine-rest/history/variable-instance?processInstanceId=$IID")
if echo "$api_vars" | grep -q '"name":"Certificate_SubjectDN"' && echo "$api_vars" | grep -q '"name":"certificateId"'; then
    ok "the variables are visible through /engine-rest/history/variable-instance"
else
    fail "variables through the API: $(echo "$api_vars" | head -c 300)"
fi
check "the process saw the variables" "CN=device.example.test,O=certflow test" "$(sql "SELECT value FROM variable WHERE instance_id=$IID AND name='seenSubject'")"

# ---- 2. the same certificate again ----
section "2. the same certificate again"
n_inst=$(insts)
code=$(mtls -o "$W/r2.json" -w '%{http_code}' -H "$CT" --data-binary @"$P/c1.b64" "$MTLS_URL/default/push-test?tenantId=default")
check "duplicate push answers 200" "200" "$code"
check "duplicate push gives the same ids" "$CID/$IID" "$(json_field certificateId "$W/r2.json")/$(json_field processInstanceId "$W/r2.json")"
sleep 0.3
check "duplicate push starts no second process" "$n_inst" "$(insts)"

# ---- 3. HTTP Basic ----
section "3. HTTP Basic"
code=$(basic -o "$W/r3.json" -w '%{http_code}' -u "pusher:$PUSHER_PW" -H "$CT" --data-binary @"$P/c2.b64" "$BASIC_URL/default/push-test?tenantId=default")
check "push over Basic answers 201" "201" "$code"
code=$(basic -o /dev/null -w '%{http_code}' -u "pusher:$PUSHER_PW" -H "$CT" --data-binary @"$P/c2.b64" "$BASIC_URL/default/push-test?tenantId=default")
check "push over Basic again answers 200 (credential cache or not)" "200" "$code"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 -u "pusher:$PUSHER_PW" -H "$CT" --data-binary @"$P/c3.b64" "http://127.0.0.1:$HTTP/ws/certificate/register/default?tenantId=default")
check "push without process over loopback HTTP answers 201" "201" "$code"

# Choices: PEM armour and CRLF-wrapped Base64 are accepted.
{ echo "-----BEGIN CERTIFICATE-----"; cat "$P/c4.b64"; echo "-----END CERTIFICATE-----"; } >"$P/c4.pem"
code=$(mtls -o /dev/null -w '%{http_code}' -H "$CT" --data-binary @"$P/c4.pem" "$MTLS_URL/default?tenantId=default")
check "PEM armour is accepted" "201" "$code"
sed 's/$/\r/' "$P/c5.b64" >"$P/c5.crlf"
code=$(mtls -o /dev/null -w '%{http_code}' -H "$CT" --data-binary @"$P/c5.crlf" "$MTLS_URL/default?tenantId=default")
check "Base64 wrapped with CRLF is accepted" "201" "$code"

# ---- 4. bad input: precise 4xx and nothing stored ----
section "4. bad input: precise 4xx and nothing stored"
bad() { # bad DESCRIPTION EXPECTED-CODE BODY-FILE URL [curl args]
    local desc=$1 want=$2 body=$3 url=$4
    shift 4
    local before_c before_i code
    before_c=$(certs)
    before_i=$(insts)
    code=$(mtls -o "$W/bad.json" -w '%{http_code}' "$@" --data-binary @"$body" "$url")
    check "$desc answers $want" "$want" "$code"
    sleep 0.2
    check "$desc stores nothing" "$before_c/$before_i" "$(certs)/$(insts)"
}
printf 'this is not base64!\n' >"$P/notb64"
openssl req -in "$P/dev.csr" -outform DER 2>/dev/null | base64 -w 64 >"$P/csr.b64"
{ cat "$P/c6.der"; printf 'trailing'; } | base64 -w 64 >"$P/trailing.b64"
head -c $((1024 * 1024)) /dev/zero | base64 -w 64 >"$P/big.b64"
bad "not Base64" 400 "$P/notb64" "$MTLS_URL/default/push-test?tenantId=default" -H "$CT"
bad "a CSR instead of a certificate" 400 "$P/csr.b64" "$MTLS_URL/default/push-test?tenantId=default" -H "$CT"
if grep -q "CSR" "$W/bad.json"; then ok "the CSR answer says so"; else fail "CSR answer: $(cat "$W/bad.json")"; fi
bad "trailing bytes after the DER" 400 "$P/trailing.b64" "$MTLS_URL/default/push-test?tenantId=default" -H "$CT"
bad "wrong Content-Type" 415 "$P/c6.b64" "$MTLS_URL/default/push-test?tenantId=default" -H "Content-Type: text/plain"
bad "a 1 MiB body" 413 "$P/big.b64" "$MTLS_URL/default/push-test?tenantId=default" -H "$CT"
bad "an unknown template" 404 "$P/c6.b64" "$MTLS_URL/nosuch/push-test?tenantId=default" -H "$CT"
bad "an unknown process" 404 "$P/c6.b64" "$MTLS_URL/default/nosuch?tenantId=default" -H "$CT"
bad "a foreign tenant" 403 "$P/c6.b64" "$MTLS_URL/default/push-test?tenantId=other" -H "$CT"
bad "a missing tenantId" 400 "$P/c6.b64" "$MTLS_URL/default/push-test" -H "$CT"
before=$(certs)
code=$(basic -o /dev/null -w '%{http_code}' -u "limited:$LIMITED_PW" -H "$CT" --data-binary @"$P/c6.b64" "$BASIC_URL/default/push-test?tenantId=default")
check "a user not allowed to start the process gets 403" "403" "$code"
check "... and nothing is stored" "$before" "$(certs)"

# A commit that cannot happen (another writer holds the database longer than the busy timeout)
# answers 503, never 201, and stores nothing.
before=$(certs)/$(insts)
sqlite3 "$DB" "BEGIN IMMEDIATE" "INSERT INTO tenant(id, created_at) VALUES ('lock-holder', 0)" \
    ".shell sleep 8" "ROLLBACK" >/dev/null 2>&1 &
LOCK_PID=$!
sleep 0.5
code=$(mtls -o "$W/busy.json" -D "$W/busy.h" -w '%{http_code}' -H "$CT" --data-binary @"$P/c6.b64" "$MTLS_URL/default/push-test?tenantId=default")
wait $LOCK_PID
check "a push whose commit fails answers 503" "503" "$code"
if grep -qi '^Retry-After:' "$W/busy.h"; then ok "503 carries Retry-After"; else fail "503 without Retry-After"; fi
check "... and stores nothing" "$before" "$(certs)/$(insts)"
code=$(mtls -o /dev/null -w '%{http_code}' -H "$CT" --data-binary @"$P/c6.b64" "$MTLS_URL/default/push-test?tenantId=default")
check "the same push once the database is free answers 201" "201" "$code"

# ---- 5. a failing process: CertificatePublicationException ----
section "5. a failing process: CertificatePublicationException"
code=$(mtls -o "$W/rf.json" -w '%{http_code}' -H "$CT" --data-binary @"$P/cfail.b64" "$MTLS_URL/default/push-fail?tenantId=default")
check "push to a process that will fail still answers 201" "201" "$code"
FCID=$(json_field certificateId "$W/rf.json")
for _ in $(seq 1 100); do
    grep -q "CertificatePublicationException certificateId=$FCID " "$LOG" && break
    sleep 0.1
done
if grep -q "CertificatePublicationException certificateId=$FCID .*PublicationFailed\|CertificatePublicationException certificateId=$FCID .*LDAP" "$LOG"; then
    ok "the incident is logged as CertificatePublicationException with the certificate id"
else
    fail "no CertificatePublicationException line for certificate $FCID"
fi
check "the certificate of the failed process stays stored" "1" "$(sql "SELECT count(*) FROM certificate WHERE id=$FCID")"
code=$(mtls -o "$W/rm.json" -w '%{http_code}' -H "$CT" --data-binary @"$P/cmsg.b64" "$MTLS_URL/default/push-msg?tenantId=default")
check "push to a process that cannot be started answers 201" "201" "$code"
check "... without a process instance" "null" "$(json_field processInstanceId "$W/rm.json")"
MCID=$(json_field certificateId "$W/rm.json")
if grep -q "CertificatePublicationException certificateId=$MCID .*process=push-msg: the process could not be started" "$LOG"; then
    ok "a process that cannot start is logged as CertificatePublicationException"
else
    fail "no CertificatePublicationException line for certificate $MCID"
fi

# ---- 6. mTLS refusals ----
section "6. mTLS refusals"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$P/ca.pem" -H "$CT" --data-binary @"$P/c6.b64" "$MTLS_URL/default?tenantId=default" 2>/dev/null)
check "no client certificate: no HTTP answer" "000" "$code"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$P/ca.pem" --cert "$P/untrusted.pem" --key "$P/untrusted.key" -H "$CT" --data-binary @"$P/c6.b64" "$MTLS_URL/default?tenantId=default" 2>/dev/null)
check "client certificate of an untrusted CA: no HTTP answer" "000" "$code"
# With TLS 1.3 the server's verdict on the client certificate arrives after the client's side of
# the handshake, so send a request and look for the alert instead of an answer.
sc=$(printf 'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n' | timeout 10 openssl s_client -quiet -ign_eof \
    -connect "127.0.0.1:$MTLS" -CAfile "$P/ca.pem" -cert "$P/untrusted.pem" -key "$P/untrusted.key" 2>&1)
if echo "$sc" | grep -q "alert unknown ca" && ! echo "$sc" | grep -q "^HTTP/1.1"; then
    ok "openssl s_client with an untrusted client certificate gets alert unknown ca"
else
    fail "openssl s_client with an untrusted client certificate: $sc"
fi
sc=$(echo | timeout 10 openssl s_client -tls1_2 -connect "127.0.0.1:$MTLS" -CAfile "$P/ca.pem" 2>&1)
if echo "$sc" | grep -qi "alert"; then
    ok "openssl s_client -tls1_2 without a client certificate fails in the handshake"
else
    fail "openssl s_client -tls1_2 without a client certificate: $(echo "$sc" | tail -3)"
fi
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$P/ca.pem" --cert "$P/unmapped.pem" --key "$P/unmapped.key" -H "$CT" --data-binary @"$P/c6.b64" "$MTLS_URL/default?tenantId=default")
check "a trusted but unmapped client certificate gets 403" "403" "$code"

# ---- 7. Basic refusals and rate limit ----
section "7. Basic refusals and rate limit"
t0=$(date +%s%N)
code_wrong=$(basic -o "$W/wrong.json" -D "$W/wrong.h" -w '%{http_code}' -u "pusher:not-the-password" -H "$CT" --data-binary @"$P/c6.b64" "$BASIC_URL/default?tenantId=default")
t1=$(date +%s%N)
code_unknown=$(basic -o "$W/unknown.json" -w '%{http_code}' -u "nosuchuser:whatever" -H "$CT" --data-binary @"$P/c6.b64" "$BASIC_URL/default?tenantId=default")
t2=$(date +%s%N)
check "wrong password answers 401" "401" "$code_wrong"
check "unknown user answers 401" "401" "$code_unknown"
check "wrong password and unknown user get the same body" "$(cat "$W/wrong.json")" "$(cat "$W/unknown.json")"
if grep -qi '^WWW-Authenticate: Basic' "$W/wrong.h"; then ok "401 carries WWW-Authenticate"; else fail "401 without WWW-Authenticate"; fi
ms_wrong=$(((t1 - t0) / 1000000))
ms_unknown=$(((t2 - t1) / 1000000))
if [ $ms_wrong -lt $((ms_unknown * 3 + 50)) ] && [ $ms_unknown -lt $((ms_wrong * 3 + 50)) ]; then
    ok "wrong password (${ms_wrong} ms) and unknown user (${ms_unknown} ms) take similar time"
else
    fail "timing differs: wrong password ${ms_wrong} ms, unknown user ${ms_unknown} ms"
fi
saw429=0
for i in $(seq 1 50); do
    c=$(basic -o /dev/null -D "$W/rl.h" -w '%{http_code}' -u "pusher:guess-$i" -H "$CT" --data-binary @"$P/c6.b64" "$BASIC_URL/default?tenantId=default")
    if [ "$c" = 429 ]; then saw429=1; break; fi
done
check "rapid failed logins end in 429" "1" "$saw429"
if grep -qi '^Retry-After: [0-9]' "$W/rl.h"; then ok "429 carries Retry-After"; else fail "429 without Retry-After"; fi
code=$(basic -o /dev/null -w '%{http_code}' -u "pusher:$PUSHER_PW" -H "$CT" --data-binary @"$P/c6.b64" "$BASIC_URL/default?tenantId=default")
check "while limited, even the right password gets 429" "429" "$code"

# ---- 8. folder watch ----
section "8. folder watch"
v1=$(sql "SELECT max(version) FROM process_definition WHERE key='push-test'")
sed 's/id="End"/id="End" name="changed"/' "$W/processes/push-test.bpmn" >"$W/push-test.v2"
head -c 400 "$W/push-test.v2" >"$W/processes/push-test.bpmn"
sleep 1
tail -c +401 "$W/push-test.v2" >>"$W/processes/push-test.bpmn"
v2=$(wait_for 20 "SELECT max(version) FROM process_definition WHERE key='push-test'" $((v1 + 1)))
check "a file written in two steps gives one new version" "$((v1 + 1))" "$v2"
touch "$W/processes/push-test.bpmn"
sleep 1
check "the same content again gives no new version" "$v2" "$(sql "SELECT max(version) FROM process_definition WHERE key='push-test'")"
cat >"$W/processes/push-test.bpmn" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="D" targetNamespace="x">
  <bpmn:process id="push-test" isExecutable="true">
    <bpmn:startEvent id="Start"><bpmn:outgoing>F1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="F1" sourceRef="Start" targetRef="Nowhere" />
  </bpmn:process>
</bpmn:definitions>
EOF
for _ in $(seq 1 50); do grep -q "deploy: invalid file=.*push-test.bpmn line=[0-9]* element=F1:" "$LOG" && break; sleep 0.1; done
if grep -q "deploy: invalid file=.*push-test.bpmn line=5 element=F1: .*Nowhere" "$LOG"; then
    ok "an invalid file is logged with its line and element id"
else
    fail "no line/element log for the invalid file: $(grep 'deploy:' "$LOG" | tail -3)"
fi
check "an invalid file leaves the previous version live" "$v2" "$(sql "SELECT max(version) FROM process_definition WHERE key='push-test'")"
cp "$W/push-test.v2" "$W/processes/push-test.bpmn"

# ---- 9. kill -9 in the middle of a push burst ----
section "9. kill -9 in the middle of a push burst"
wait $GEN_PIDS
GEN_PIDS=
mkdir -p "$W/burst"
worker() { # worker FIRST LAST
    for i in $(seq "$1" "$2"); do
        mtls -o "$W/burst/$i.json" -w '%{http_code}' --max-time 10 -H "$CT" --data-binary @"$P/b$i.b64" \
            "$MTLS_URL/default/push-test?tenantId=default" >"$W/burst/$i.code" 2>/dev/null
    done
}
worker 1 50 & BURST_PIDS="$BURST_PIDS $!"
worker 51 100 & BURST_PIDS="$BURST_PIDS $!"
worker 101 150 & BURST_PIDS="$BURST_PIDS $!"
worker 151 200 & BURST_PIDS="$BURST_PIDS $!"
for _ in $(seq 1 300); do
    [ "$(grep -l '^20[01]$' "$W"/burst/*.code 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.05
done
kill -9 "$PID"
wait "$PID" 2>/dev/null
PID=
wait $BURST_PIDS 2>/dev/null
BURST_PIDS=
acked=0
for i in $(seq 1 200); do
    c=$(cat "$W/burst/$i.code" 2>/dev/null)
    if [ "$c" = 201 ] || [ "$c" = 200 ]; then acked=$((acked + 1)); fi
done
if [ $acked -ge 40 ] && [ $acked -lt 200 ]; then ok "kill -9 hit the burst after $acked acknowledged pushes"; else fail "burst: $acked of 200 acknowledged before the kill"; fi
start_daemon 2
# The acknowledged pushes, as (fingerprint, instance id) rows compared in one query each.
: >"$W/acked.csv"
for i in $(seq 1 200); do
    c=$(cat "$W/burst/$i.code" 2>/dev/null)
    [ "$c" = 201 ] || [ "$c" = 200 ] || continue
    echo "$(sha256sum "$P/b$i.der" | cut -d' ' -f1),$(json_field processInstanceId "$W/burst/$i.json")" >>"$W/acked.csv"
done
sqlq() {
    sqlite3 -cmd ".timeout 5000" "$DB" "CREATE TEMP TABLE acked(sha TEXT, iid INTEGER)" \
        ".import --csv $W/acked.csv acked" "$1"
}
lost=$(sqlq "SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM certificate c WHERE c.sha256 = a.sha)")
dup=$(sqlq "SELECT count(*) FROM acked a WHERE (SELECT count(*) FROM certificate c WHERE c.sha256 = a.sha) > 1")
deadline=$((SECONDS + 60))
while :; do
    unfinished=$(sqlq "SELECT count(*) FROM acked a WHERE NOT EXISTS (SELECT 1 FROM process_instance p JOIN certificate c ON c.instance_id = p.id WHERE c.sha256 = a.sha AND p.id = a.iid AND p.state = 'COMPLETED')")
    [ "$unfinished" = 0 ] || [ $SECONDS -ge $deadline ] && break
    sleep 0.2
done
check "every acknowledged push is stored after kill -9" "0" "$lost"
check "no acknowledged push is stored twice" "0" "$dup"
check "every acknowledged push's process ran to its end after restart" "0" "$unfinished"
check "every stored burst certificate has exactly one instance" "0" \
    "$(sql "SELECT count(*) FROM certificate c WHERE c.id > $MCID AND (c.instance_id IS NULL OR (SELECT count(DISTINCT instance_id) FROM variable v WHERE v.name='certificateId' AND v.value=c.id) != 1)")"
check "database integrity after kill -9" "ok" "$(sql "PRAGMA integrity_check")"
code=$(mtls -o /dev/null -w '%{http_code}' -H "$CT" --data-binary @"$P/c7.b64" "$MTLS_URL/default/push-test?tenantId=default")
check "pushes work after the restart" "201" "$code"

# ---- 10. secrets, shutdown ----
section "10. secrets, shutdown"
leaked=0
for secret in "$ADMIN_PW" "$PUSHER_PW" "$LIMITED_PW"; do
    grep -qF -- "$secret" "$LOG" && leaked=1
done
check "no password appears in the daemon log" "0" "$leaked"
if grep -qi "authorization" "$LOG"; then fail "the log mentions an Authorization header"; else ok "no Authorization header in the log"; fi
kill -TERM "$PID"
rc=0
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"
rc=$?
PID=
check "SIGTERM stops certflowd with exit code 0" "0" "$rc"

echo "$PASSED passed, $FAILED failed"
if [ $FAILED -ne 0 ]; then
    echo "--- certflowd log (last 60 lines) ---"
    tail -n 60 "$LOG"
    exit 1
fi
exit 0

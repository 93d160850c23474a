#!/usr/bin/env bash
# Integration test of the cmp connector through the whole process path: `certflow run` of
# processes/pkcs10-issue.bpmn with a template of connector "cmp" against OpenSSL's CMP mock server
# (`openssl cmp -port`), with a throwaway PKI made by openssl (the CSR and the mock's -rsp_cert share
# a key, as in shared/reference/pki-peers/cmp-mock-server.sh):
#   PBM p10cr                         -> the mock's certificate, stored with source cmp, chain with root
#   ir (raVerified) with signature    -> the same
#   the mock rejects (badRequest)     -> CaRequestFailed with the CA's text
#   a crash after the certificate was stored, then `certflow resume` with the mock gone
#                                     -> the stored certificate, without asking the CA again
# and the template's secret appears in no output.
# The mock binds every interface, so the script re-executes itself in a private network namespace
# (`unshare -n`, only lo) when it can.
#
# Usage: cmp.sh CERTFLOW
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed, 77
# when a tool is missing.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 CERTFLOW" >&2
    exit 2
fi
if [ -z "${IN_NETNS:-}" ] && unshare -n true 2>/dev/null; then
    exec env IN_NETNS=1 unshare -n bash -c 'ip link set lo up; exec bash "$0" "$@"' "$0" "$@"
fi
CERTFLOW=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
PROCESS=$HERE/../../processes/pkcs10-issue.bpmn
for tool in openssl sqlite3 xxd grep sed; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done
if ! openssl cmp -help 2>&1 | grep -q -- -accept_raverified; then
    echo "SKIP: openssl has no cmp mock server" >&2
    exit 77
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/certflow-cmp.XXXXXX")
SP=""
cleanup() {
    if [ -n "$SP" ]; then kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null; fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$W"; else echo "kept $W"; fi
}
trap cleanup EXIT

PASSED=0
FAILED=0
ok() {
    PASSED=$((PASSED + 1))
    echo "ok   $*"
}
bad() {
    FAILED=$((FAILED + 1))
    echo "FAIL $*"
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
trace_has() { grep -qF -- "$2" "$1"; }
SECRET=s3cr3t-for-cmp-test

# ---- the PKI ----
cd "$W" || exit 1
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null; }
sign() {
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >ext.cnf
    openssl x509 -req -in "$1.csr" -CA root.crt -CAkey root.key -CAcreateserial -days 30 -out "$1.crt" -extfile ext.cnf 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key -out root.crt -days 30 \
    -subj "/CN=Test Root CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
ec srv "/CN=Mock CMP Server" && sign srv
ec cli "/CN=ra-client" && sign cli
ec new "/CN=device-001" && sign new
openssl x509 -in new.crt -outform DER -out new.der

# The port: any inside our own namespace; a random high one otherwise.
if [ -n "${IN_NETNS:-}" ]; then PORT=18080; else PORT=$((20000 + RANDOM % 20000)); fi
start_mock() { # start_mock OPTIONS...: waits for its ACCEPT line (a probe connection costs it 1 s)
    if [ -n "$SP" ]; then kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null; fi
    rm -f mock.log
    openssl cmp -port "$PORT" -rsp_cert new.crt "$@" >mock.log 2>&1 &
    SP=$!
    for _ in $(seq 100); do
        grep -q ACCEPT mock.log 2>/dev/null && return 0
        sleep 0.05
    done
    echo "the mock did not start:" >&2
    cat mock.log >&2
    return 1
}
stop_mock() {
    if [ -n "$SP" ]; then kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null; fi
    SP=""
}

DB=$W/certflow.db
# The process with its certTemplate input naming template $1 (no deployment is needed first).
with_template() { sed "s#<camunda:inputParameter name=\"certTemplate\">default<#<camunda:inputParameter name=\"certTemplate\">$1<#" "$PROCESS" >"$W/$1.bpmn"; }
with_template viacmp
with_template viacmpir
sql() { sqlite3 "$DB" "$1"; }
var_bytes() { sqlite3 "${3:-$DB}" "SELECT hex(value) FROM variable WHERE instance_id = $1 AND name = '$2'" | xxd -r -p >"$4"; }

# ---- PBM p10cr ----
start_mock -srv_ref order-1234 -srv_secret "pass:$SECRET" -rsp_extracerts root.crt
"$CERTFLOW" templates add viacmp --connector cmp \
    --settings "{\"server\": \"127.0.0.1:$PORT/pkix/\", \"reference\": \"order-1234\", \"secret\": \"$SECRET\"}" \
    --db "$DB" >t.out 2>&1
check "templates add takes a PBM cmp template" grep -q viacmp <("$CERTFLOW" templates list --db "$DB")
"$CERTFLOW" templates show viacmp --db "$DB" >show.out 2>&1
check "templates show hides the shared secret" sh -c "grep -q '\"secret\":\"\\*\\*\\*\"' show.out && ! grep -q '$SECRET' show.out"
check "the shared secret is stored sealed" sh -c "sqlite3 '$DB' \"SELECT json_extract(settings, '\\\$.secret') FROM certificate_template WHERE name = 'viacmp'\" | grep -q '^cfsealed:1:' && ! grep -qaF '$SECRET' '$DB' '$DB-wal'"
"$CERTFLOW" run viacmp.bpmn --db "$DB" --var "csr=$(cat new.csr)" >ok.trace 2>ok.err
rc=$?
check "PBM p10cr: certflow run exits 0" test "$rc" = 0
check "PBM p10cr: the instance ends at End_issued" trace_has ok.trace "End_issued                   noneEndEvent           completed"
check "PBM p10cr: one certificate is stored, from the cmp connector" \
    test "$(sql "SELECT count(*), status, source FROM certificate")" = "1|active|cmp"
var_bytes 1 certificate "" var.der
check "PBM p10cr: the variable certificate is the mock's certificate" cmp -s var.der new.der
var_bytes 1 certificateChain "" chain.p7
openssl pkcs7 -inform DER -in chain.p7 -print_certs -out chain.pem 2>/dev/null
check "PBM p10cr: certificateChain holds the certificate and the root the mock sent" \
    test "$(grep -c 'BEGIN CERTIFICATE' chain.pem)" = 2
check "PBM p10cr: the mock saw p10cr and certConf (two requests)" test "$(grep -c 'Received request' mock.log)" = 2

# ---- ir (raVerified), signature protection ----
# A database of its own: the mock hands out the same certificate every time, and the store keeps a
# certificate once per tenant.
start_mock -srv_cert srv.crt -srv_key srv.key -srv_trusted root.crt -rsp_capubs root.crt -accept_raverified
DB2=$W/ir.db
"$CERTFLOW" templates add viacmpir --connector cmp \
    --settings "{\"server\": \"http://127.0.0.1:$PORT\", \"path\": \"/pkix/\", \"command\": \"ir\", \"cert\": \"$W/cli.crt\", \"key\": \"$W/cli.key\", \"trusted\": \"$W/root.crt\"}" \
    --db "$DB2" >/dev/null 2>&1
"$CERTFLOW" run viacmpir.bpmn --db "$DB2" --var "csr=$(cat new.csr)" >ir.trace 2>&1
check "signed ir: the instance ends at End_issued" trace_has ir.trace "End_issued                   noneEndEvent           completed"
var_bytes 1 certificate "$DB2" ir.der
check "signed ir: the variable certificate is the mock's certificate" cmp -s ir.der new.der

# ---- the CA says no ----
start_mock -srv_ref order-1234 -srv_secret "pass:$SECRET" -pkistatus 2 -failure 2 -statusstring "order not found"
"$CERTFLOW" run viacmp.bpmn --db "$DB" --var "csr=$(cat new.csr)" >rej.trace 2>rej.err
check "rejection: CaRequestFailed at its boundary event" trace_has rej.trace "End_request_failed           noneEndEvent           completed"
check "rejection: the message has the template, the failInfo and the CA's text" \
    trace_has rej.trace "certificate template 'viacmp' refuses the request: the CA rejected the request: badRequest: \\\"order not found\\\""

# ---- crash after the certificate was stored; resume with the CA gone ----
start_mock -srv_ref order-1234 -srv_secret "pass:$SECRET"
found=
for n in 1 2 3 4 5 6; do
    D=$W/crash$n
    mkdir -p "$D"
    "$CERTFLOW" templates add viacmp --connector cmp \
        --settings "{\"server\": \"127.0.0.1:$PORT/pkix/\", \"reference\": \"order-1234\", \"secret\": \"$SECRET\"}" \
        --db "$D/t.db" >/dev/null 2>&1
    before=$(grep -c 'Received request' mock.log)
    CERTFLOW_CRASH_AT=after-commit:$n "$CERTFLOW" run viacmp.bpmn --db "$D/t.db" --var "csr=$(cat new.csr)" >/dev/null 2>&1
    rc=$?
    inst=1
    if [ "$rc" = 137 ] && [ "$(sqlite3 "$D/t.db" "SELECT count(*) FROM certificate")" = 1 ] &&
        [ "$(sqlite3 "$D/t.db" "SELECT state FROM process_instance WHERE id = $inst")" = ACTIVE ]; then
        found=$D
        break
    fi
done
if [ -z "$found" ]; then
    bad "crash after the certificate was stored: no crash point stopped the engine there"
else
    ok "crash after the certificate was stored: the engine died with the certificate stored and the step open"
    msgs=$(($(grep -c 'Received request' mock.log) - before))
    stop_mock
    "$CERTFLOW" --log-level info resume --wait --timeout 60 --db "$found/t.db" >"$found/resume.out" 2>&1
    check "  resume completes the instance with the CA gone" \
        test "$(sqlite3 "$found/t.db" "SELECT state FROM process_instance WHERE id = $inst")" = COMPLETED
    check "  the step still has exactly one certificate" test "$(sqlite3 "$found/t.db" "SELECT count(*) FROM certificate")" = 1
    check "  the service says it returned the stored certificate" grep -q "ca: returned the stored certificate" "$found/resume.out"
    check "  the CA was asked once (p10cr and certConf)" test "$msgs" = 2
fi

check "the shared secret appears in no trace or log" sh -c "! grep -rqF '$SECRET' --include='*.trace' --include='*.err' --include='*.out' ."

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

#!/usr/bin/env bash
# Integration test of the PKCS#10 tasks on the embedded CA, through the bundled process
# processes/pkcs10-issue.bpmn and `certflow run` on a database file. Every outcome comes from a
# real cause, made with the openssl command:
#   a P-256 CSR                      -> a certificate, stored, that `openssl verify` accepts
#   an RSA-1024 CSR (2048 required)  -> CaRequestFailed, at its boundary event
#   garbage in the CSR variable      -> CommonError
#   a cmp CA at 127.0.0.1:1          -> connection refused: retried, then CaConnectionFailed
#   a crash after the certificate was stored, before the step completed, and a crash while the
#   CA worked -> after `certflow resume`, one certificate for the step, the same the process got
# plus executeModifiedPKCS10RequestTask (under its deprecated alias), `certflow ca init` and the
# checks of `certflow templates`.
#
# Usage: pkcs10-issue.sh CERTFLOW
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 CERTFLOW" >&2
    exit 2
fi
CERTFLOW=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
PROCESS=$HERE/../../processes/pkcs10-issue.bpmn
MODIFIED=$HERE/pkcs10-modified.bpmn
for tool in openssl sqlite3 xxd grep sed; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done

W=$(mktemp -d "${TMPDIR:-/tmp}/certflow-pkcs10.XXXXXX")
cleanup() {
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

DB=$W/certflow.db
CA=$W/ca
# certflow run prints the trace; these read it and the database.
trace_has() { grep -qF -- "$2" "$1"; }
# The value of variable $2 of instance $1 in database $3 (default $DB), as raw bytes into file $4.
var_bytes() { sqlite3 "${3:-$DB}" "SELECT hex(value) FROM variable WHERE instance_id = $1 AND name = '$2'" | xxd -r -p >"$4"; }
sql() { sqlite3 "$DB" "$1"; }

csr_ec() { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/$1.key" \
    -subj "/CN=$2/O=Example" -addext "subjectAltName=DNS:$2" -out "$W/$1.csr" 2>/dev/null; }

# ---- certflow ca init ----
"$CERTFLOW" ca init --db "$DB" >"$W/init.out" 2>&1
check "ca init creates the CA next to the database" test -f "$CA/root.pem" -a -f "$CA/issuing.pem" -a -f "$CA/root.key"
want=$(openssl x509 -in "$CA/root.pem" -noout -fingerprint -sha256 | sed 's/^.*=//')
check "ca init prints the root's SHA-256 fingerprint" grep -qF "root SHA-256 fingerprint:    $want" "$W/init.out"
check "the CA keys are not readable by others" test "$(stat -c %a "$CA/issuing.key")" = 600
"$CERTFLOW" ca init --db "$DB" >"$W/init2.out" 2>&1
rc=$?
check "ca init refuses to replace a CA without --force" test "$rc" = 1
check "  ... and names its fingerprint" grep -qF "$want" "$W/init2.out"

# ---- a P-256 CSR: issued, stored, verifiable ----
csr_ec p256 device-001.example.test
"$CERTFLOW" run "$PROCESS" --db "$DB" --var "csr=$(cat "$W/p256.csr")" >"$W/ok.trace" 2>"$W/ok.err"
rc=$?
check "P-256 CSR: certflow run exits 0" test "$rc" = 0
check "P-256 CSR: the instance ends at End_issued" trace_has "$W/ok.trace" "End_issued                   noneEndEvent           completed"
check "P-256 CSR: one certificate is stored, active, from the embedded CA, for instance 1" \
    test "$(sql "SELECT count(*), status, source, instance_id, tenant_id FROM certificate")" = "1|active|embedded|1|default"
check "P-256 CSR: the certificate row carries the step's idempotency key" \
    test -n "$(sql "SELECT idempotency_key FROM certificate WHERE idempotency_key LIKE 'certflow-1-%'")"
sql "SELECT hex(der) FROM certificate WHERE id = 1" | xxd -r -p >"$W/stored.der"
var_bytes 1 certificate "" "$W/var.der"
check "P-256 CSR: the variable certificate holds the stored DER" cmp -s "$W/stored.der" "$W/var.der"
check "P-256 CSR: certificateId is the stored row's id" test "$(sqlite3 "$DB" "SELECT value FROM variable WHERE instance_id = 1 AND name = 'certificateId'")" = 1
openssl x509 -inform DER -in "$W/var.der" -out "$W/cert.pem" 2>/dev/null
check "P-256 CSR: openssl verify accepts the certificate with the CA chain (sslserver)" \
    openssl verify -CAfile "$CA/root.pem" -untrusted "$CA/issuing.pem" -purpose sslserver "$W/cert.pem"
check "P-256 CSR: subject and SAN are the CSR's" \
    sh -c "openssl x509 -in '$W/cert.pem' -noout -subject -ext subjectAltName | grep -q 'DNS:device-001.example.test'"
var_bytes 1 certificateChain "" "$W/chain.p7"
openssl pkcs7 -inform DER -in "$W/chain.p7" -print_certs -out "$W/chain.pem" 2>/dev/null
check "P-256 CSR: certificateChain is a PKCS#7 of certificate, issuing CA and root" \
    test "$(grep -c 'BEGIN CERTIFICATE' "$W/chain.pem")" = 3
first=$(openssl x509 -in "$W/chain.pem" -noout -fingerprint -sha256)
leaf=$(openssl x509 -in "$W/cert.pem" -noout -fingerprint -sha256)
check "P-256 CSR: the PKCS#7 chain starts with the certificate" test "$first" = "$leaf"

# ---- RSA-1024 against a template that requires 2048 ----
"$CERTFLOW" templates add rsa2048 --procedure '{"keyTypes": {"RSA": 2048}}' --db "$DB" >/dev/null
"$CERTFLOW" params set pkcs10-issue Task_issue certTemplate rsa2048 --db "$DB" >/dev/null
openssl req -new -newkey rsa:1024 -nodes -keyout "$W/r1024.key" -subj "/CN=weak.example.test" -out "$W/r1024.csr" 2>/dev/null
"$CERTFLOW" run "$PROCESS" --db "$DB" --var "csr=$(cat "$W/r1024.csr")" >"$W/rsa.trace" 2>&1
check "RSA-1024 CSR: CaRequestFailed at its boundary event" trace_has "$W/rsa.trace" "End_request_failed           noneEndEvent           completed"
check "RSA-1024 CSR: caErrorCode is CaRequestFailed" trace_has "$W/rsa.trace" 'caErrorCode = "CaRequestFailed"'
check "RSA-1024 CSR: the message names the template and the key size" \
    trace_has "$W/rsa.trace" "certificate template 'rsa2048' refuses the request: RSA key of 1024 bits is below the template's minimum of 2048"
check "RSA-1024 CSR: nothing was stored" test "$(sql "SELECT count(*) FROM certificate")" = 1

# ---- garbage in the CSR variable ----
"$CERTFLOW" run "$PROCESS" --db "$DB" --var "csr=this is not a CSR" >"$W/garbage.trace" 2>&1
check "garbage CSR: CommonError at its boundary event" trace_has "$W/garbage.trace" "End_common_error             noneEndEvent           completed"
check "garbage CSR: caErrorCode is CommonError" trace_has "$W/garbage.trace" 'caErrorCode = "CommonError"'
"$CERTFLOW" run "$PROCESS" --db "$DB" --var "csr:Long=42" >"$W/long.trace" 2>&1
check "a Long in the CSR variable: CommonError naming the type" trace_has "$W/long.trace" "holds a Long"
"$CERTFLOW" params set pkcs10-issue Task_issue certTemplate nosuch --db "$DB" >/dev/null
"$CERTFLOW" run "$PROCESS" --db "$DB" --var "csr=$(cat "$W/p256.csr")" >"$W/nosuch.trace" 2>&1
check "unknown template: CommonError naming template and tenant" \
    trace_has "$W/nosuch.trace" "certificate template 'nosuch' does not exist in tenant 'default'"

# ---- the CA cannot be reached: cmp at 127.0.0.1:1 ----
"$CERTFLOW" templates add unreachable --connector cmp --settings '{"server": "127.0.0.1:1", "path": "/pkix/", "reference": "order-1", "secret": "s3cr3t-unused"}' --db "$DB" >/dev/null 2>&1
"$CERTFLOW" params set pkcs10-issue Task_issue certTemplate unreachable --db "$DB" >/dev/null
# Three attempts one second apart instead of five minutes.
sed 's#R3/PT5M#R3/PT1S#' "$PROCESS" >"$W/fast.bpmn"
started=$(date +%s)
"$CERTFLOW" run "$W/fast.bpmn" --db "$DB" --var "csr=$(cat "$W/p256.csr")" --wait --timeout 60 >"$W/conn.trace" 2>"$W/conn.err"
took=$(($(date +%s) - started))
check "CA unreachable: CaConnectionFailed at its boundary event" trace_has "$W/conn.trace" "End_connection_failed        noneEndEvent           completed"
check "CA unreachable: the message says the connection was refused" \
    trace_has "$W/conn.trace" "cannot connect to the CA at 127.0.0.1:1 (cmp connector of template 'unreachable'): connection refused"
check "CA unreachable: three attempts were made before the error (retry, retry, throw)" \
    test "$(grep -c 'connection refused' "$W/conn.err")" = 3
check "CA unreachable: the retries waited for the retry cycle (>= 2 s)" test "$took" -ge 2
"$CERTFLOW" params unset pkcs10-issue Task_issue certTemplate --db "$DB" >/dev/null

# ---- no double issuance: crash after the certificate was stored ----
# The engine dies (exit 137) after its n-th committed batch. Some n stops it after the batch that
# stored the certificate and before the one that completes the step; find it rather than depend
# on how many batches the engine makes before.
found=
for n in 1 2 3 4 5 6; do
    D=$W/crash$n
    mkdir -p "$D"
    CERTFLOW_CRASH_AT=after-commit:$n "$CERTFLOW" run "$PROCESS" --db "$D/t.db" --var "csr=$(cat "$W/p256.csr")" >/dev/null 2>&1
    rc=$?
    if [ "$rc" = 137 ] && [ "$(sqlite3 "$D/t.db" "SELECT count(*) FROM certificate")" = 1 ] &&
        [ "$(sqlite3 "$D/t.db" "SELECT state FROM process_instance WHERE id = 1")" = ACTIVE ]; then
        found=$D
        break
    fi
done
if [ -z "$found" ]; then
    bad "crash after the certificate was stored: no crash point stopped the engine there"
else
    ok "crash after the certificate was stored: the engine died with the certificate stored and the step open"
    serial=$(sqlite3 "$found/t.db" "SELECT serial FROM certificate")
    "$CERTFLOW" --log-level info resume --wait --timeout 60 --db "$found/t.db" >"$found/resume.out" 2>&1
    check "  resume completes the instance" test "$(sqlite3 "$found/t.db" "SELECT state FROM process_instance WHERE id = 1")" = COMPLETED
    check "  the step still has exactly one certificate" test "$(sqlite3 "$found/t.db" "SELECT count(*) FROM certificate")" = 1
    check "  it is the certificate stored before the crash" test "$(sqlite3 "$found/t.db" "SELECT serial FROM certificate")" = "$serial"
    check "  the service says it returned the stored certificate" grep -q "ca: returned the stored certificate id=1" "$found/resume.out"
    sqlite3 "$found/t.db" "SELECT hex(der) FROM certificate" | xxd -r -p >"$found/stored.der"
    var_bytes 1 certificate "$found/t.db" "$found/var.der"
    check "  the process got that same certificate" cmp -s "$found/stored.der" "$found/var.der"
fi

# ---- crash while the CA call runs: nothing stored, resume issues once ----
D=$W/crashrun
mkdir -p "$D"
CERTFLOW_CRASH_AT=plugin-running "$CERTFLOW" run "$PROCESS" --db "$D/t.db" --var "csr=$(cat "$W/p256.csr")" >/dev/null 2>&1
rc=$?
check "crash while the CA works: the engine died" test "$rc" = 137
check "  nothing was stored" test "$(sqlite3 "$D/t.db" "SELECT count(*) FROM certificate")" = 0
"$CERTFLOW" resume --wait --timeout 60 --db "$D/t.db" >/dev/null 2>&1
check "  resume completes the instance with one certificate" \
    test "$(sqlite3 "$D/t.db" "SELECT count(*) FROM certificate")|$(sqlite3 "$D/t.db" "SELECT state FROM process_instance WHERE id = 1")" = "1|COMPLETED"

# ---- executeModifiedPKCS10RequestTask, under its old name executePlainRequestTask ----
"$CERTFLOW" run "$MODIFIED" --db "$DB" --var "csr=$(cat "$W/p256.csr")" --var template=default \
    --var 'subjectDN=CN=override.example.test,O=Example\, Inc.,C=SE' \
    --var 'dnsNames:Json=["a.example.test","b.example.test"]' --var 'ipAddresses=192.0.2.7, 2001:db8::1' \
    >"$W/mod.trace" 2>"$W/mod.err"
check "modified: the deprecated alias is accepted with a warning" grep -q 'executePlainRequestTask} is a deprecated name' "$W/mod.err"
check "modified: the instance completes" trace_has "$W/mod.trace" "state: COMPLETED"
inst=$(sed -n 's/^instance \([0-9]*\) of pkcs10-modified.*/\1/p' "$W/mod.trace")
var_bytes "$inst" certificatePem "" "$W/mod.pem"
check "modified: booleanResultWithPEMHeaders gives PEM text with its header" grep -q -- '-----BEGIN CERTIFICATE-----' "$W/mod.pem"
check "modified: the subject comes from the variable, not the CSR" \
    test "$(openssl x509 -in "$W/mod.pem" -noout -subject -nameopt RFC2253)" = 'subject=CN=override.example.test,O=Example\, Inc.,C=SE'
check "modified: the SANs come from the variables" \
    sh -c "openssl x509 -in '$W/mod.pem' -noout -ext subjectAltName | grep -q 'DNS:a.example.test, DNS:b.example.test, IP Address:192.0.2.7, IP Address:2001:DB8:0:0:0:0:0:1'"
check "modified: certificateIdField names the id variable" \
    test -n "$(sqlite3 "$DB" "SELECT value FROM variable WHERE instance_id = $inst AND name = 'issuedId'")"
"$CERTFLOW" run "$MODIFIED" --db "$DB" --var "csr=$(cat "$W/p256.csr")" --var template=unreachable \
    --var 'subjectDN=CN=x.example.test' --var dnsNames= --var ipAddresses= >"$W/mod2.trace" 2>&1
check "modified on a cmp template: an incident that says the connector cannot carry it" \
    trace_has "$W/mod2.trace" "the cmp connector sends the PKCS#10 request as it was signed (p10cr), so the certificate's subject and SANs cannot differ from the CSR's"
"$CERTFLOW" run "$MODIFIED" --db "$DB" --var "csr=$(cat "$W/p256.csr")" --var template=default \
    --var 'subjectDN=CN=x.example.test+OU=y' --var dnsNames= --var ipAddresses= >"$W/mod3.trace" 2>&1
check "modified: a multi-valued RDN is CommonError" trace_has "$W/mod3.trace" "multi-valued RDNs ('+') are not supported"

# ---- certflow templates ----
"$CERTFLOW" templates add weak --procedure '{"keyTypes": {"RSA": 1024}}' --db "$DB" >/dev/null 2>"$W/t1.err"
rc=$?
check "templates add refuses a bad procedure, naming the field" \
    sh -c "test $rc = 1 && grep -q 'procedure.keyTypes.RSA' '$W/t1.err'"
"$CERTFLOW" templates add nocmp --connector cmp --settings '{}' --db "$DB" >/dev/null 2>"$W/t2.err"
rc=$?
check "templates add refuses cmp settings without the server, naming the field" \
    sh -c "test $rc = 1 && grep -q 'settings.server' '$W/t2.err'"
"$CERTFLOW" templates add x --connector acme --db "$DB" >/dev/null 2>"$W/t3.err"
check "templates add refuses an unknown connector" grep -q "connector: 'acme' is not one certflow has" "$W/t3.err"
"$CERTFLOW" templates add secretive --connector cm-rest --settings '{"url": "https://127.0.0.1:1/pgwy/api", "procedure": "p", "cert": "/nonexistent/officer.pem", "key": "/nonexistent/officer.key", "keyPassword": "hunter2hunter2"}' --db "$DB" >/dev/null 2>&1
"$CERTFLOW" templates show secretive --db "$DB" >"$W/show.out" 2>&1
check "templates show hides secrets in settings" sh -c "grep -q '\"keyPassword\":\"\\*\\*\\*\"' '$W/show.out' && ! grep -q hunter2 '$W/show.out'"
"$CERTFLOW" templates remove default --db "$DB" >/dev/null 2>"$W/t4.err"
check "templates remove keeps a template that certificates refer to" grep -q 'certificates issued through it refer to it' "$W/t4.err"
check "templates remove removes an unused one" "$CERTFLOW" templates remove secretive --db "$DB"
check "templates list shows the rest" sh -c "'$CERTFLOW' templates list --db '$DB' | grep -q '^default  *rsa2048  *embedded'"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

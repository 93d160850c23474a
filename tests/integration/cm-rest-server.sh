#!/usr/bin/env bash
# Integration test of certflowd's Certificate Manager REST subset (docs/cm-rest.md,
# engine/api/cmrest.c), driven the way a CM client does it: curl with an officer's client
# certificate, and `openssl cms -sign ... -nodetach -outform DER | base64 -w0` for the
# dataToSign handshake. A test PKI and the users are made on the fly, as in push.sh.
#
# Covers: issuing (round 1 gives -19 and dataToSign, round 2 issues; PKCS#7, DER and PEM chain
# by Accept, each accepted by `openssl verify`; multipart and urlencoded bodies), refused
# signatures (reused for another CSR, made by another certificate), refused callers (HTTP Basic,
# a non-admin officer, an unmapped certificate, a tenant the officer is not in), bad fields (-7,
# -8, -14), search by serial, subject key identifier and common name, details, download,
# revocation (status, reason, time, isNotRevoked, revoking twice), /procedures, tenant
# isolation, and what the certificates store holds (source cm-rest, ski on every insert path).
#
# Usage: cm-rest-server.sh CERTFLOWD CERTFLOW
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed,
# 77 (skipped) when a tool it needs is missing.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 CERTFLOWD CERTFLOW" >&2
    exit 2
fi
CERTFLOWD=$(realpath "$1")
CERTFLOW=$(realpath "$2")
for tool in curl jq openssl sqlite3 base64 timeout; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done

W=$(mktemp -d "${TMPDIR:-/tmp}/certflowd-cmrest.XXXXXX")
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
section() { echo "# $* (at ${SECONDS}s)"; }
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: expected '$2', got '$3'"; fi
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
    printf '%s\n' "$@" >"$P/$name.ext"
    ossl x509 -req -in "$P/$name.csr" -CA "$P/$ca.pem" -CAkey "$P/$ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -out "$P/$name.pem" -extfile "$P/$name.ext"
}
mkca ca "certflow test CA"
mkleaf server ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth"
mkleaf officer ca "officer" "extendedKeyUsage=clientAuth"
mkleaf clerk ca "clerk" "extendedKeyUsage=clientAuth"
mkleaf stranger ca "stranger" "extendedKeyUsage=clientAuth"
mkleaf other ca "other officer" "extendedKeyUsage=clientAuth"
cat "$P/server.pem" "$P/ca.pem" >"$P/server-chain.pem"
mkcsr() { # mkcsr NAME CN: NAME.key, NAME.csr (PEM) and NAME.b64 (Base64 of the DER, one line)
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$1.key" \
        -out "$P/$1.csr" -subj "/O=certflow test/CN=$2"
    openssl req -in "$P/$1.csr" -outform DER 2>/dev/null | base64 -w0 >"$P/$1.b64"
}
mkcsr dev1 dev1.example.test
mkcsr dev2 dev2.example.test
mkcsr dev3 dev3.example.test
mkcsr dev4 dev4.example.test
mkcsr dev5 dev5.example.test
mkcsr dev6 dev6.example.test
if [ ! -s "$P/officer.pem" ] || [ ! -s "$P/dev6.b64" ]; then
    echo "FAIL cannot make the test PKI:" >&2
    cat "$P/openssl.log" >&2
    exit 1
fi

# ---- configuration, start, users --------------------------------------------------------------
MTLS=$(free_port)
BASIC=$(free_port)
while [ "$BASIC" = "$MTLS" ]; do BASIC=$(free_port); done
DB=$W/var/certflow.db
mkdir -p "$W/processes"
cat >"$W/certflow.ini" <<EOF
; written by tests/integration/cm-rest-server.sh
[daemon]
data_dir = $W/var
plugin_dir = $(dirname "$CERTFLOWD")/../plugins
shutdown_timeout = 10
[processes]
dir = $W/processes
seed =
[tls]
cert = $P/server-chain.pem
key = $P/server.key
truststore = $P/ca.pem
[mtls]
port = $MTLS
[basic]
port = $BASIC
[http]
enabled = false
EOF
OUT=$W/certflowd.out
LOG=$W/certflowd.log
(cd "$W" && exec "$CERTFLOWD" --config "$W/certflow.ini" >>"$OUT" 2>>"$LOG") &
PID=$!
for _ in $(seq 1 300); do
    grep -q "listening on https://127.0.0.1:$BASIC" "$OUT" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "listening on https://127.0.0.1:$BASIC" "$OUT" 2>/dev/null; then
    echo "FAIL certflowd did not start; its output:" >&2
    cat "$OUT" "$LOG" >&2
    exit 1
fi
ADMIN_PW=$(cat "$W/var/admin-password")
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$@"; }

# The officer: an admin of tenants default and other, mapped to officer.pem. The clerk: mapped
# to clerk.pem, member of default, not an admin. "other officer" is mapped to nobody.
"$CERTFLOW" user add officer --admin --tenant default --tenant other --cert "$P/officer.pem" \
    --no-password --db "$DB" >/dev/null
check "certflow user add officer" "0" "$?"
"$CERTFLOW" user add clerk --tenant default --cert "$P/clerk.pem" --no-password --db "$DB" >/dev/null
check "certflow user add clerk" "0" "$?"
"$CERTFLOW" user add outsider --admin --tenant third --cert "$P/stranger.pem" --no-password \
    --db "$DB" >/dev/null
check "certflow user add outsider (admin of tenant third only)" "0" "$?"
"$CERTFLOW" templates add servers --tenant other --db "$DB" >/dev/null
check "certflow templates add servers --tenant other" "0" "$?"
"$CERTFLOW" templates add web --db "$DB" >/dev/null
check "certflow templates add web (tenant default, embedded)" "0" "$?"
# A template of another connector, written past the checks: /procedures must not list it and
# issuing through it must be refused.
sql "INSERT INTO certificate_template(tenant_id, name, connector, settings, procedure, created_at, updated_at) VALUES ('default', 'relay', 'cm-rest', '{}', '{}', 0, 0)"

BASE=https://127.0.0.1:$MTLS/pgwy/api
as() { # as NAME curl-args...: a request with NAME's client certificate
    local who=$1
    shift
    curl -sS --max-time 30 --cacert "$P/ca.pem" --cert "$P/$who.pem" --key "$P/$who.key" "$@"
}
# sign_with NAME JSON-FILE: the Base64 signature of the file's dataToSign by NAME's key.
sign_with() {
    jq -r .dataToSign "$2" | base64 -d |
        openssl cms -sign -signer "$P/$1.pem" -inkey "$P/$1.key" -binary -nodetach -outform DER 2>>"$P/openssl.log" |
        base64 -w0
}
jqr() { jq -r "$1" "$2" 2>/dev/null; }
hdr() { # hdr NAME FILE: a response header's value
    tr -d '\r' <"$2" | sed -n "s/^$1: *//Ip" | head -1
}

# ---- 1. issuing: the two rounds --------------------------------------------------------------
section "1. issuing: the two rounds"
code=$(as officer -o "$W/r1.json" -w '%{http_code}' -F "pkcs10=<$P/dev1.b64" -F procname=default "$BASE/certificates/pkcs10")
check "round 1 answers 200" "200" "$code"
check "round 1 asks for a signature (-19, CM's message)" "-19|Sign request and send again" "$(jqr '"\(.error)|\(.msg)"' "$W/r1.json")"
DTS=$(jqr .dataToSign "$W/r1.json")
if [ -n "$DTS" ] && [ "$DTS" != null ] && echo "$DTS" | base64 -d >/dev/null 2>&1; then ok "dataToSign is Base64"; else fail "dataToSign: $(cat "$W/r1.json")"; fi
SIG1=$(sign_with officer "$W/r1.json")
[ -n "$SIG1" ] && ok "openssl cms signed the dataToSign" || fail "openssl cms -sign failed: $(tail -3 "$P/openssl.log")"
n_before=$(sql "SELECT count(*) FROM certificate")
code=$(as officer -D "$W/h2" -o "$W/r2.p7" -w '%{http_code}' -F "pkcs10=<$P/dev1.b64" -F procname=default -F "signature=$SIG1" "$BASE/certificates/pkcs10")
check "round 2 with the signature answers 200" "200" "$code"
check "round 2 answers application/pkcs7-mime by default" "application/pkcs7-mime" "$(hdr content-type "$W/h2")"
CID1=$(hdr certId "$W/h2")
case "$CID1" in '' | *[!0-9]*) fail "certId header: '$CID1'" ;; *) ok "certId header: $CID1" ;; esac
openssl pkcs7 -inform DER -in "$W/r2.p7" -print_certs -out "$W/r2.pem" 2>>"$P/openssl.log"
check "the PKCS#7 holds the certificate and two CAs" "3" "$(grep -c 'BEGIN CERTIFICATE' "$W/r2.pem" 2>/dev/null)"
awk '/BEGIN CERT/{n++} n==1' "$W/r2.pem" >"$W/leaf1.pem"
awk '/BEGIN CERT/{n++} n>1' "$W/r2.pem" >"$W/cas1.pem"
check "the certificate is for the CSR's subject" "subject=O = certflow test, CN = dev1.example.test" "$(openssl x509 -in "$W/leaf1.pem" -noout -subject 2>/dev/null)"
check "the certificate certifies the CSR's key" "$(openssl req -in "$P/dev1.csr" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum)" \
    "$(openssl x509 -in "$W/leaf1.pem" -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum)"
check "openssl verify accepts the PKCS#7 chain up to the embedded root" "$W/leaf1.pem: OK" \
    "$(openssl verify -CAfile "$W/var/ca/root.pem" -untrusted "$W/cas1.pem" "$W/leaf1.pem" 2>&1)"
check "one certificate was stored before the answer" "$((n_before + 1))" "$(sql "SELECT count(*) FROM certificate")"
SERIAL1=$(openssl x509 -in "$W/leaf1.pem" -noout -serial | cut -d= -f2)
SKI1=$(openssl x509 -in "$W/leaf1.pem" -noout -ext subjectKeyIdentifier 2>/dev/null | tail -1 | tr -d ' :')
check "stored row: tenant, template, source, serial, ski, no idempotency key" \
    "default|default|cm-rest|$SERIAL1|$SKI1|1" \
    "$(sql "SELECT c.tenant_id, t.name, c.source, c.serial, c.ski, c.idempotency_key IS NULL FROM certificate c JOIN certificate_template t ON t.id = c.template_id WHERE c.id = $CID1")"

# Accept: application/pkix-cert and application/pem-certificate-chain, urlencoded this time.
round() { # round NAME CSR PROCNAME OUT [curl args]: round 1 into OUT.json, signed by NAME
    local who=$1 csr=$2 proc=$3 out=$4
    shift 4
    as officer -o "$out.json" "$@" --data-urlencode "pkcs10@$P/$csr.b64" --data-urlencode "procname=$proc" "$BASE/certificates/pkcs10"
    sign_with "$who" "$out.json"
}
SIG2=$(round officer dev2 default "$W/r3")
printf '%s' "$SIG2" >"$W/sig2.b64"
code=$(as officer -D "$W/h3" -o "$W/r3.der" -w '%{http_code}' -H 'Accept: application/pkix-cert' \
    --data-urlencode "pkcs10@$P/dev2.b64" --data-urlencode procname=default --data-urlencode "signature@$W/sig2.b64" "$BASE/certificates/pkcs10")
check "urlencoded round 2 answers 200" "200" "$code"
check "Accept: application/pkix-cert gives the DER" "application/pkix-cert|subject=O = certflow test, CN = dev2.example.test" \
    "$(hdr content-type "$W/h3")|$(openssl x509 -inform DER -in "$W/r3.der" -noout -subject 2>&1)"
CID2=$(hdr certId "$W/h3")
SIG3=$(round officer dev3 web "$W/r4")
code=$(as officer -D "$W/h4" -o "$W/r4.pem" -w '%{http_code}' -H 'Accept: application/pem-certificate-chain' \
    -F "pkcs10=@$P/dev3.csr" -F procname=web -F "signature=$SIG3" "$BASE/certificates/pkcs10")
check "multipart round 2 with a PEM CSR file answers 200" "200" "$code"
check "Accept: application/pem-certificate-chain gives three PEM certificates" "application/pem-certificate-chain|3" \
    "$(hdr content-type "$W/h4")|$(grep -c 'BEGIN CERTIFICATE' "$W/r4.pem")"
awk '/BEGIN CERT/{n++} n==1' "$W/r4.pem" >"$W/leaf3.pem"
awk '/BEGIN CERT/{n++} n>1' "$W/r4.pem" >"$W/cas3.pem"
check "openssl verify accepts the PEM chain" "$W/leaf3.pem: OK" \
    "$(openssl verify -CAfile "$W/var/ca/root.pem" -untrusted "$W/cas3.pem" "$W/leaf3.pem" 2>&1)"
check "the template named by procname issued it" "web" \
    "$(sql "SELECT t.name FROM certificate c JOIN certificate_template t ON t.id = c.template_id WHERE c.id = $(hdr certId "$W/h4")")"

# ---- 2. signatures that must not work ----------------------------------------------------------
section "2. signatures that must not work"
n_before=$(sql "SELECT count(*) FROM certificate")
code=$(as officer -o "$W/s1.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default -F "signature=$SIG1" "$BASE/certificates/pkcs10")
check "a signature reused for another CSR answers 403 -17" "403|-17" "$code|$(jqr .error "$W/s1.json")"
code=$(as officer -o "$W/s2.json" -w '%{http_code}' -F "pkcs10=<$P/dev1.b64" -F procname=web -F "signature=$SIG1" "$BASE/certificates/pkcs10")
check "a signature reused for another procedure answers 403 -17" "403|-17" "$code|$(jqr .error "$W/s2.json")"
SIGX=$(round other dev4 default "$W/s3")
code=$(as officer -o "$W/s3b.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default -F "signature=$SIGX" "$BASE/certificates/pkcs10")
check "a signature by another certificate than the TLS one answers 403 -17" "403|-17" "$code|$(jqr .error "$W/s3b.json")"
printf 'certflow-cm-rest-v1\nforged\n' | openssl cms -sign -signer "$P/officer.pem" -inkey "$P/officer.key" -binary -nodetach -outform DER 2>/dev/null | base64 -w0 >"$W/forged.b64"
code=$(as officer -o "$W/s4.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default -F "signature=<$W/forged.b64" "$BASE/certificates/pkcs10")
check "the officer's signature of other data answers 403 -17" "403|-17" "$code|$(jqr .error "$W/s4.json")"
code=$(as officer -o "$W/s5.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default -F "signature=bm90IGEgQ01T" "$BASE/certificates/pkcs10")
check "a signature that is not CMS answers 403 -17" "403|-17" "$code|$(jqr .error "$W/s5.json")"
check "none of them issued anything" "$n_before" "$(sql "SELECT count(*) FROM certificate")"

# ---- 3. callers that must not get in ----------------------------------------------------------
section "3. callers that must not get in"
code=$(curl -sS --max-time 30 --cacert "$P/ca.pem" -u "admin:$ADMIN_PW" -o "$W/c1.json" -w '%{http_code}' "https://127.0.0.1:$BASIC/pgwy/api/procedures")
check "HTTP Basic (even the admin's) answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c1.json")"
code=$(curl -sS --max-time 30 --cacert "$P/ca.pem" -o "$W/c1b.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default "https://127.0.0.1:$BASIC/pgwy/api/certificates/pkcs10")
check "no credentials on the Basic port answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c1b.json")"
code=$(as clerk -o "$W/c2.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=default "$BASE/certificates/pkcs10")
check "a non-admin officer answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c2.json")"
code=$(as other -o "$W/c3.json" -w '%{http_code}' "$BASE/procedures")
check "an unmapped client certificate answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c3.json")"
code=$(as stranger -o "$W/c4.json" -w '%{http_code}' "$BASE/procedures")
check "an admin of another tenant answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c4.json")"
code=$(as officer -o "$W/c5.json" -w '%{http_code}' "$BASE/third/procedures")
check "a tenant the officer is not in answers 403 -15" "403|-15" "$code|$(jqr .error "$W/c5.json")"

# ---- 4. bad fields ----------------------------------------------------------------------------
section "4. bad fields"
code=$(as officer -o "$W/b1.json" -w '%{http_code}' -F procname=default "$BASE/certificates/pkcs10")
check "missing pkcs10 answers 400 -7" "400|-7" "$code|$(jqr .error "$W/b1.json")"
code=$(as officer -o "$W/b2.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" "$BASE/certificates/pkcs10")
check "missing procname answers 400 -7" "400|-7" "$code|$(jqr .error "$W/b2.json")"
code=$(as officer -o "$W/b3.json" -w '%{http_code}' -F "pkcs10=this is not a CSR" -F procname=default "$BASE/certificates/pkcs10")
check "garbage pkcs10 answers 400 -8" "400|-8" "$code|$(jqr .error "$W/b3.json")"
openssl rand -base64 300 | tr -d '\n' >"$W/random.b64"
code=$(as officer -o "$W/b4.json" -w '%{http_code}' -F "pkcs10=<$W/random.b64" -F procname=default "$BASE/certificates/pkcs10")
check "Base64 of no CSR answers 400 -8" "400|-8" "$code|$(jqr .error "$W/b4.json")"
code=$(as officer -o "$W/b5.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=nosuch "$BASE/certificates/pkcs10")
check "unknown procname answers 400 -14" "400|-14" "$code|$(jqr .error "$W/b5.json")"
code=$(as officer -o "$W/b6.json" -w '%{http_code}' -F "pkcs10=<$P/dev4.b64" -F procname=relay "$BASE/certificates/pkcs10")
check "a procedure of another connector answers 400 -14 and says why" "400|-14|1" \
    "$code|$(jqr .error "$W/b6.json")|$(jqr .msg "$W/b6.json" | grep -c 'embedded CA')"
code=$(as officer -o "$W/b7.json" -w '%{http_code}' -H 'Content-Type: application/json' -d '{"pkcs10":"x"}' "$BASE/certificates/pkcs10")
check "a JSON body answers 415" "415" "$code"
code=$(as officer -o /dev/null -w '%{http_code}' "$BASE/certificates/pkcs10")
check "GET on the issuing path answers 405" "405" "$code"

# ---- 5. search, details, download --------------------------------------------------------------
section "5. search, details, download"
lower_colons=$(echo "$SERIAL1" | tr 'A-F' 'a-f' | sed 's/../&:/g; s/:$//')
code=$(as officer -o "$W/q1.json" -w '%{http_code}' "$BASE/certificates?certificateSerialNumber=$lower_colons")
check "search by serial (lower case, colons) finds the certificate" "200|0|1|$CID1" \
    "$code|$(jqr .error "$W/q1.json")|$(jqr .searchHits "$W/q1.json")|$(jqr '.certificates[0].certid' "$W/q1.json")"
SKI1_COLONS=$(openssl x509 -in "$W/leaf1.pem" -noout -ext subjectKeyIdentifier 2>/dev/null | tail -1 | tr -d ' ')
code=$(as officer -o "$W/q2.json" -w '%{http_code}' "$BASE/certificates?subjectKeyIdentifier=$SKI1_COLONS&isNotRevoked=true")
check "search by subjectKeyIdentifier finds it" "200|1|$CID1|$SKI1" \
    "$code|$(jqr .searchHits "$W/q2.json")|$(jqr '.certificates[0].certid' "$W/q2.json")|$(jqr '.certificates[0].subjectKeyIdentifier' "$W/q2.json")"
# The SKI a client computes from its CSR (RFC 5280 §4.2.1.2 method 1) is the one searched.
CSR_SKI=$(openssl req -in "$P/dev1.csr" -pubkey -noout | openssl pkey -pubin -outform DER | tail -c 65 | sha1sum | cut -c1-40)
code=$(as officer -o "$W/q3.json" -w '%{http_code}' "$BASE/certificates?subjectKeyIdentifier=$CSR_SKI")
check "search by the SHA-1 of the CSR's key finds it" "1|$CID1" "$(jqr .searchHits "$W/q3.json")|$(jqr '.certificates[0].certid' "$W/q3.json")"
code=$(as officer -o "$W/q4.json" -w '%{http_code}' "$BASE/certificates?subjectCommonName=dev2.example.test")
check "search by subjectCommonName finds exactly that certificate" "1|$CID2" "$(jqr .searchHits "$W/q4.json")|$(jqr '.certificates[0].certid' "$W/q4.json")"
code=$(as officer -o "$W/q5.json" -w '%{http_code}' "$BASE/certificates?subjectCommonName=dev2.example")
check "a common name matches whole, not as a prefix" "0" "$(jqr .searchHits "$W/q5.json")"
code=$(as officer -o "$W/q6.json" -w '%{http_code}' "$BASE/certificates?searchLimit=2")
check "searchLimit=2 gives two, newest first, searchHits counts all" "3|2|true" \
    "$(jqr .searchHits "$W/q6.json")|$(jqr '.certificates | length' "$W/q6.json")|$(jqr '(.certificates[0].certid | tonumber) > (.certificates[1].certid | tonumber)' "$W/q6.json")"
code=$(as officer -o "$W/q7.json" -w '%{http_code}' "$BASE/certificates?searchLimit=2&searchOffset=2")
check "searchOffset=2 gives the oldest" "1|$CID1" "$(jqr '.certificates | length' "$W/q7.json")|$(jqr '.certificates[0].certid' "$W/q7.json")"
code=$(as officer -o "$W/q8.json" -w '%{http_code}' "$BASE/certificates?certificateSerialNumber=xyz")
check "a serial that is not hex answers 400 -14" "400|-14" "$code|$(jqr .error "$W/q8.json")"

code=$(as officer -o "$W/d1.json" -w '%{http_code}' "$BASE/certificates/$CID1/details")
NB=$(( $(date -d "$(openssl x509 -in "$W/leaf1.pem" -noout -startdate | cut -d= -f2)" +%s) * 1000 ))
AKI1=$(openssl x509 -in "$W/leaf1.pem" -noout -ext authorityKeyIdentifier 2>/dev/null | tail -1 | sed 's/^ *//; s/^keyid://' | tr -d ' :')
ISSUER1=$(openssl x509 -in "$W/leaf1.pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
check "details: the certificate object" "200|0|$CID1|active|$SERIAL1|CN=dev1.example.test,O=certflow test|$ISSUER1|EE|$SKI1|$AKI1|valid|$NB" \
    "$code|$(jqr '[.error, .certificate.certid, .certificate.status, .certificate.certificateserialnumber, .certificate.subject, .certificate.issuer, .certificate.subjectType, .certificate.subjectKeyIdentifier, .certificate.authorityKeyIdentifier, .certificate.validity, .certificate.validfrom] | map(tostring) | join("|")' "$W/d1.json")"
check "details of an active certificate has no reason or revocationtime" "false|false" "$(jqr '.certificate | [has("reason"), has("revocationtime")] | map(tostring) | join("|")' "$W/d1.json")"
code=$(as officer -o "$W/d2.json" -w '%{http_code}' "$BASE/certificates/999999/details")
check "an unknown certid answers 404 -14" "404|-14" "$code|$(jqr .error "$W/d2.json")"

code=$(as officer -D "$W/dh1" -o "$W/dl1.p7" -w '%{http_code}' "$BASE/certificates/$CID1/download")
check "download answers a PKCS#7 by default, same bytes as at issuance" "200|application/pkcs7-mime|$(sha256sum <"$W/r2.p7")" \
    "$code|$(hdr content-type "$W/dh1")|$(sha256sum <"$W/dl1.p7")"
code=$(as officer -o "$W/dl2.der" -w '%{http_code}' -H 'Accept: application/pkix-cert' "$BASE/certificates/$CID1/download")
check "download as application/pkix-cert is the stored DER" "200|$(sql "SELECT hex(der) FROM certificate WHERE id = $CID1")" \
    "$code|$(od -An -v -tx1 "$W/dl2.der" | tr -d ' \n' | tr 'a-f' 'A-F')"
code=$(as officer -o "$W/dl3.pem" -w '%{http_code}' -H 'Accept: application/pem-certificate-chain' "$BASE/certificates/$CID1/download")
awk '/BEGIN CERT/{n++} n>1' "$W/dl3.pem" >"$W/dl3-cas.pem"
awk '/BEGIN CERT/{n++} n==1' "$W/dl3.pem" >"$W/dl3-leaf.pem"
check "download as PEM chain verifies" "200|$W/dl3-leaf.pem: OK" \
    "$code|$(openssl verify -CAfile "$W/var/ca/root.pem" -untrusted "$W/dl3-cas.pem" "$W/dl3-leaf.pem" 2>&1)"

# ---- 6. revocation -----------------------------------------------------------------------------
section "6. revocation"
code=$(as officer -o "$W/v1.json" -w '%{http_code}' --data-urlencode "certid=$CID1" --data-urlencode reason=1 "$BASE/certificates/revoke")
check "revoke round 1 asks for a signature" "200|-19" "$code|$(jqr .error "$W/v1.json")"
SIGR=$(sign_with officer "$W/v1.json")
printf '%s' "$SIGR" >"$W/sigr.b64"
code=$(as officer -o "$W/v1x.json" -w '%{http_code}' --data-urlencode "certid=$CID1" --data-urlencode reason=4 --data-urlencode "signature@$W/sigr.b64" "$BASE/certificates/revoke")
check "the signature does not cover another reason (403 -17)" "403|-17" "$code|$(jqr .error "$W/v1x.json")"
code=$(as officer -o "$W/v2.json" -w '%{http_code}' --data-urlencode "certid=$CID1" --data-urlencode reason=1 --data-urlencode "signature@$W/sigr.b64" "$BASE/certificates/revoke")
check "revoke round 2 answers 200 with error 0" "200|0|OK" "$code|$(jqr .error "$W/v2.json")|$(jqr .msg "$W/v2.json")"
as officer -o "$W/v3.json" "$BASE/certificates/$CID1/details"
check "details: revoked, key compromise, with a revocation time" "revoked|key compromise|true" \
    "$(jqr '[.certificate.status, .certificate.reason, (.certificate.revocationtime | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))] | map(tostring) | join("|")' "$W/v3.json")"
check "the store holds status, reason and time" "revoked|1|1" "$(sql "SELECT status, revocation_reason, revoked_at > 0 FROM certificate WHERE id = $CID1")"
as officer -o "$W/v4.json" "$BASE/certificates?certificateSerialNumber=$SERIAL1&isNotRevoked=true"
check "isNotRevoked=true no longer finds it" "0" "$(jqr .searchHits "$W/v4.json")"
as officer -o "$W/v5.json" "$BASE/certificates?certificateSerialNumber=$SERIAL1&isNotRevoked=false"
check "isNotRevoked=false finds it" "1|revoked" "$(jqr .searchHits "$W/v5.json")|$(jqr '.certificates[0].status' "$W/v5.json")"
code=$(as officer -o "$W/v6.json" -w '%{http_code}' --data-urlencode "certid=$CID1" --data-urlencode reason=1 --data-urlencode "signature@$W/sigr.b64" "$BASE/certificates/revoke")
check "revoking it again answers 400 -14 already revoked" "400|-14|1" "$code|$(jqr .error "$W/v6.json")|$(jqr .msg "$W/v6.json" | grep -c 'already revoked')"
code=$(as officer -o "$W/v7.json" -w '%{http_code}' --data-urlencode "certid=$CID2" --data-urlencode reason=2 "$BASE/certificates/revoke")
check "reason 2 answers 400 -14" "400|-14" "$code|$(jqr .error "$W/v7.json")"
code=$(as officer -o "$W/v8.json" -w '%{http_code}' --data-urlencode "certid=999999" --data-urlencode reason=0 "$BASE/certificates/revoke")
check "revoking an unknown certid answers 404 -14" "404|-14" "$code|$(jqr .error "$W/v8.json")"
code=$(as officer -o "$W/v9.json" -w '%{http_code}' --data-urlencode reason=0 "$BASE/certificates/revoke")
check "revoke without certid answers 400 -7" "400|-7" "$code|$(jqr .error "$W/v9.json")"

# ---- 7. procedures and tenants ----------------------------------------------------------------
section "7. procedures and tenants"
code=$(as officer -o "$W/p1.json" -w '%{http_code}' "$BASE/procedures?mediaType=pkcs10")
check "/procedures lists the embedded templates of the tenant" "200|0|default,web" \
    "$code|$(jqr .error "$W/p1.json")|$(jqr '[.procedures[].name] | sort | join(",")' "$W/p1.json")"
as officer -o "$W/p2.json" "$BASE/other/procedures"
check "/<tenant>/procedures lists that tenant's" "servers" "$(jqr '[.procedures[].name] | join(",")' "$W/p2.json")"
SIG5=$(as officer -o "$W/t1.json" -F "pkcs10=<$P/dev5.b64" -F procname=servers "$BASE/other/certificates/pkcs10"; sign_with officer "$W/t1.json")
code=$(as officer -D "$W/th1" -o /dev/null -w '%{http_code}' -F "pkcs10=<$P/dev5.b64" -F procname=servers -F "signature=$SIG5" "$BASE/other/certificates/pkcs10")
CID5=$(hdr certId "$W/th1")
check "issuing in tenant other through /pgwy/api/other" "200|other" "$code|$(sql "SELECT tenant_id FROM certificate WHERE id = '$CID5'")"
code=$(as officer -F "pkcs10=<$P/dev5.b64" -F procname=servers -F "signature=$SIG5" -o "$W/t2.json" -w '%{http_code}' "$BASE/certificates/pkcs10")
check "that signature does not work in tenant default (the procedure is unknown there)" "400|-14" "$code|$(jqr .error "$W/t2.json")"
code=$(as officer -o "$W/t3.json" -w '%{http_code}' "$BASE/certificates/$CID5/details")
check "another tenant's certid answers 404 -14" "404|-14" "$code|$(jqr .error "$W/t3.json")"
code=$(as officer -o /dev/null -w '%{http_code}' "$BASE/certificates/$CID5/download")
check "another tenant's certid cannot be downloaded (404)" "404" "$code"
code=$(as officer -o "$W/t4.json" -w '%{http_code}' "$BASE/other/certificates/$CID5/details")
check "the certid is found in its own tenant" "200|$CID5" "$code|$(jqr .certificate.certid "$W/t4.json")"
as officer -o "$W/t5.json" "$BASE/other/certificates?subjectCommonName=dev1.example.test"
check "a search in tenant other does not see tenant default's" "0" "$(jqr .searchHits "$W/t5.json")"

# ---- 8. the store: ski on every insert path -----------------------------------------------------
section "8. the store: ski on every insert path"
ossl x509 -req -in "$P/dev6.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -set_serial 0x0badc0de -days 30 \
    -outform DER -out "$W/push.der" -extfile <(printf 'subjectKeyIdentifier=hash\n')
base64 -w 64 "$W/push.der" >"$W/push.b64"
code=$(as officer -o "$W/push.json" -w '%{http_code}' -H 'Content-Type: application/pkix-cert' --data-binary @"$W/push.b64" \
    "https://127.0.0.1:$MTLS/ws/certificate/register/default?tenantId=default")
PUSH_SKI=$(openssl x509 -inform DER -in "$W/push.der" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :')
check "a pushed certificate is stored with its ski" "201|$PUSH_SKI" "$code|$(sql "SELECT ski FROM certificate WHERE serial = '0BADC0DE'")"
as officer -o "$W/push-q.json" "$BASE/certificates?certificateSerialNumber=0badc0de"
check "the CM search finds pushed certificates too" "1|push" "$(jqr .searchHits "$W/push-q.json")|$(sql "SELECT source FROM certificate WHERE serial = '0BADC0DE'")"
check "every certificate has its ski" "0" "$(sql "SELECT count(*) FROM certificate WHERE ski IS NULL")"

# ---- 9. secrets, shutdown ----------------------------------------------------------------------
section "9. shutdown"
if grep -qF -- "$ADMIN_PW" "$LOG"; then fail "the admin password appears in the log"; else ok "no password in the log"; fi
if grep -qF -- "$SIG1" "$LOG"; then fail "a signature appears in the log"; else ok "no signature in the log"; fi
kill -TERM "$PID"
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"
rc=$?
PID=
check "SIGTERM stops certflowd with exit code 0" "0" "$rc"
if grep -qE "Sanitizer|runtime error" "$LOG"; then fail "a sanitizer reported: $(grep -m3 -E 'Sanitizer|runtime error' "$LOG")"; else ok "no sanitizer report in the log"; fi

echo "$PASSED passed, $FAILED failed"
if [ $FAILED -ne 0 ]; then
    echo "--- certflowd log (last 60 lines) ---"
    tail -n 60 "$LOG"
    exit 1
fi
exit 0

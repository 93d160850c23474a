#!/usr/bin/env bash
# Integration test of certflowd's operational features, driven with real clients (curl and
# openssl s_client) against certflowd on 127.0.0.1, with a test PKI made with the openssl command:
#   1. --print-config: each setting's value and where it came from (default, FILE:LINE, env NAME,
#      derived), secrets masked;
#   2. CERTFLOW_<SECTION>_<KEY> environment overrides: bad values fail naming the variable, unknown
#      CERTFLOW_* variables get a warning, the port and the data folder really move;
#   3. SIGHUP: a CRL that revokes a client is taken for new connections, while a connection that
#      client opened before stays usable; broken files change nothing and are named in an ERROR
#      line (never with a key's contents); certflowd neither dies nor stops answering.
#
# Usage: daemon-ops.sh CERTFLOWD
# Prints one line per check and "N passed, N failed" at the end; exits 1 when a check failed,
# 77 when a tool it needs is missing.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 CERTFLOWD" >&2
    exit 2
fi
CERTFLOWD=$(realpath "$1")
for tool in curl openssl timeout mkfifo realpath; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done
# The variables under test must come from this script only.
for v in $(env | sed -n 's/^\(CERTFLOW_[^=]*\)=.*/\1/p'); do unset "$v"; done

W=$(mktemp -d "${TMPDIR:-/tmp}/certflowd-ops.XXXXXX")
PID=
SCLIENT=
cleanup() {
    if [ -n "$SCLIENT" ]; then kill "$SCLIENT" 2>/dev/null; fi
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
has() { # has DESCRIPTION FILE FIXED-STRING: the file contains the string
    if grep -qF -- "$3" "$2"; then ok "$1"; else fail "$1: '$3' not in: $(head -c 1500 "$2")"; fi
}
lacks() { # lacks DESCRIPTION FILE FIXED-STRING
    if grep -qF -- "$3" "$2"; then fail "$1: '$3' found in: $(grep -F -- "$3" "$2" | head -3)"; else ok "$1"; fi
}

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    else
        echo $((20000 + RANDOM % 40000))
    fi
}

# ---- test PKI: a CA, the server, a client that stays trusted and one that gets revoked ----------
P=$W/pki
mkdir -p "$P"
ossl() { openssl "$@" 2>>"$P/openssl.log" >>"$P/openssl.log"; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/ca.key" \
    -out "$P/ca.pem" -days 30 -subj "/O=certflow test/CN=ops test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
mkleaf() { # mkleaf NAME CN EXT...
    local name=$1 cn=$2
    shift 2
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$name.key" \
        -out "$P/$name.csr" -subj "/O=certflow test/CN=$cn"
    printf '%s\n' "$@" >"$P/$name.ext"
    ossl x509 -req -in "$P/$name.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -out "$P/$name.pem" -extfile "$P/$name.ext"
}
mkleaf server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth"
mkleaf keeper keeper "extendedKeyUsage=clientAuth"
mkleaf victim victim "extendedKeyUsage=clientAuth"
cat "$P/server.pem" "$P/ca.pem" >"$P/server-chain.pem"
cp "$P/server.key" "$P/server.key.good"
printf '[ca]\ndefault_ca=t\n[t]\ndatabase=%s/index.txt\ncrlnumber=%s/crlnumber\ndefault_md=sha256\ndefault_crl_days=30\ncertificate=%s/ca.pem\nprivate_key=%s/ca.key\n' \
    "$P" "$P" "$P" "$P" >"$P/ca.cnf"
: >"$P/index.txt"
echo 01 >"$P/crlnumber"
ossl ca -config "$P/ca.cnf" -gencrl -out "$P/crl-none.pem"
ossl ca -config "$P/ca.cnf" -revoke "$P/victim.pem"
ossl ca -config "$P/ca.cnf" -gencrl -out "$P/crl-victim.pem"
if [ ! -s "$P/crl-victim.pem" ] || [ ! -s "$P/victim.pem" ] || [ ! -s "$P/server.pem" ]; then
    echo "FAIL cannot make the test PKI:" >&2
    cat "$P/openssl.log" >&2
    exit 1
fi
CRL=$W/crl.pem
cp "$P/crl-none.pem" "$CRL"
# Files are replaced as operators' tools do: written beside, then renamed over.
replace() { cp "$1" "$2.new" && mv -f "$2.new" "$2"; }

# ---- configuration ------------------------------------------------------------------------------
FILE_MTLS=$(free_port)
MTLS=$(free_port)
BASIC=$(free_port)
HTTP=$(free_port)
while [ "$MTLS" = "$FILE_MTLS" ]; do MTLS=$(free_port); done
while [ "$BASIC" = "$MTLS" ] || [ "$BASIC" = "$FILE_MTLS" ]; do BASIC=$(free_port); done
while [ "$HTTP" = "$MTLS" ] || [ "$HTTP" = "$BASIC" ] || [ "$HTTP" = "$FILE_MTLS" ]; do HTTP=$(free_port); done
INI=$W/certflow.ini
cat >"$INI" <<EOF
; written by tests/integration/daemon-ops.sh
[daemon]
data_dir = $W/var-file
shutdown_timeout = 10
[processes]
seed =
[tls]
cert = $P/server-chain.pem
key = $P/server.key
truststore = $P/ca.pem
crl = $CRL
[mtls]
port = $FILE_MTLS
[basic]
port = $BASIC
[http]
port = $HTTP
[limits]
idle_timeout = 300
EOF
line_of() { grep -n "^$1 =" "$INI" | head -1 | cut -d: -f1; }

# ---- 1. --print-config ----------------------------------------------------------------------------
section "1. --print-config: values, sources, masked secrets"
SECRET="ca-passphrase-$(openssl rand -hex 12)"
CERTFLOW_MTLS_PORT=$MTLS CERTFLOW_CA_PASSPHRASE=$SECRET \
    "$CERTFLOWD" --config "$INI" --print-config >"$W/print.out" 2>"$W/print.err"
check "--print-config exits 0" "0" "$?"
# "key = value" then padding then "; source": compare with the padding squeezed.
tr -s ' ' <"$W/print.out" >"$W/print.txt"
has "a value from the environment names its variable" "$W/print.txt" "port = $MTLS ; env CERTFLOW_MTLS_PORT"
has "a value from the file names file and line" "$W/print.txt" "data_dir = $W/var-file ; $INI:$(line_of data_dir)"
has "a value from the file names its own line" "$W/print.txt" "port = $BASIC ; $INI:$(grep -n "^port = $BASIC\$" "$INI" | cut -d: -f1)"
has "a default says so" "$W/print.txt" "max_connections = 1024 ; default"
has "a derived value says from what" "$W/print.txt" "database = $W/var-file/certflow.db ; derived from [daemon] data_dir"
lacks "the file's port that the environment overrides is not shown" "$W/print.txt" "port = $FILE_MTLS "
lacks "a secret from the environment is not printed" "$W/print.out" "$SECRET"
has "a secret from the environment is shown masked" "$W/print.txt" "; CERTFLOW_CA_PASSPHRASE = ********"
"$CERTFLOWD" --config "$INI" --print-config >"$W/print2.out" 2>&1
tr -s ' ' <"$W/print2.out" >"$W/print2.txt"
has "without the variable, the file's port shows again" "$W/print2.txt" "port = $FILE_MTLS ; $INI:"
has "an unset secret variable is shown as not set" "$W/print2.txt" "; CERTFLOW_CA_PASSPHRASE is not set"
CERTFLOW_DAEMON_DATA_DIR=$W/var-env "$CERTFLOWD" --config "$INI" --print-config 2>&1 | tr -s ' ' >"$W/print3.txt"
has "the data folder from the environment" "$W/print3.txt" "data_dir = $W/var-env ; env CERTFLOW_DAEMON_DATA_DIR"
has "what derives from the data folder follows it" "$W/print3.txt" "dir = $W/var-env/processes ; derived from [daemon] data_dir"

# ---- 2. bad and unknown environment variables -------------------------------------------------------
section "2. bad and unknown environment variables"
bad_env() { # bad_env DESCRIPTION VAR=VALUE EXPECTED-TEXT
    env "$2" "$CERTFLOWD" --config "$INI" --check-config >"$W/bad.out" 2>&1
    check "$1: exit code 2" "2" "$?"
    has "$1: the message names the variable" "$W/bad.out" "environment variable ${2%%=*}: $3"
}
bad_env "a port that is no number" "CERTFLOW_MTLS_PORT=84x3" "[mtls] port must be a whole number from 0 to 65535, not '84x3'"
bad_env "a port out of range" "CERTFLOW_HTTP_PORT=70000" "[http] port must be a whole number"
bad_env "a boolean that is none" "CERTFLOW_BASIC_ENABLED=maybe" "[basic] enabled must be true or false"
bad_env "plain HTTP off loopback" "CERTFLOW_HTTP_HOST=0.0.0.0" "[http] host 0.0.0.0 is not a loopback address"
bad_env "an empty data folder" "CERTFLOW_DAEMON_DATA_DIR=" "[daemon] data_dir must not be empty"
# The same for a daemon that is asked to run: it does not start.
CERTFLOW_MTLS_PORT=not-a-port timeout 20 "$CERTFLOWD" --config "$INI" >"$W/badrun.out" 2>&1
check "certflowd with a bad variable exits 2" "2" "$?"
has "certflowd with a bad variable names it" "$W/badrun.out" "environment variable CERTFLOW_MTLS_PORT:"
lacks "certflowd with a bad variable listens nowhere" "$W/badrun.out" "listening on"
# Unknown variables warn; the ones certflow's programs read themselves do not.
CERTFLOW_MTLS_PROT=1 CERTFLOW_NOSUCH_THING=x CERTFLOW_URL=https://127.0.0.1:1 CERTFLOW_PASSWORD=pw-$SECRET \
    CERTFLOW_PLUGINS=/nonexistent "$CERTFLOWD" --config "$INI" --check-config >"$W/warn.out" 2>"$W/warn.err"
check "unknown CERTFLOW_* variables are no error" "0" "$?"
has "a misspelt key is warned about by name" "$W/warn.err" "warning: environment variable CERTFLOW_MTLS_PROT is not a certflowd setting (no such key in [mtls])"
has "an unknown section is warned about by name" "$W/warn.err" "warning: environment variable CERTFLOW_NOSUCH_THING is not a certflowd setting"
lacks "CERTFLOW_URL (the CLI's) gets no warning" "$W/warn.err" "CERTFLOW_URL"
lacks "CERTFLOW_PASSWORD (the CLI's) gets no warning" "$W/warn.err" "CERTFLOW_PASSWORD"
lacks "CERTFLOW_PLUGINS (certflowd's own) gets no warning" "$W/warn.err" "CERTFLOW_PLUGINS"
lacks "the CLI's password is printed nowhere" "$W/warn.out" "pw-$SECRET"

# ---- 3. the daemon with environment overrides ---------------------------------------------------
section "3. certflowd with the port and the data folder from the environment"
LOG=$W/certflowd.log
OUT=$W/certflowd.out
(cd "$W" && CERTFLOW_MTLS_PORT=$MTLS CERTFLOW_DAEMON_DATA_DIR=$W/var-env CERTFLOW_MTLS_PROT=1 \
    CERTFLOW_CA_PASSPHRASE=$SECRET \
    exec "$CERTFLOWD" --config "$INI" >>"$OUT" 2>>"$LOG") &
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
has "the client-certificate listener is on the port from the environment" "$OUT" "listening on https://127.0.0.1:$MTLS (client certificate)"
lacks "nothing listens on the file's port" "$OUT" ":$FILE_MTLS "
if [ -f "$W/var-env/certflow.db" ]; then ok "the database is in the data folder from the environment"; else fail "no $W/var-env/certflow.db: $(ls -R "$W" | head -20)"; fi
if [ ! -e "$W/var-file" ]; then ok "the file's data folder is not used"; else fail "$W/var-file exists"; fi
has "the unknown variable is warned about in the log" "$LOG" "config: environment variable CERTFLOW_MTLS_PROT is not a certflowd setting"

as() { # as NAME PATH: curl to the client-certificate listener with NAME's certificate
    curl -sS --max-time 10 --cacert "$P/ca.pem" --cert "$P/$1.pem" --key "$P/$1.key" \
        -o /dev/null -w '%{http_code}' "https://127.0.0.1:$MTLS$2" 2>>"$W/curl.err"
}
check "a client certificate works on the port from the environment" "200" "$(as keeper /health/live)"
code=$(curl -sS --max-time 10 --cacert "$P/ca.pem" --cert "$P/keeper.pem" --key "$P/keeper.key" \
    -o /dev/null -w '%{http_code}' "https://127.0.0.1:$FILE_MTLS/health/live" 2>/dev/null)
check "the file's port answers nothing" "000" "$code"

# ---- 4. SIGHUP ------------------------------------------------------------------------------------
section "4. SIGHUP reloads the CRL for new connections, keeps open ones"
check "before the reload the victim's certificate is accepted" "200" "$(as victim /health/live)"
# The victim's connection that stays open: s_client reads requests from a FIFO held open here.
FIFO=$W/sclient.in
SOUT=$W/sclient.out
mkfifo "$FIFO"
exec 3<>"$FIFO"
openssl s_client -connect "127.0.0.1:$MTLS" -CAfile "$P/ca.pem" -cert "$P/victim.pem" \
    -key "$P/victim.key" -verify_return_error -quiet <"$FIFO" >"$SOUT" 2>"$W/sclient.err" &
SCLIENT=$!
answers() { grep -o 'HTTP/1.1 200 OK' "$SOUT" | wc -l; } # bodies end without a newline
held_get() { # held_get N: one more request on the held connection; waits for the N-th answer
    printf 'GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n' >&3
    for _ in $(seq 1 100); do
        [ "$(answers)" -ge "$1" ] && break
        sleep 0.1
    done
    answers
}
check "the victim's held connection answers" "1" "$(held_get 1)"

log_count() { grep -cF -- "$1" "$LOG"; }
wait_log() { # wait_log TEXT COUNT: until TEXT is in the log COUNT times (10 s at most)
    for _ in $(seq 1 100); do
        [ "$(log_count "$1")" -ge "$2" ] && break
        sleep 0.1
    done
    log_count "$1"
}
RELOADED="SIGHUP: TLS files reloaded for new connections"
NOT_RELOADED="SIGHUP: TLS files not reloaded, the previous ones stay in use"

replace "$P/crl-victim.pem" "$CRL"
kill -HUP "$PID"
check "SIGHUP logs one INFO line" "1" "$(wait_log "$RELOADED" 1)"
if grep -F -- "$RELOADED" "$LOG" | grep -q " info .*crl=$CRL"; then ok "the INFO line names the files"; else fail "reload line: $(grep -F -- "$RELOADED" "$LOG")"; fi
if kill -0 "$PID" 2>/dev/null; then ok "certflowd lives on after SIGHUP"; else fail "certflowd died on SIGHUP"; fi
code=$(as victim /health/live)
check "after the reload a new connection with the revoked certificate is refused" "000" "$code"
check "after the reload other client certificates are accepted" "200" "$(as keeper /health/live)"
check "the victim's connection opened before the reload is not cut" "2" "$(held_get 2)"
if kill -0 "$SCLIENT" 2>/dev/null; then ok "s_client is still connected"; else fail "s_client ended: $(cat "$W/sclient.err")"; fi
check "plain HTTP answers after SIGHUP" "200" \
    "$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP/health/live")"

# A broken CRL file: an ERROR line names it, and the CRL that revokes the victim stays.
printf -- '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n' >"$CRL.new" && mv -f "$CRL.new" "$CRL"
kill -HUP "$PID"
check "a broken CRL logs one ERROR line" "1" "$(wait_log "$NOT_RELOADED" 1)"
if grep -F -- "$NOT_RELOADED" "$LOG" | grep " error " | grep -qF -- "'$CRL'"; then ok "the ERROR line names the CRL file"; else fail "error line: $(grep -F -- "$NOT_RELOADED" "$LOG")"; fi
check "no INFO line for the failed reload" "1" "$(log_count "$RELOADED")"
check "after the failed reload the victim is still refused" "000" "$(as victim /health/live)"
check "after the failed reload the others are still accepted" "200" "$(as keeper /health/live)"

# A key that does not match the certificate: named, its contents never logged, nothing changes.
replace "$P/crl-none.pem" "$CRL"
replace "$P/keeper.key" "$P/server.key"
kill -HUP "$PID"
check "a wrong key logs an ERROR line" "2" "$(wait_log "$NOT_RELOADED" 2)"
if grep -F -- "$NOT_RELOADED" "$LOG" | tail -1 | grep -qF -- "'$P/server.key'"; then ok "the ERROR line names the key file"; else fail "error line: $(grep -F -- "$NOT_RELOADED" "$LOG" | tail -1)"; fi
leaked=0
for f in "$P/keeper.key" "$P/server.key.good"; do
    while read -r l; do
        case "$l" in -----*) continue ;; esac
        grep -qF -- "$l" "$LOG" && leaked=1
    done <"$f"
done
check "no line of a key file appears in the log" "0" "$leaked"
check "the CRL beside the wrong key was not taken: the victim is still refused" "000" "$(as victim /health/live)"
check "and the server still answers with its old key" "200" "$(as keeper /health/live)"

# Good files again: the reload takes them (the CRL revokes nothing now, so the victim is back).
replace "$P/server.key.good" "$P/server.key"
kill -HUP "$PID"
check "good files again: one more INFO line" "2" "$(wait_log "$RELOADED" 2)"
check "the CRL that revokes nothing is taken: the victim is accepted again" "200" "$(as victim /health/live)"
check "the connection held through every reload still answers" "3" "$(held_get 3)"
if kill -0 "$PID" 2>/dev/null; then ok "certflowd is alive after four SIGHUPs"; else fail "certflowd died"; fi
exec 3>&-
kill "$SCLIENT" 2>/dev/null
wait "$SCLIENT" 2>/dev/null
SCLIENT=

# ---- shutdown ------------------------------------------------------------------------------------
lacks "the CA passphrase is in no log" "$LOG" "$SECRET"
kill -TERM "$PID"
for _ in $(seq 1 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID"
rc=$?
PID=
check "SIGTERM stops certflowd with exit code 0" "0" "$rc"

echo "$PASSED passed, $FAILED failed"
if [ $FAILED -ne 0 ]; then
    echo "--- certflowd log (last 40 lines) ---"
    tail -n 40 "$LOG"
    exit 1
fi
exit 0

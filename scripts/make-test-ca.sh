#!/usr/bin/env bash
# Make a throw-away certificate authority and certificates for testing TLS between
# the orchestrator and casi-learner. NOT for production: keys are unencrypted.
#
#   scripts/make-test-ca.sh OUTDIR [HOST_OR_IP ...]
#
# Writes into OUTDIR (created if missing):
#   ca.pem, ca.key          the test CA (1 day)
#   server.pem, server.key  server certificate for 127.0.0.1, ::1, localhost and every
#                           HOST_OR_IP given (e.g. gpu1.lab 10.0.0.7)
#   client.pem, client.key  client certificate (CN casi-client) for mutual TLS
#
# TLS:         casi-learner --tls-cert OUTDIR/server.pem --tls-key OUTDIR/server.key
#              NetClient(addr, root_cert=OUTDIR/ca.pem)
# mutual TLS:  add --tls-client-ca OUTDIR/ca.pem to the learner and
#              client_cert=OUTDIR/client.pem, client_key=OUTDIR/client.key to the client.
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: $0 OUTDIR [HOST_OR_IP ...]" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found on PATH" >&2; exit 1; }
out=$1
shift
names="IP:127.0.0.1,IP:::1,DNS:localhost"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        names+=",IP:$name"
    elif [[ $name =~ ^[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?$ ]]; then
        names+=",DNS:$name"
    else
        echo "$0: $name is neither a host name nor an IP address" >&2
        exit 2
    fi
done
mkdir -p "$out"
cd "$out"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=casi test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

sign() {  # sign NAME CN EXTENSIONS
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

sign server localhost "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$names"
sign client casi-client "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ./*.pem
echo "test CA and certificates written to $(pwd)" >&2

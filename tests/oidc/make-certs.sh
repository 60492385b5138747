#!/usr/bin/env bash
# Throwaway certificates for server.mjs's TLS mode (AUTHCORE_OIDC_TLS_DIR), made with the
# openssl command line into DIR: a CA (ca.pem), the server's certificate for 127.0.0.1
# and localhost (server.pem, server.key), a client certificate the CA issues with subject
# CN=mtls-client (client.pem, client.key) and a self-signed one (self-signed.pem,
# self-signed.key); each key P-256, PKCS#8. Also client.x5t and self-signed.x5t: the
# certificates' SHA-256 thumbprints, base64url (RFC 8705 §3.1's `x5t#S256`).
# Usage: bash tests/oidc/make-certs.sh DIR
set -euo pipefail
dir="${1:?usage: make-certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
x5t() { openssl x509 -in "$1" -outform der | openssl dgst -sha256 -binary | base64 -w0 | tr '+/' '-_' | tr -d '='; }

key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=authcore oidc interop CA" -days 2 -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
# issue NAME SUBJECT EXTENSIONS: NAME.pem issued by the CA for NAME.key.
issue() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
issue server "/CN=127.0.0.1" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
issue client "/CN=mtls-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
key self-signed.key
openssl req -x509 -new -key self-signed.key -subj "/CN=mtls-self" -days 2 -out self-signed.pem \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=clientAuth"
x5t client.pem > client.x5t
x5t self-signed.pem > self-signed.x5t
rm -f ca.srl

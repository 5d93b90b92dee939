#!/bin/sh
# Makes what regwatch's HTTP endpoint needs to run with TLS, client certificates and bearer
# tokens (README "HTTP endpoint security"): a private CA, a server certificate for regwatch, a
# client certificate for Prometheus, and one token per role. For the compose stack and for
# trying things out; in production, use your PKI (cert-manager, Vault) and your secret store.
#
#   sh deploy/tls/make-certs.sh DIR [SERVER_NAME...]
#
# DIR/regwatch/    server.crt server.key client-ca.crt scrape.tokens supervisor.tokens
# DIR/prometheus/  ca.crt client.crt client.key scrape.token
# DIR/             ca.crt ca.key supervisor.token (for curl and the supervisors' tools)
#
# Server names default to regwatch, localhost and 127.0.0.1. Existing files are kept (run it
# again safely); delete DIR to start over. With REGWATCH_UID / PROMETHEUS_UID set (and run
# as root), each side's key and token files are handed to that user, mode 0400.
set -eu
dir=${1:?usage: make-certs.sh DIR [SERVER_NAME...]}
shift
[ $# -gt 0 ] || set -- regwatch localhost 127.0.0.1
command -v openssl >/dev/null 2>&1 || { echo "make-certs.sh: needs openssl" >&2; exit 1; }
umask 077
mkdir -p "$dir/regwatch" "$dir/prometheus"
cd "$dir"

if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.crt -days 825 \
    -subj "/CN=regwatch private CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

san=""
for name in "$@"; do
  case $name in
    *[!0-9.]*) entry="DNS:$name" ;;
    *) entry="IP:$name" ;;
  esac
  san="${san:+$san,}$entry"
done

# issue NAME SUBJECT EXTENSIONS: NAME.key and NAME.crt signed by the CA.
issue() {
  printf '%s\n' "$3" > "$1.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days 397 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

if [ ! -f regwatch/server.crt ]; then
  issue server "/CN=regwatch" "subjectAltName=$san
extendedKeyUsage=serverAuth"
  mv server.key server.crt regwatch/
fi
if [ ! -f prometheus/client.crt ]; then
  issue client "/CN=prometheus" "extendedKeyUsage=clientAuth"
  mv client.key client.crt prometheus/
fi
cp ca.crt regwatch/client-ca.crt
cp ca.crt prometheus/ca.crt

token() { openssl rand -hex 32; }
[ -f prometheus/scrape.token ] || token > prometheus/scrape.token
[ -f supervisor.token ] || token > supervisor.token
[ -f regwatch/scrape.tokens ] || cp prometheus/scrape.token regwatch/scrape.tokens
[ -f regwatch/supervisor.tokens ] || cp supervisor.token regwatch/supervisor.tokens

chmod 0644 ca.crt regwatch/server.crt regwatch/client-ca.crt prometheus/ca.crt prometheus/client.crt
chmod 0755 regwatch prometheus
chmod 0400 regwatch/server.key regwatch/scrape.tokens regwatch/supervisor.tokens \
  prometheus/client.key prometheus/scrape.token
if [ -n "${REGWATCH_UID:-}" ]; then
  chown "$REGWATCH_UID" regwatch/server.key regwatch/scrape.tokens regwatch/supervisor.tokens
fi
if [ -n "${PROMETHEUS_UID:-}" ]; then
  chown "$PROMETHEUS_UID" prometheus/client.key prometheus/scrape.token
fi
echo "make-certs.sh: $dir ready (server names: $*)"

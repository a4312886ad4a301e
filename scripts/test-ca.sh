#!/usr/bin/env bash
# A test certificate authority and one server certificate for 127.0.0.1 and localhost, for the test
# processes that speak TLS to each other (the HTTPS test OpenID provider, XRootD's davs:// and
# root:// with TLS; later the HTCondor schedd and the gateway as clients). Made with openssl once per
# machine and cached OUTSIDE the repository, so fresh clones on the same machine reuse it:
#   ${AF_TEST_CA_CACHE:-/var/cache/af-gateway}/test-ca-<key>/   (<key> = hash of RECIPE_VERSION)
#
# Usage:
#   scripts/test-ca.sh ensure     make it if missing or expiring within 30 days (< 0.1 s when cached);
#                                 prints the directory (the only line on stdout)
#   scripts/test-ca.sh selftest   ensure, then check the chain, the names and the modes
#
# The directory (0755, root) holds:
#   ca.pem        the CA's certificate (0644): what clients trust (curl --cacert, NODE_EXTRA_CA_CERTS,
#                 requests' verify=, ssl.create_default_context(cafile=))
#   ca.key        the CA's private key (0600, root only: nothing but this script signs with it)
#   certs/        a CA directory in OpenSSL's hashed layout: ca.pem and <subject hash>.0 (0644), for
#                 the tools that want a directory (XRootD: xrd.tlsca certdir, the client's X509_CERT_DIR)
#   server.pem    the server certificate (0644), SANs IP:127.0.0.1, IP:::1, DNS:localhost; serverAuth
#                 and clientAuth
#   server.key    its private key (0640, root:root). A server running as another account gets its own
#                 copy, owned by that account, in its run directory (scripts/xrootd-storage.sh does)
#   chain.pem     server.pem followed by ca.pem (0644)
#   info.json     {"dir", "ca", "ca_dir", "cert", "key", "chain", "not_after"}
# Nothing here is ever world-writable. The key is a test key: never trust this CA outside tests.
set -euo pipefail

RECIPE_VERSION="test-ca-1"   # bump when what is made below changes
DAYS=3650                    # validity of both certificates; ensure remakes them 30 days before the end

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
cache=${AF_TEST_CA_CACHE:-/var/cache/af-gateway}
key=$(printf '%s' "$RECIPE_VERSION" | sha256sum | cut -c1-12)
dir="$cache/test-ca-$key"

HARNESS_TAG=test-ca
. "$script_dir/lib/harness.sh"   # log, die, now, since, lock_cache

complete() {   # the directory is whole and its certificates are good for 30 more days
  [ -f "$dir/.complete" ] && [ -s "$dir/info.json" ] &&
    openssl x509 -checkend $((30 * 86400)) -noout -in "$dir/ca.pem" >/dev/null 2>&1 &&
    openssl x509 -checkend $((30 * 86400)) -noout -in "$dir/server.pem" >/dev/null 2>&1
}

make_ca() {   # make_ca DIR: everything listed above, in DIR
  local d=$1 hash
  (
    cd "$d"
    umask 077
    cat > ca.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = AF Gateway tests
CN = AF Gateway test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key 2>/dev/null
    openssl req -new -x509 -config ca.cnf -extensions ca_ext -key ca.key -sha256 -days "$DAYS" \
      -set_serial "0x$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" -out ca.pem
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server.key 2>/dev/null
    openssl req -new -key server.key -subj '/O=AF Gateway tests/CN=localhost' -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -sha256 -days "$DAYS" \
      -set_serial "0x$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" \
      -extfile ca.cnf -extensions server_ext -out server.pem 2>/dev/null
    rm -f server.csr ca.cnf
    cat server.pem ca.pem > chain.pem
    mkdir certs
    cp ca.pem certs/ca.pem
    hash=$(openssl x509 -noout -subject_hash -in ca.pem)
    ln -s ca.pem "certs/$hash.0"
    chmod 0600 ca.key
    chmod 0640 server.key
    chmod 0644 ca.pem server.pem chain.pem certs/ca.pem
    chmod 0755 certs
  )
  chmod 0755 "$d"
  local not_after
  not_after=$(openssl x509 -noout -enddate -in "$d/server.pem" | cut -d= -f2)
  printf '{"dir": "%s", "ca": "%s", "ca_dir": "%s", "cert": "%s", "key": "%s", "chain": "%s", "not_after": "%s"}\n' \
    "$dir" "$dir/ca.pem" "$dir/certs" "$dir/server.pem" "$dir/server.key" "$dir/chain.pem" "$not_after" > "$d/info.json"
  chmod 0644 "$d/info.json"
}

ensure() {
  complete && return 0
  [ "$(id -u)" -eq 0 ] || [ -w "$cache" ] || die "making the test CA in $cache needs root (or AF_TEST_CA_CACHE set to a writable directory)"
  command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
  lock_cache "$cache/test-ca-$key.lock" 120 "test CA build"
  if complete; then unlock_cache; return 0; fi   # made by another run meanwhile
  local t0 tmp
  t0=$(now)
  tmp="$cache/.test-ca-$key.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  make_ca "$tmp" || { rm -rf "$tmp"; unlock_cache; die "openssl failed"; }
  touch "$tmp/.complete"
  rm -rf "$dir"
  mv -T "$tmp" "$dir"
  unlock_cache
  log "made the test CA and a server certificate for 127.0.0.1, ::1 and localhost in $(since "$t0")s: $dir"
}

selftest() {
  ensure
  local fails=0
  check() {   # check WHAT COMMAND...
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then log "ok: $what"; else log "FAILED: $what"; fails=$((fails + 1)); fi
  }
  check "server.pem chains to ca.pem" openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem"
  check "server.pem chains to the hashed certs/ directory" openssl verify -CApath "$dir/certs" "$dir/server.pem"
  # -checkip/-checkhost exit 0 either way: their words tell
  check "valid for 127.0.0.1" grep -q ' does match' <(openssl x509 -noout -in "$dir/server.pem" -checkip 127.0.0.1)
  check "valid for localhost" grep -q ' does match' <(openssl x509 -noout -in "$dir/server.pem" -checkhost localhost)
  check "not valid for another name" grep -q 'does NOT match' <(openssl x509 -noout -in "$dir/server.pem" -checkhost example.org)
  check "the key matches the certificate" test "$(openssl x509 -noout -pubkey -in "$dir/server.pem")" = "$(openssl pkey -pubout -in "$dir/server.key")"
  check "ca.key is 0600" test "$(stat -c %a "$dir/ca.key")" = 600
  check "nothing is world-writable" test -z "$(find "$dir" -perm -o+w ! -type l)"
  [ "$fails" -eq 0 ] || die "$fails check(s) failed"
  log "selftest passed ($dir)"
}

case "${1:-}" in
  ensure) ensure; printf '%s\n' "$dir" ;;
  selftest) selftest ;;
  *) die "usage: $0 ensure | selftest" ;;
esac

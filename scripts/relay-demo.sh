#!/usr/bin/env bash
# scripts/relay-demo.sh: a single-node Postern relay over enforced, verified TLS, made with
# the postern commands an administrator types (ca, keyring, config check, serve). The main
# demo, two organisations exchanging mail, is `postern demo` (scripts/demo.sh).
#
# 1. A lab CA and a key ring, made with Postern's own commands (postern ca, postern keyring).
# 2. `postern serve` from examples/demo-relay.toml, with require_tls on its connector.
# 3. A message sent in plaintext is refused (530 5.7.0); the same message over STARTTLS,
#    with the server certificate verified against the lab root, is accepted.
# 4. The TLS outcome, as the protocol log recorded it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
postern=${POSTERN_BIN:-$top/build/postern}
keep=${POSTERN_DEMO_KEEP:-}
work=$(mktemp -d /tmp/postern-demo.XXXXXX)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    if [ -z "$keep" ]; then rm -rf "$work"; else echo "kept: $work"; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "Lab CA and key ring (postern ca, postern keyring)"
mkdir -p "$work/data" && chmod 0700 "$work/data"
"$postern" ca --dir "$work/ca" init --subject "CN=Postern Demo Root"
umask 077
head -c 24 /dev/urandom | base64 > "$work/data/keyring.sth"
"$postern" keyring --keyring "$work/data/keyring.p12" --stash "$work/data/keyring.sth" create
"$postern" keyring --keyring "$work/data/keyring.p12" --stash "$work/data/keyring.sth" \
    request --subject "CN=mx.demo.test" --san DNS:mx.demo.test,DNS:localhost,IP:127.0.0.1 \
    --label mx --out "$work/mx.csr"
"$postern" ca --dir "$work/ca" sign "$work/mx.csr" --out "$work/mx.pem" --days 90
"$postern" keyring --keyring "$work/data/keyring.p12" --stash "$work/data/keyring.sth" trust "$work/ca/ca.pem"
"$postern" keyring --keyring "$work/data/keyring.p12" --stash "$work/data/keyring.sth" install "$work/mx.pem"
"$postern" keyring --keyring "$work/data/keyring.p12" --stash "$work/data/keyring.sth" list

step "Configuration (examples/demo-relay.toml)"
# Started as root, the server drops to an unprivileged user once its port is bound.
service_user=""
if [ "$(id -u)" -eq 0 ]; then service_user=nobody; chmod 0755 "$work"; fi
sed -e "s#@DATA_DIR@#$work/data#" -e "s#@USER@#$service_user#" "$top/examples/demo-relay.toml" > "$work/postern.toml"
"$postern" config check -c "$work/postern.toml"

step "postern serve"
"$postern" serve -c "$work/postern.toml" --ready-file "$work/ready.json" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
    [ -s "$work/ready.json" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    read -rt 0.1 <> <(:) || true       # 100 ms poll interval, bounded to 10 s
done
[ -s "$work/ready.json" ] || { echo "server did not become ready"; cat "$work/server.log"; exit 1; }
cat "$work/ready.json"
server_uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")
echo "serving as uid $server_uid ($(getent passwd "$server_uid" | cut -d: -f1))"

step "Sending: plaintext first (refused), then over verified STARTTLS (accepted)"
python3 - "$work/ready.json" "$work/ca/ca.pem" <<'PY'
import json, smtplib, ssl, sys
ready = json.load(open(sys.argv[1]))
port = ready["listeners"][0]["port"]
message = ("From: alice@demo.test\r\nTo: bob@partner.test\r\nSubject: Postern demo\r\n\r\n"
           "Carried over enforced, verified TLS.\r\n")
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.demo.test") as s:
    s.ehlo()
    code, text = s.mail("alice@demo.test")
    print(f"plaintext MAIL FROM  -> {code} {text.decode()}")
    assert code == 530, "a require_tls connector must refuse mail before STARTTLS"
context = ssl.create_default_context(cafile=sys.argv[2])   # verifies chain and name
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.demo.test") as s:
    s.ehlo()
    s.starttls(context=context)        # the certificate names IP:127.0.0.1
    s.ehlo()
    tls = s.sock
    print(f"STARTTLS             -> {tls.version()} {tls.cipher()[0]}, server certificate verified "
          f"against the lab root, subject {dict(x[0] for x in tls.getpeercert()['subject'])['commonName']}")
    refused = s.sendmail("alice@demo.test", ["bob@partner.test"], message)
    assert not refused
    print("message              -> 250 accepted and stored durably")
PY

step "The protocol log says (TLS outcome of each session)"
grep -h -E 'TLS|530|250 2\.0\.0' "$work"/data/log/smtp-receive/*.log | cut -d, -f3,7- | head -n 20
echo
echo "Postern demo finished: plaintext refused, mail accepted over verified TLS."

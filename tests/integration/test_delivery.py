"""Delivery through send connectors with enforced, verified TLS (DESIGN.md §3
[[send_connector]] and the domain-validation / opportunistic-sending semantics, §6 send
protocol log).

- Instance A relays mail for partner.test through a send connector with require_tls and
  domain_validation to instance B; B acknowledges it over TLS.
- Fake next hops written here (no STARTTLS; STARTTLS answered 454; a self-signed
  certificate; a trusted certificate with the wrong name; a valid one) show which of them
  receive mail and how. Refused ones never see MAIL: the message stays queued in A and
  the reason is in A's send protocol log.
- With require_tls = false, a 454 leads to a plaintext attempt, logged
  "TLS failed (<reason>); sent in plaintext".

Every wait polls a condition with a bound; every port comes from the OS.
"""

import os
import socket
import ssl
import threading
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, PosternTestCase, SmtpConn,
                             config_text, connector, hold_send_connector, message, pki,
                             wait_until)

DELIVERY_TIMEOUT = 30.0


class FakeNextHop:
    """A next hop on 127.0.0.1:<OS port>, one thread per connection.

    mode: "no-starttls" (EHLO without STARTTLS), "454" (STARTTLS refused), or the name
    of a PKI certificate ("server", "wrong", "selfsigned") used after STARTTLS.
    Records every message it accepted with whether TLS was on.
    """

    offer_requiretls = False           # advertise REQUIRETLS after STARTTLS

    def __init__(self, mode):
        self.mode = mode
        self.messages = []             # (tls_version or None, mail_from, rcpts, data)
        self.mail_commands = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            # close() alone leaves a socket blocked in accept() listening (Linux): shut it down.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def received(self):
        with self.lock:
            return list(self.messages)

    def _accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _context(self):
        p = pki()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(p.path(self.mode + ".pem"), p.path(self.mode + ".key"))
        return ctx

    def _session(self, conn):
        conn.settimeout(30)
        buf = b""
        tls = None

        def say(text):
            conn.sendall(text.encode())

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            l, buf = buf.split(b"\r\n", 1)
            return l.decode("utf-8", "replace")

        try:
            say("220 fake.next.hop ESMTP\r\n")
            mail_from, rcpts = None, []
            while True:
                cmd = line()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    caps = ["fake.next.hop", "8BITMIME", "PIPELINING"]
                    if tls is None and self.mode != "no-starttls":
                        caps.append("STARTTLS")
                    if tls is not None and self.offer_requiretls:
                        caps.append("REQUIRETLS")   # RFC 8689: only over TLS
                    say("".join(f"250-{c}\r\n" for c in caps[:-1]) + f"250 {caps[-1]}\r\n")
                elif verb == "STARTTLS":
                    if self.mode == "454":
                        say("454 4.7.0 TLS not available due to temporary reason\r\n")
                        continue
                    say("220 2.0.0 Ready to start TLS\r\n")
                    buf = b""
                    try:
                        conn = self._context().wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        return          # the client refused our certificate
                    tls = conn.version()
                elif verb == "MAIL":
                    with self.lock:
                        self.mail_commands += 1
                    mail_from, rcpts = cmd, []
                    say("250 2.1.0 OK\r\n")
                elif verb == "RCPT":
                    rcpts.append(cmd)
                    say("250 2.1.5 OK\r\n")
                elif verb == "DATA":
                    say("354 go ahead\r\n")
                    while b"\r\n.\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed in DATA")
                        buf += chunk
                    data, buf = buf.split(b"\r\n.\r\n", 1)
                    with self.lock:
                        self.messages.append((tls, mail_from, rcpts, data.decode("utf-8", "replace")))
                    say("250 2.0.0 OK queued\r\n")
                elif verb == "RSET":
                    say("250 2.0.0 OK\r\n")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye\r\n")
                    return
                else:
                    say("502 5.5.1 unknown\r\n")
        except (ConnectionError, OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass


def relay_connector():
    """A receive connector loopback clients may relay through (not an open relay)."""
    return connector(remote_ip_ranges=["127.0.0.0/8"], accept_any_recipient=True)


def send_to(server, rcpt, subject):
    """Hands one message for `rcpt` to `server` over plain SMTP; returns the 250 line."""
    c = SmtpConn("127.0.0.1", server.port())
    try:
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<{rcpt}>")
        c.expect("354", "DATA")
        c.send_raw(message(200, subject=subject, rcpt=rcpt) + ".\r\n")
        line = c.expect("250")
        c.expect("221", "QUIT")
        return line
    finally:
        c.close()


def require_delivery(test, server):
    """`postern serve` runs the delivery engine when it opens the send protocol log."""
    if not os.path.isdir(os.path.join(server.data_dir, "log", "smtp-send")):
        test.fail("`postern serve` did not start the delivery engine (no smtp-send log)")


def send_log_text(server):
    d = os.path.join(server.data_dir, "log", "smtp-send")
    text = ""
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), errors="replace") as f:
                text += f.read()
    return text


def wait_send_log(server, needle, timeout=DELIVERY_TIMEOUT):
    return wait_until(lambda: needle in send_log_text(server), timeout,
                      what=f"{needle!r} in the send protocol log")


class InstanceToInstance(PosternTestCase):
    """A relays partner.test mail to B: require_tls + domain_validation, tls_domain."""

    def test_relayed_over_verified_tls(self):
        b = self.start(config_text(
            [connector(require_tls=True)],
            server={"accepted_domains": ["partner.test"]}))
        a = self.start(config_text(
            [relay_connector()],
            send_connectors=[{
                "name": "to-partner", "address_spaces": ["partner.test"],
                "smart_hosts": [f"127.0.0.1:{b.port()}"],
                "require_tls": True, "tls_auth_level": "domain_validation",
                "tls_domain": SERVER_NAME,
            }, hold_send_connector()]))
        require_delivery(self, a)
        send_to(a, "bob@partner.test", "relay A to B")

        log_b = b.protocol_log()
        wait_until(lambda: sum(log_b.accepted_messages(rows) for rows in log_b.sessions().values()),
                   DELIVERY_TIMEOUT, what="B to acknowledge the relayed message")
        # B saw it only after STARTTLS (its connector requires TLS).
        sessions = [rows for rows in log_b.sessions().values() if log_b.accepted_messages(rows)]
        self.assertTrue(any(any(r["data"].startswith("STARTTLS") for r in rows
                                if r["event"] == "<") for rows in sessions))
        wait_send_log(a, "achieved=domain_validation required=domain_validation; verdict=pass")
        text = send_log_text(a)
        self.assertIn("RCPT TO:<bob@partner.test>", text)
        self.assertNotIn("relay A to B", text)          # bodies are never logged
        queued = a.queue_list()
        if queued is not None:
            wait_until(lambda: not a.queue_list(), DELIVERY_TIMEOUT, what="A's queue to empty")


class FakeNextHops(PosternTestCase):
    """One instance A, one send connector per fake next hop."""

    def setUp(self):
        super().setUp()
        modes = {"notls": "no-starttls", "refused": "454", "selfsigned": "selfsigned",
                 "wrongname": "wrong", "valid": "server"}
        self.hops = {name: FakeNextHop(mode) for name, mode in modes.items()}
        for hop in self.hops.values():
            self.addCleanup(hop.stop)
        self.opportunistic = FakeNextHop("454")
        self.addCleanup(self.opportunistic.stop)
        send = []
        for name, hop in self.hops.items():
            send.append({
                "name": f"to-{name}", "address_spaces": [f"{name}.test"],
                "smart_hosts": [f"127.0.0.1:{hop.port}"],
                "require_tls": True, "tls_auth_level": "domain_validation",
                "tls_domain": SERVER_NAME,
            })
        send.append({"name": "to-opportunistic", "address_spaces": ["opportunistic.test"],
                     "smart_hosts": [f"127.0.0.1:{self.opportunistic.port}"]})
        send.append(hold_send_connector())
        self.a = self.start(config_text([relay_connector()], send_connectors=send))
        require_delivery(self, self.a)

    def test_only_the_valid_next_hop_gets_mail_and_refusals_are_logged_with_reasons(self):
        for name in self.hops:
            send_to(self.a, f"bob@{name}.test", f"to {name}")

        valid = self.hops["valid"]
        wait_until(valid.received, DELIVERY_TIMEOUT, what="the valid next hop to receive the message")
        tls_version, mail_from, rcpts, data = valid.received()[0]
        self.assertIn(tls_version, ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(mail_from.startswith("MAIL FROM:<alice@client.test>"), mail_from)
        self.assertEqual(rcpts, ["RCPT TO:<bob@valid.test>"])
        self.assertIn("Subject: to valid", data)

        reasons = {
            "notls": "reason=STARTTLS not offered",
            "refused": "454 4.7.0 TLS not available",
            "selfsigned": "certificate not trusted",
            "wrongname": "certificate name mismatch",
        }
        for name, needle in reasons.items():
            wait_send_log(self.a, needle)
        for name in reasons:
            hop = self.hops[name]
            self.assertEqual(hop.received(), [], f"{name} must not receive mail")
            self.assertEqual(hop.mail_commands, 0, f"{name} must not even see MAIL")
        # The wrong name is still a trusted chain: the verdict says how far it got.
        self.assertIn("achieved=certificate_validation required=domain_validation; verdict=fail",
                      send_log_text(self.a))
        self.assertIn("achieved=encryption_only required=domain_validation; verdict=fail",
                      send_log_text(self.a))


    def test_refused_messages_stay_in_the_queue(self):
        for name in ("notls", "wrongname", "valid"):
            send_to(self.a, f"bob@{name}.test", f"to {name}")
        wait_until(self.hops["valid"].received, DELIVERY_TIMEOUT, what="the valid next hop")
        wait_send_log(self.a, "reason=STARTTLS not offered")
        wait_send_log(self.a, "certificate name mismatch")
        self.a.queue_list(strict=True)            # the queue can be read at all
        wait_until(lambda: "bob@valid.test" not in repr(self.a.queue_list()), DELIVERY_TIMEOUT,
                   what="the delivered message to leave A's queue")
        text = repr(self.a.queue_list())
        self.assertIn("bob@notls.test", text)
        self.assertIn("bob@wrongname.test", text)

    def test_opportunistic_sending_falls_back_to_plaintext_after_454(self):
        send_to(self.a, "carol@opportunistic.test", "opportunistic")
        hop = self.opportunistic
        wait_until(hop.received, DELIVERY_TIMEOUT, what="the plaintext delivery")
        tls_version, _, rcpts, data = hop.received()[0]
        self.assertIsNone(tls_version)
        self.assertEqual(rcpts, ["RCPT TO:<carol@opportunistic.test>"])
        wait_send_log(self.a, "TLS failed (STARTTLS refused: 454 4.7.0 TLS not available")
        self.assertIn("sent in plaintext", send_log_text(self.a))


if __name__ == "__main__":
    unittest.main()

"""Receive-connector policy, as a client sees it (DESIGN §3 [[receive_connector]], §5).

Each class runs one server with the connector settings under test and talks to it with a
line-level client, so every transcript is exactly what went over the wire.
"""

import time
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, SharedServerTestCase, SmtpConn, config_text,
                             connector, message, wait_until)


class RequireTls(SharedServerTestCase):
    CONFIG = config_text([connector(require_tls=True)])

    def test_mail_rcpt_data_before_starttls_get_530(self):
        c = self.smtp()
        c.expect("220")
        ehlo = c.expect("250", "EHLO client.postern.test")
        self.assertTrue(any(l[4:].upper().startswith("STARTTLS") for l in ehlo), ehlo)
        c.expect("530 5.7.0 Must issue a STARTTLS command first", "MAIL FROM:<alice@client.test>")
        c.expect("530 5.7.0", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("530 5.7.0", "DATA")
        c.expect("221", "QUIT")

    def test_after_starttls_mail_is_accepted(self):
        c = self.tls_session()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw(message(100) + ".\r\n")
        c.expect("250")
        c.expect("221", "QUIT")

    def test_starttls_not_offered_twice(self):
        c = self.tls_session()
        c.expect("250", "NOOP")
        c.send("EHLO again.client.postern.test")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertFalse(any("STARTTLS" in l.upper() for l in lines), lines)


class AcceptedDomainWithoutRoute(SharedServerTestCase):
    """An accepted domain that no send connector covers (here the only one serves
    partner.test): mail for it could only bounce after a 250, so RCPT gets 451 4.4.4 and
    the server log names the domain (DESIGN §5)."""
    CONFIG = config_text(send_connectors=[{"name": "to-partner", "address_spaces": ["partner.test"],
                                           "smart_hosts": ["127.0.0.1:9"]}])

    def test_rcpt_gets_451_444_and_the_server_log_says_why(self):
        c = self.tls_session()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("451 4.4.4", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("554", "DATA")
        c.expect("221", "QUIT")
        wait_until(lambda: f"accepted domain {ACCEPTED_DOMAIN} has no route" in self.server.stderr_text(), 10,
                   what="the server-log line about the unrouted domain")


class RelayDenied(SharedServerTestCase):
    """The default connector (0.0.0.0/0, anonymous_users, no accept_any_recipient)."""

    def test_recipient_outside_accepted_domains_gets_550_571(self):
        c = self.tls_session()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("550 5.7.1 Relay access denied", "RCPT TO:<carol@elsewhere.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("221", "QUIT")

    def test_subdomain_of_accepted_domain_is_not_ours(self):
        c = self.tls_session()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("550 5.7.1", f"RCPT TO:<carol@sub.{ACCEPTED_DOMAIN}>")


class RelayAllowedOnLoopbackConnector(SharedServerTestCase):
    """accept_any_recipient on a connector limited to 127.0.0.0/8: not an open relay,
    so the configuration is valid and loopback clients may relay."""
    CONFIG = config_text([connector(remote_ip_ranges=["127.0.0.0/8"],
                                    accept_any_recipient=True)])

    def test_any_recipient_is_accepted_and_queued(self):
        c = self.tls_session()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", "RCPT TO:<carol@elsewhere.test>")
        c.expect("354", "DATA")
        c.send_raw(message(100, rcpt="carol@elsewhere.test") + ".\r\n")
        c.expect("250")
        c.expect("221", "QUIT")


class SizeLimit(SharedServerTestCase):
    CONFIG = config_text([connector(max_message_size="64KB")])

    def test_size_is_advertised(self):
        c = self.smtp()
        lines = c.hello()
        self.assertIn("SIZE 65536", [l[4:] for l in lines], lines)

    def test_mail_with_size_over_limit_gets_552_534(self):
        c = self.smtp()
        c.hello()
        c.expect("552 5.3.4", "MAIL FROM:<alice@client.test> SIZE=200000")
        c.expect("250", "MAIL FROM:<alice@client.test> SIZE=1000")

    def test_body_over_limit_gets_552_534_at_end_of_data(self):
        c = self.smtp()
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw(message(100 * 1024) + ".\r\n")
        c.expect("552 5.3.4")
        # the session goes on: a message within the limit is accepted afterwards
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw(message(1024) + ".\r\n")
        c.expect("250")


class RecipientLimit(SharedServerTestCase):
    CONFIG = config_text([connector(max_recipients=3)])

    def test_recipient_over_limit_gets_452_453(self):
        c = self.smtp()
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        for i in range(3):
            c.expect("250", f"RCPT TO:<user{i}@{ACCEPTED_DOMAIN}>")
        c.expect("452 4.5.3", f"RCPT TO:<user3@{ACCEPTED_DOMAIN}>")
        # the three accepted recipients still make a message
        c.expect("354", "DATA")
        c.send_raw(message(100) + ".\r\n")
        c.expect("250")


class HopCount(SharedServerTestCase):
    CONFIG = config_text([connector(max_hop_count=5)])

    def send(self, received):
        c = self.smtp()
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw(message(100, received=received) + ".\r\n")
        return c

    def test_more_received_headers_than_max_hop_count_get_554_546(self):
        self.send(6).expect("554 5.4.6")

    def test_exactly_max_hop_count_is_accepted(self):
        self.send(5).expect("250")


class PerSourceConnectionLimit(SharedServerTestCase):
    CONFIG = config_text([connector(max_inbound_connections_per_source=2)])

    def test_third_connection_from_one_address_gets_421_470(self):
        first, second = self.smtp(), self.smtp()
        first.expect("220")
        second.expect("220")
        third = self.smtp()
        third.expect("421 4.7.0")
        self.assertTrue(third.closed_by_peer(10), "server kept the refused connection open")
        # the two sessions that were let in still work
        first.expect("250", "EHLO one.client.postern.test")
        second.expect("250", "EHLO two.client.postern.test")
        # once one leaves, a new client is let in (the server notices the close; bounded)
        first.expect("221", "QUIT")
        first.close()

        def admitted():
            c = SmtpConn("127.0.0.1", self.server.port())
            try:
                code, lines = c.reply()
                if code == 220:
                    c.cmd("QUIT")
                    return True
                return False
            finally:
                c.close()
        wait_until(admitted, 10, interval=0.1, what="a fourth client to be admitted")


class InactivityTimeout(SharedServerTestCase):
    CONFIG = config_text([connector(connection_inactivity_timeout="2s")])

    def test_idle_client_gets_421_442_and_is_disconnected(self):
        c = self.smtp(timeout=15)
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        # say nothing more; the server must speak first (the read is bounded at 15 s)
        lines = c.expect("421 4.4.2")
        self.assertTrue(c.closed_by_peer(5), "connection left open after 421 4.4.2")

    def test_active_client_is_not_cut(self):
        # a command every second keeps the session alive well past the 2 s timeout
        c = self.smtp(timeout=15)
        c.hello()
        start = time.monotonic()
        while time.monotonic() - start < 5:
            c.expect("250", "NOOP")
            # the server must stay silent between commands (bounded 1 s read)
            c.sock.settimeout(1.0)
            try:
                data = c.sock.recv(100)
                self.fail(f"server spoke unprompted: {data!r}")
            except TimeoutError:
                pass
            c.sock.settimeout(15)
        c.expect("221", "QUIT")


if __name__ == "__main__":
    unittest.main()

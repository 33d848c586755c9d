"""A next hop that speaks only TLS 1.0 (Domino 8.5, unpatched Exchange 2010; DESIGN.md §1,
§3 opportunistic sending, §7: such a peer needs OpenSSL security level 0).

Postern never goes below TLS 1.2, so the handshake fails:
- with require_tls the message is never sent: it stays queued, and the send log says
  why (the failed handshake, verdict=fail);
- opportunistic (require_tls = false): the next attempt goes in plaintext at once, and the
  send log says "TLS failed (<reason>); sent in plaintext".
"""

import ssl
import unittest
import warnings

from delivery_fakes import (DELIVERY_TIMEOUT, NextHop, connector_lines, queued_recipient,
                            relay_connector, require_delivery, submit)
from postern_testlib import (SERVER_NAME, PosternTestCase, SmtpConn, config_text,
                             hold_send_connector, wait_until)


class Tls10NextHop(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.required_hop = NextHop("tls1.0")
        self.addCleanup(self.required_hop.stop)
        self.opportunistic_hop = NextHop("tls1.0")
        self.addCleanup(self.opportunistic_hop.stop)
        self.a = self.start(config_text([relay_connector()], queue={"retry": ["1m"]}, send_connectors=[
            {"name": "to-domino-required", "address_spaces": ["required.test"],
             "smart_hosts": [f"127.0.0.1:{self.required_hop.port}"],
             "require_tls": True, "tls_auth_level": "domain_validation", "tls_domain": SERVER_NAME},
            {"name": "to-domino-opportunistic", "address_spaces": ["opportunistic.test"],
             "smart_hosts": [f"127.0.0.1:{self.opportunistic_hop.port}"]},
            hold_send_connector()]))
        require_delivery(self, self.a)

    def handshake_failures(self, name):
        """The verdict lines of failed handshakes (DESIGN §6: the TLS outcome with the reason)."""
        return [l for l in connector_lines(self.a, name)
                if l.startswith("TLS not used") and "reason=TLS handshake failed" in l]

    def test_the_fake_really_speaks_tls_1_0_only(self):
        c = SmtpConn("127.0.0.1", self.required_hop.port)
        self.addCleanup(c.close)
        c.hello()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        c.starttls(ctx)
        self.assertEqual(c.sock.version(), "TLSv1")

    def test_require_tls_never_sends_and_keeps_the_message(self):
        submit(self.a, "bob@required.test", "to a TLS 1.0 peer")
        wait_until(lambda: self.handshake_failures("to-domino-required"), DELIVERY_TIMEOUT,
                   what="the failed handshake in the send log")
        line = self.handshake_failures("to-domino-required")[0]
        self.assertIn("achieved=none required=domain_validation; verdict=fail", line)
        self.assertRegex(line, r"reason=.*(protocol|version)", line)
        self.assertEqual(self.required_hop.received(), [])
        self.assertEqual(self.required_hop.mail_commands, 0)
        lines = connector_lines(self.a, "to-domino-required")
        self.assertFalse(any(l.startswith("MAIL FROM") for l in lines))
        # Still queued, waiting for the next attempt, with the reason (queue list --json).
        rcpt = wait_until(lambda: (queued_recipient(self.a, "bob@required.test") or {}).get("attempts")
                          and queued_recipient(self.a, "bob@required.test"), DELIVERY_TIMEOUT,
                          what="the attempt recorded in the queue")
        self.assertEqual(rcpt["state"], "pending")
        self.assertIn("TLS handshake failed", rcpt["last_reply"])

    def test_opportunistic_sends_in_plaintext_after_the_failed_handshake(self):
        mid = submit(self.a, "carol@opportunistic.test", "opportunistic to a TLS 1.0 peer")
        hop = self.opportunistic_hop
        wait_until(hop.received, DELIVERY_TIMEOUT, what="the plaintext delivery")
        self.assertEqual(hop.message_ids(), [mid])
        tls, _, rcpts, _ = hop.received()[0]
        self.assertIsNone(tls)
        self.assertEqual(rcpts, ["RCPT TO:<carol@opportunistic.test>"])
        name = "to-domino-opportunistic"
        wait_until(lambda: any("sent in plaintext" in l for l in connector_lines(self.a, name)),
                   DELIVERY_TIMEOUT, what="the plaintext fallback line")
        fallback = [l for l in connector_lines(self.a, name) if "sent in plaintext" in l][0]
        self.assertRegex(fallback, r"^TLS failed \(.+\); sent in plaintext$")
        self.assertRegex(fallback, r"(protocol|version)")
        self.assertTrue(self.handshake_failures(name), "the failed handshake itself is logged")


if __name__ == "__main__":
    unittest.main()

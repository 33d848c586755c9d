"""MX routing end to end (DESIGN.md §3 MX routing, [dns] resolver / mx_port; §5 null MX).

A private unbound on a free loopback port serves test zones; Postern asks only it
([dns] resolver = "127.0.0.1:PORT") and connects to MX hosts on mx_port, the one port
every fake next hop listens on (each on its own 127.0.0.x address):

  pref.test      MX 10 mx1 (127.0.0.2: nothing listens), MX 20 mx2 (127.0.0.3)
                 -> the preferred host is down, the next one gets the message
  order.test     MX 10 (127.0.0.4), MX 20 (127.0.0.3) -> only the preferred one gets it
  nodata.test    no MX, A 127.0.0.5 (NODATA for MX) -> the A fallback gets it
  servfail.test  the server refuses -> SERVFAIL: deferred, stays queued, reason logged
  nullmx.test    MX 0 . (RFC 7505) -> bounced with 556 5.1.10: the DSN goes to the
                 sender's domain (client.test, a smart host fake)
"""

import email
import email.policy
import os
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, NextHop, Unbound, hops_on_one_port,
                            queued_recipient, relay_connector, require_delivery, send_log_rows,
                            submit)
from postern_testlib import PosternTestCase, config_text, require_tool, wait_until

ZONES = """
  local-zone: "pref.test." static
  local-data: "pref.test. MX 10 mx1.pref.test."
  local-data: "pref.test. MX 20 mx2.pref.test."
  local-data: "mx1.pref.test. A 127.0.0.2"
  local-data: "mx2.pref.test. A 127.0.0.3"

  local-zone: "order.test." static
  local-data: "order.test. MX 10 mx1.order.test."
  local-data: "order.test. MX 20 mx2.order.test."
  local-data: "mx1.order.test. A 127.0.0.4"
  local-data: "mx2.order.test. A 127.0.0.3"

  local-zone: "nodata.test." static
  local-data: "nodata.test. A 127.0.0.5"

  local-zone: "servfail.test." refuse

  local-zone: "nullmx.test." static
  local-data: "nullmx.test. MX 0 ."
"""

MX_DOMAINS = ["pref.test", "order.test", "nodata.test", "servfail.test", "nullmx.test"]


class MxRouting(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.exists("/usr/sbin/unbound"):
            require_tool("unbound")
        cls.dns = Unbound(ZONES)

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()

    def setUp(self):
        super().setUp()
        self.mx_port, self.hops = hops_on_one_port({
            "127.0.0.3": "no-starttls", "127.0.0.4": "no-starttls", "127.0.0.5": "server"})
        for h in self.hops.values():
            self.addCleanup(h.stop)
        self.sender_hop = NextHop("no-starttls")
        self.addCleanup(self.sender_hop.stop)
        self.a = self.start(config_text(
            [relay_connector()],
            queue={"retry": ["1m"]},
            debug={"smtp_client_debug": True},
            send_connectors=[
                {"name": "by-mx", "address_spaces": MX_DOMAINS},
                {"name": "to-sender", "address_spaces": ["client.test"],
                 "smart_hosts": [f"127.0.0.1:{self.sender_hop.port}"]}],
            extra=f'\n[dns]\nresolver = "127.0.0.1:{self.dns.port}"\nmx_port = {self.mx_port}\n'))
        require_delivery(self, self.a)

    def rcpts_at(self, address):
        return [r for r, _ in self.hops[address].rcpts()]

    def test_the_next_preference_gets_it_when_the_preferred_host_is_down(self):
        mid = submit(self.a, "bob@pref.test", "preferred host down")
        wait_until(lambda: self.rcpts_at("127.0.0.3"), DELIVERY_TIMEOUT, what="mx2.pref.test to get it")
        self.assertEqual(self.hops["127.0.0.3"].message_ids(), [mid])
        # mx1 was tried first: its failed connect is in the send log, before mx2's session.
        def both_sessions_logged():
            rows = [r for r in send_log_rows(self.a) if r["connector-id"] == "by-mx"]
            ends = {r["remote-endpoint"] for r in rows if r["event"] == "-"}
            return rows if {f"127.0.0.2:{self.mx_port}", f"127.0.0.3:{self.mx_port}"} <= ends else None
        rows = wait_until(both_sessions_logged, DELIVERY_TIMEOUT, what="both sessions in the send log")
        first_down = next(i for i, r in enumerate(rows)
                          if r["remote-endpoint"] == f"127.0.0.2:{self.mx_port}")
        first_up = next(i for i, r in enumerate(rows)
                        if r["remote-endpoint"] == f"127.0.0.3:{self.mx_port}")
        self.assertLess(first_down, first_up)
        self.assertTrue(any("connect to mx1.pref.test failed" in r["data"] for r in rows))

    def test_mx_preference_order(self):
        mid = submit(self.a, "carol@order.test", "preference order")
        wait_until(lambda: self.rcpts_at("127.0.0.4"), DELIVERY_TIMEOUT, what="mx1.order.test to get it")
        self.assertEqual(self.hops["127.0.0.4"].message_ids(), [mid])
        self.assertNotIn("carol@order.test", self.rcpts_at("127.0.0.3"))

    def test_a_fallback_on_nodata(self):
        mid = submit(self.a, "dave@nodata.test", "A fallback")
        wait_until(lambda: self.rcpts_at("127.0.0.5"), DELIVERY_TIMEOUT, what="nodata.test's A host to get it")
        self.assertEqual(self.hops["127.0.0.5"].message_ids(), [mid])
        # opportunistic STARTTLS to the A host (the fake offers it)
        self.assertIn(self.hops["127.0.0.5"].rcpts()[0][1], ("TLSv1.2", "TLSv1.3"))

    def test_servfail_defers(self):
        submit(self.a, "erin@servfail.test", "servfail")
        # Deferred with the reason: in the queue listing and in the client debug log.
        rcpt = wait_until(lambda: (queued_recipient(self.a, "erin@servfail.test") or {}).get("attempts")
                          and queued_recipient(self.a, "erin@servfail.test"), DELIVERY_TIMEOUT,
                          what="the deferred attempt in the queue")
        self.assertEqual(rcpt["state"], "pending")
        self.assertIn("SERVFAIL", rcpt["last_reply"])
        self.assertTrue(any("erin@servfail.test" in l and "deferred" in l and "SERVFAIL" in l
                            for l in self.a.stderr_text().splitlines()), self.a.stderr_text())
        # Nothing was connected to, nothing bounced.
        self.assertFalse(any(r["connector-id"] == "by-mx" for r in send_log_rows(self.a)))
        self.assertEqual(self.sender_hop.received(), [])

    def test_null_mx_bounces_with_556_5_1_10(self):
        mid = submit(self.a, "frank@nullmx.test", "null MX")
        wait_until(self.sender_hop.received, DELIVERY_TIMEOUT, what="the DSN at the sender's next hop")
        _, mail_from, rcpts, data = self.sender_hop.received()[0]
        self.assertTrue(mail_from.startswith("MAIL FROM:<>"), mail_from)
        self.assertEqual(rcpts, ["RCPT TO:<alice@client.test>"])
        msg = email.message_from_string(data, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        status = [p for p in msg.iter_parts() if p.get_content_type() == "message/delivery-status"][0].as_string()
        self.assertRegex(status, r"(?m)^Final-Recipient: rfc822; frank@nullmx\.test")
        self.assertRegex(status, r"(?m)^Action: failed")
        self.assertRegex(status, r"(?m)^Status: 5\.1\.10")
        self.assertRegex(status, r"(?m)^Diagnostic-Code: smtp; 556 5\.1\.10")
        self.assertIn(mid, data)
        self.assertFalse(any(r["connector-id"] == "by-mx" for r in send_log_rows(self.a)))
        for hop in self.hops.values():
            self.assertEqual(hop.mail_commands, 0)


if __name__ == "__main__":
    unittest.main()

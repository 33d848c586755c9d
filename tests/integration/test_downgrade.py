"""Downgrade memory (DESIGN §3 downgrade_protection, §4 `postern policy`).

Each domain has two MX hosts: MX 10 in its signed zone with a matching TLSA record
(DANE-EE), MX 20 in an unsigned zone (no DANE possible there). The first message goes to
MX 10 and is authenticated by DANE, which the memory keeps. Then MX 10 stops listening, so
the next message can only reach MX 20 with opportunistic TLS:
  dgenforce.test  downgrade_protection = "enforce": deferred, MX 20 gets nothing; after
                  `postern policy forget` (with --dry-run first) and `queue retry` it is
                  delivered to MX 20
  dgreport.test   downgrade_protection = "report" (the default): delivered to MX 20, and
                  the send log and `postern policy report` say what enforce would have held
"""

import json
import unittest

from delivery_fakes import DELIVERY_TIMEOUT, hops_on_one_port, queued_recipient, relay_connector, require_delivery, submit
from dnssec_lab import DnssecLab, Zone
from postern_testlib import PosternTestCase, config_text, pki, wait_until
from test_dane import der_sha256

HOPS = {"127.0.0.41": "selfsigned", "127.0.0.42": "selfsigned",   # dgenforce.test MX 10, MX 20
        "127.0.0.43": "selfsigned", "127.0.0.44": "selfsigned"}   # dgreport.test MX 10, MX 20


def zones():
    ee = der_sha256(pki().path("selfsigned.pem"), True)
    return [
        Zone("dgenforce.test", ["@ IN MX 10 mx1", "@ IN MX 20 mx.dgplain.test.", "mx1 IN A 127.0.0.41",
                                f"_25._tcp.mx1 IN TLSA 3 1 1 {ee}"]),
        Zone("dgreport.test", ["@ IN MX 10 mx1", "@ IN MX 20 mx2.dgplain.test.", "mx1 IN A 127.0.0.43",
                               f"_25._tcp.mx1 IN TLSA 3 1 1 {ee}"]),
        Zone("dgplain.test", ["mx IN A 127.0.0.42", "mx2 IN A 127.0.0.44"], kind="unsigned"),
    ]


class DowngradeMemory(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.port, cls.hops = hops_on_one_port(HOPS)
        try:
            cls.lab = DnssecLab(zones())
        except BaseException:
            for h in cls.hops.values():
                h.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        for h in cls.hops.values():
            h.stop()
        cls.lab.stop()

    def received(self, address, rcpt):
        return [r for r, _ in self.hops[address].rcpts() if r == rcpt]

    def policy(self, sender, *args):
        return sender.cli("policy", *args[:1], "-c", sender.config_file, *args[1:])

    def test_a_domain_seen_with_dane_that_offers_less_is_deferred_or_reported(self):
        sender = self.start(config_text(
            [relay_connector()],
            server={"hostname": "sender.postern.test"},
            queue={"retry": ["10m"]},
            send_connectors=[
                # No idle connection may carry the second message to MX 10 after it stopped.
                {"name": "enforcing", "address_spaces": ["dgenforce.test"], "downgrade_protection": "enforce",
                 "connection_cache_time": "0s"},
                {"name": "reporting", "address_spaces": ["dgreport.test"], "connection_cache_time": "0s"}],
            extra=f'\n[dns]\nunbound_config = "{self.lab.unbound_config()}"\nmx_port = {self.port}\n'))
        require_delivery(self, sender)
        submit(sender, "first@dgenforce.test", "first")
        submit(sender, "first@dgreport.test", "first")
        wait_until(lambda: self.received("127.0.0.41", "first@dgenforce.test"), DELIVERY_TIMEOUT, what="first, enforce")
        wait_until(lambda: self.received("127.0.0.43", "first@dgreport.test"), DELIVERY_TIMEOUT, what="first, report")

        shown = wait_until(lambda: (p := self.policy(sender, "show", "dgenforce.test", "--json")).returncode == 0
                           and json.loads(p.stdout), DELIVERY_TIMEOUT, what="the remembered entry")
        self.assertEqual(shown["verdict"], "dane-ee")
        self.assertEqual(shown["mx"], "mx1.dgenforce.test")

        # MX 10 goes away: only the MX without DANE is left.
        self.hops["127.0.0.41"].stop()
        self.hops["127.0.0.43"].stop()
        submit(sender, "second@dgenforce.test", "second")
        submit(sender, "second@dgreport.test", "second")

        wait_until(lambda: self.received("127.0.0.44", "second@dgreport.test"), DELIVERY_TIMEOUT,
                   what="report: delivered to MX 20")
        report = json.loads(self.policy(sender, "report", "--json").stdout)
        entry = next(d for d in report["domains"] if d["domain"] == "dgreport.test")
        self.assertEqual(entry["events"][-1]["action"], "reported")
        self.assertEqual(entry["events"][-1]["verdict"], "opportunistic")
        self.assertIn("dgreport.test", self.policy(sender, "report").stdout)

        held = wait_until(lambda: (r := queued_recipient(sender, "second@dgenforce.test")) and r.get("attempts") and r,
                          DELIVERY_TIMEOUT, what="enforce: an attempt")
        self.assertEqual(held["state"], "pending")
        self.assertIn("downgrade: dgenforce.test was reached with dane-ee at mx1.dgenforce.test", held["last_reply"])
        self.assertEqual(self.received("127.0.0.42", "second@dgenforce.test"), [])
        log = "".join(r["data"] for r in sender.protocol_log("smtp-send").rows())
        self.assertIn("offers only opportunistic; deferred", log)
        self.assertIn("delivered (downgrade_protection = \"report\": enforce would defer)", log)

        dry = self.policy(sender, "forget", "dgenforce.test", "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn("would forget dgenforce.test", dry.stdout)
        self.assertEqual(self.policy(sender, "show", "dgenforce.test", "--json").returncode, 0)
        forgot = self.policy(sender, "forget", "dgenforce.test")
        self.assertIn("forgot dgenforce.test (dane-ee at mx1.dgenforce.test)", forgot.stdout)
        self.assertEqual(json.loads(self.policy(sender, "show", "dgenforce.test", "--json").stdout), None)
        self.assertEqual(self.policy(sender, "forget", "dgenforce.test").returncode, 1)
        sender.queue("retry")
        wait_until(lambda: self.received("127.0.0.42", "second@dgenforce.test"), DELIVERY_TIMEOUT,
                   what="enforce: delivered once forgotten")
        self.assertIn("policy forget dgenforce.test", sender.stderr_text())


if __name__ == "__main__":
    unittest.main()

"""The DNSSEC lab (dnssec_lab.py) and what Postern's validating resolver makes of it.

nsd serves zones signed with ldns-signzone; Postern's libunbound gets the lab's trust
anchors through [dns] unbound_config. First the lab itself, checked with drill's chase of
the signature chain: a signed zone validates, a record altered after signing and a zone
whose signatures expired do not. Then through Postern (DESIGN §3 domain_validation: an
MX host name counts only when the MX answer was DNSSEC-secure): the next hop's
certificate names only mx.postern.test, which is the MX of two domains,
  good.test   signed: the MX answer is secure, so mx.postern.test is a name the
              certificate may carry: delivered under domain_validation
  plain.test  unsigned: the same MX name from insecure DNS proves nothing: deferred
"""

import os
import subprocess
import unittest

from delivery_fakes import DELIVERY_TIMEOUT, free_udp_tcp_port, queued_recipient, relay_connector, submit
from dnssec_lab import DnssecLab, Zone
from postern_testlib import PosternTestCase, config_text, connector, hold_send_connector, wait_until

ZONES = [
    Zone("postern.test", ["mx IN A 127.0.0.1"]),
    Zone("good.test", ["@ IN MX 10 mx.postern.test.", "_25._tcp.mx IN TLSA 3 1 1 " + "ab" * 32]),
    Zone("bad.test", ["mx IN A 127.0.0.1", "_25._tcp.mx IN TLSA 3 1 1 " + "cd" * 32],
         tamper=("cdcdcdcd", "efefefef")),
    Zone("old.test", ["mx IN A 127.0.0.1"], expired=True),
    Zone("plain.test", ["@ IN MX 10 mx.postern.test."], kind="unsigned"),
]


class DnssecLabTest(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.lab = DnssecLab(ZONES)

    @classmethod
    def tearDownClass(cls):
        cls.lab.stop()

    def chase(self, zone, name, rrtype):
        anchor = self.lab.path(f"anchor-{zone}")
        with open(anchor, "w") as f:
            f.write(next(z.ds for z in self.lab.zones if z.name == zone + ".") + "\n")
        return subprocess.run(["drill", "-S", "-k", anchor, "-p", str(self.lab.port), "@127.0.0.1", name, rrtype],
                               capture_output=True, text=True, timeout=30)

    def test_signed_zones_validate_and_broken_ones_do_not(self):
        good = self.chase("good.test", "good.test", "MX")
        self.assertIn("Chase successful", good.stdout, good.stdout + good.stderr)
        bad = self.chase("bad.test", "_25._tcp.mx.bad.test", "TLSA")
        self.assertIn("Bogus DNSSEC signature", bad.stdout + bad.stderr)
        old = self.chase("old.test", "mx.old.test", "A")
        self.assertNotIn("Chase successful", old.stdout)

    def test_a_secure_mx_name_counts_for_domain_validation_and_an_insecure_one_does_not(self):
        port = free_udp_tcp_port()
        hop = self.start(config_text([connector(name="mx", bind=[f"127.0.0.1:{port}"])],
                                     server={"accepted_domains": ["good.test", "plain.test"]}))
        sender = self.start(config_text(
            [relay_connector()],
            server={"hostname": "sender.postern.test"},   # not the MX name, or it would be a loop
            queue={"retry": ["1m"]},
            send_connectors=[{"name": "by-mx", "address_spaces": ["good.test", "plain.test"],
                              "require_tls": True, "tls_auth_level": "domain_validation"}],
            extra=f'\n[dns]\nunbound_config = "{self.lab.unbound_config()}"\nmx_port = {port}\n'))
        submit(sender, "alice@good.test", "secure mx")
        submit(sender, "bob@plain.test", "insecure mx")
        wait_until(lambda: any(r["address"] == "alice@good.test" for m in hop.queue_list() or []
                               for r in m["recipients"]), DELIVERY_TIMEOUT, what="alice at the next hop")
        bob = wait_until(lambda: (r := queued_recipient(sender, "bob@plain.test")) and r.get("attempts", 0) > 0 and r,
                         DELIVERY_TIMEOUT, what="a failed attempt for bob")
        self.assertEqual(bob["state"], "pending")
        self.assertIn("mx.postern.test", bob.get("last_reply", "") + bob.get("reason", ""))
        self.assertFalse(any(r["address"] == "bob@plain.test" for m in hop.queue_list() or [] for r in m["recipients"]))


if __name__ == "__main__":
    unittest.main()

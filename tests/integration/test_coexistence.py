"""Coexistence routing with recipient lists (DESIGN §3 [[accepted_domain]], send connector
recipients; README "Coexistence").

Three real servers: two Postern instances stand for Domino and Exchange (each takes mail for
corp.test and keeps it in its queue), and the Postern under test sits in front with
corp.test authoritative (users.txt) and a migrated-users list that sends Alice to Exchange
while everyone else still goes to Domino.

- An address in neither directory gets 550 5.1.1 at RCPT; a known one 250.
- Mail for Alice reaches Exchange, mail for Bob reaches Domino; `postern route` says which
  connector and why, answered by the running server (or read from the files when none runs).
- Bob moves: the list is replaced by a rename and reloaded; his next message goes to
  Exchange, and the message sent before the move stays where it went.
- A half-written list (no final newline) or a bad line is refused by reload with its line
  number (exit 1) and the list in force stays.
"""

import json
import os
import unittest

from delivery_fakes import submit
from postern_testlib import (PosternTestCase, SmtpConn, config_text, connector, hold_send_connector, run,
                             postern_bin, wait_until)

DELIVERY_TIMEOUT = 30


class Coexistence(PosternTestCase):

    def setUp(self):
        super().setUp()
        # Domino and Exchange: they take corp.test and keep what they get.
        self.domino = self.start(config_text([connector(name="domino", tls="none")],
                                             server={"accepted_domains": ["corp.test"]}))
        self.exchange = self.start(config_text([connector(name="exchange", tls="none")],
                                               server={"accepted_domains": ["corp.test"]}))
        self.front = self.start(config_text(
            [connector(name="inbound", tls="none")],
            server={"accepted_domains": []},
            send_connectors=[
                {"name": "to-domino", "address_spaces": ["corp.test"],
                 "smart_hosts": [f"127.0.0.1:{self.domino.port()}"]},
                {"name": "to-exchange", "recipients": "migrated.txt",
                 "smart_hosts": [f"127.0.0.1:{self.exchange.port()}"]},
                hold_send_connector()],
            extra='\n[[accepted_domain]]\nname = "corp.test"\ntype = "authoritative"\nrecipients = "users.txt"\n'),
            before_start=self.write_lists)

    def write_lists(self, base):
        self.base = base
        self.put("users.txt", "alice@corp.test\nbob@corp.test\ncarol@corp.test\n")
        self.put("migrated.txt", "# batch 1\nalice@corp.test\n")

    def put(self, name, text):
        """Written to a temporary name, then renamed: what the README tells administrators."""
        tmp = os.path.join(self.base, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.base, name))

    def send(self, rcpt, subject):
        submit(self.front, rcpt, subject, sender="partner@elsewhere.test", size=100)

    def arrived(self, server, rcpt):
        return wait_until(lambda: any(r["address"] == rcpt for m in server.queue_list() or [] for r in m["recipients"]),
                          DELIVERY_TIMEOUT, what=f"{rcpt} at {server.base}")

    def route(self, address):
        p = run([postern_bin(), "route", "-c", self.front.config_file, address, "--json"])
        return json.loads(p.stdout)

    def test_unknown_users_are_refused_and_known_ones_routed_by_list(self):
        c = SmtpConn("127.0.0.1", self.front.port())
        c.hello()
        c.expect("250", "MAIL FROM:<partner@elsewhere.test>")
        c.expect("550 5.1.1", "RCPT TO:<nobody@corp.test>")
        c.expect("550 5.1.1", "RCPT TO:<NOBODY@CORP.TEST>")
        c.expect("250", "RCPT TO:<Carol@Corp.Test>")
        c.expect("250", "RCPT TO:<postmaster@corp.test>")
        c.expect("221", "QUIT")
        c.close()

        self.send("alice@corp.test", "for alice")
        self.send("bob@corp.test", "for bob")
        self.arrived(self.exchange, "alice@corp.test")
        self.arrived(self.domino, "bob@corp.test")
        self.assertFalse(any(r["address"] == "alice@corp.test"
                             for m in self.domino.queue_list() or [] for r in m["recipients"]))

        r = self.route("Alice@corp.test")
        self.assertEqual(r["connector"], "to-exchange")
        self.assertIn("listed in", r["why"])
        self.assertEqual(r["recipient"], "known")
        self.assertEqual(r["source"], "answered by the running server")
        r = self.route("bob@corp.test")
        self.assertEqual((r["connector"], r["why"]), ("to-domino", 'address space "corp.test" (exact domain)'))
        self.assertEqual(self.route("nobody@corp.test")["recipient"], "unknown")
        text = run([postern_bin(), "route", "-c", self.front.config_file, "alice@corp.test"]).stdout
        self.assertIn('send connector "to-exchange": listed in', text)

    def test_moving_a_user_takes_effect_at_reload_and_bad_lists_are_refused(self):
        self.send("bob@corp.test", "before the move")
        self.arrived(self.domino, "bob@corp.test")

        self.put("migrated.txt", "# batch 1\nalice@corp.test\n# batch 2\nbob@corp.test\n")
        p = run([postern_bin(), "reload", "-c", self.front.config_file])
        self.assertIn("reloaded", p.stdout)
        self.assertEqual(self.route("bob@corp.test")["connector"], "to-exchange")
        self.send("bob@corp.test", "after the move")
        self.arrived(self.exchange, "bob@corp.test")
        # The message sent before the move stays at Domino; nothing went twice.
        self.assertEqual(sum(1 for m in self.domino.queue_list() for r in m["recipients"]
                             if r["address"] == "bob@corp.test"), 1)
        self.assertEqual(sum(1 for m in self.exchange.queue_list() for r in m["recipients"]
                             if r["address"] == "bob@corp.test"), 1)

        # Half-written and bad lists: reload refuses with the line, the list in force stays.
        with open(os.path.join(self.base, "migrated.txt"), "w") as f:
            f.write("alice@corp.test\nbob@corp.te")
        p = run([postern_bin(), "reload", "-c", self.front.config_file], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("migrated.txt: does not end with a newline", p.stderr)
        self.put("migrated.txt", "alice@corp.test\nbob corp.test\n")
        p = run([postern_bin(), "reload", "-c", self.front.config_file], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn('migrated.txt:2: "bob corp.test" is not an address', p.stderr)
        self.assertEqual(self.route("bob@corp.test")["connector"], "to-exchange")

        # With no server, route reads the files: a broken list is reported, a good one used.
        self.front.stop()
        p = run([postern_bin(), "route", "-c", self.front.config_file, "carol@corp.test"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn('migrated.txt:2: "bob corp.test" is not an address', p.stderr)
        self.put("migrated.txt", "alice@corp.test\nbob@corp.test\n")
        r = self.route("carol@corp.test")
        self.assertEqual(r["connector"], "to-domino")
        self.assertIn("no server is running", r["source"])


if __name__ == "__main__":
    unittest.main()

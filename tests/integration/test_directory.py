"""Recipients checked and routed through an LDAP directory (DESIGN §3 [[ldap_source]];
README "Coexistence").

A private slapd (slapd_fixture: its own database, StartTLS with a certificate from
Postern's lab CA, searches only after the service account's bind) holds the people of
corp.test: Alice by `mail`, Bob by Active Directory's `proxyAddresses` (SMTP:/smtp:
prefixes), Carol and Dave by `mail`. Alice is marked migrated (businessCategory), so a
second source with its own filter sends her to "Exchange"; everyone else goes to "Domino".
Both next hops are Postern instances that keep what they get.

- Known addresses (either attribute, any case) get 250; unknown ones, and addresses that
  would widen an unescaped filter (`*`, `)(`), get 550 5.1.1; postmaster is always known.
- Mail for Alice reaches Exchange and mail for Bob Domino; `postern route` says why.
- Directory outage: an address never asked gets 451 4.4.3 (never 550, never accepted); a
  cached answer is used while younger than max_stale (and the protocol log says so); a
  message whose next hop depends on the directory waits in the queue, and once slapd is
  back it goes to the right place exactly once.
- `config check` finds ldap:// with StartTLS and ldaps:// sources reachable, and warns
  about a source it cannot reach, whose certificate it cannot verify or whose bind fails,
  and about a password file others may read, with the reason.
"""

import json
import os
import unittest

from delivery_fakes import submit
from postern_testlib import (PosternTestCase, SmtpConn, config_text, connector, hold_send_connector, postern_bin,
                             run, wait_until)
from slapd_fixture import Slapd, person

DELIVERY_TIMEOUT = 30


def people():
    migrated = "businessCategory: exchange\n"
    return (person("alice", mail="alice@corp.test").replace("\n\n", "\n" + migrated + "\n")
            + person("bob", proxies=["SMTP:bob@corp.test", "smtp:robert@corp.test", "X400:c=US;a= ;p=Corp;s=Bob"])
            + person("carol", mail="carol@corp.test")
            + person("dave", mail="dave@corp.test"))


class DirectoryRecipients(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.slapd = Slapd(people()).start()
        self.addCleanup(self.slapd.remove_files)
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
                {"name": "to-exchange", "recipients_ldap": "migrated",
                 "smart_hosts": [f"127.0.0.1:{self.exchange.port()}"]},
                hold_send_connector()],
            extra='\n[[accepted_domain]]\nname = "corp.test"\ntype = "authoritative"\n'
                  'recipients_ldap = "corp-directory"\n'
                  + self.slapd.source_toml(extra='positive_ttl = "1s"\nnegative_ttl = "1s"\n')
                  + self.slapd.source_toml(name="migrated", filter="(&(mail=%s)(businessCategory=exchange))",
                                           attributes=("mail",))))

    def rcpt_replies(self, addresses):
        c = SmtpConn("127.0.0.1", self.front.port())
        try:
            c.hello()
            c.expect("250", "MAIL FROM:<partner@elsewhere.test>")
            out = {}
            for a in addresses:
                c.send(f"RCPT TO:<{a}>")
                out[a] = c.reply()[1][-1]
            c.expect("221", "QUIT")
            return out
        finally:
            c.close()

    def arrived(self, server, rcpt, count=1):
        return wait_until(lambda: sum(1 for m in server.queue_list() or [] for r in m["recipients"]
                                      if r["address"] == rcpt) >= count,
                          DELIVERY_TIMEOUT, what=f"{rcpt} at {server.base}")

    def held_at(self, server, rcpt):
        return sum(1 for m in server.queue_list() or [] for r in m["recipients"] if r["address"] == rcpt)

    def route(self, address):
        return json.loads(run([postern_bin(), "route", "-c", self.front.config_file, address, "--json"]).stdout)

    def test_directory_decides_who_exists_and_where_they_go(self):
        replies = self.rcpt_replies(["alice@corp.test", "ALICE@Corp.Test", "bob@corp.test", "Robert@CORP.test",
                                     "nobody@corp.test", "*@corp.test", "al*@corp.test", "\"x)(mail=*\"@corp.test",
                                     "postmaster@corp.test"])
        self.assertEqual(replies, {"alice@corp.test": "250 2.1.5 Recipient OK",
                                   "ALICE@Corp.Test": "250 2.1.5 Recipient OK",
                                   "bob@corp.test": "250 2.1.5 Recipient OK",
                                   "Robert@CORP.test": "250 2.1.5 Recipient OK",
                                   "nobody@corp.test": "550 5.1.1 No such user here",
                                   "*@corp.test": "550 5.1.1 No such user here",
                                   "al*@corp.test": "550 5.1.1 No such user here",
                                   "\"x)(mail=*\"@corp.test": "550 5.1.1 No such user here",
                                   "postmaster@corp.test": "250 2.1.5 Recipient OK"})

        submit(self.front, "alice@corp.test", "for alice", sender="partner@elsewhere.test", size=100)
        submit(self.front, "bob@corp.test", "for bob", sender="partner@elsewhere.test", size=100)
        self.arrived(self.exchange, "alice@corp.test")
        self.arrived(self.domino, "bob@corp.test")
        self.assertEqual(self.held_at(self.domino, "alice@corp.test"), 0)
        self.assertEqual(self.held_at(self.exchange, "bob@corp.test"), 0)

        r = self.route("alice@corp.test")
        self.assertEqual((r["connector"], r["why"], r["recipient"]), ("to-exchange", "found in directory migrated", "known"))
        self.assertEqual(r["source"], "answered by the running server")
        r = self.route("bob@corp.test")
        self.assertEqual((r["connector"], r["recipient"]), ("to-domino", "known"))
        self.assertEqual(self.route("nobody@corp.test")["recipient"], "unknown")

    def test_outage_defers_what_no_answer_covers_and_loses_nothing(self):
        # Carol is asked (and cached) while the directory is up; Dave never is.
        self.assertEqual(self.rcpt_replies(["carol@corp.test", "nobody@corp.test"]),
                         {"carol@corp.test": "250 2.1.5 Recipient OK", "nobody@corp.test": "550 5.1.1 No such user here"})
        self.slapd.stop()

        replies = self.rcpt_replies(["dave@corp.test", "carol@corp.test", "nobody@corp.test"])
        self.assertEqual(replies["dave@corp.test"], "451 4.4.3 Recipient directory unavailable, try again later")
        self.assertEqual(replies["carol@corp.test"], "250 2.1.5 Recipient OK")     # fresh or stale: known
        self.assertEqual(replies["nobody@corp.test"], "550 5.1.1 No such user here")
        status = json.loads(run([postern_bin(), "status", "-c", self.front.config_file, "--json"]).stdout)
        corp = next(d for d in status["directories"] if d["name"] == "corp-directory")
        self.assertEqual(corp["state"], "down")
        self.assertIn("Can't contact LDAP server", corp["last_failure"])
        self.assertGreaterEqual(corp["failures"], 1)
        # Once Carol's answer is past its TTL (1 s), it is used as a stale answer, and said so.
        def stale_answer_used():
            reply = self.rcpt_replies(["carol@corp.test"])["carol@corp.test"]
            self.assertEqual(reply, "250 2.1.5 Recipient OK")
            return any("answer cached" in r["data"] for r in self.front.protocol_log().rows())
        wait_until(stale_answer_used, 20, interval=0.3, what="a stale answer used for carol")
        self.assertIn("cannot answer", " ".join(r["data"] for r in self.front.protocol_log().rows()))

        # Accepted on the stale answer; which next hop Carol has depends on the directory
        # ("migrated" was never asked about her), so the message waits in the queue.
        submit(self.front, "carol@corp.test", "during the outage", sender="partner@elsewhere.test", size=100)
        self.assertEqual(self.held_at(self.front, "carol@corp.test"), 1)
        self.assertEqual(self.held_at(self.domino, "carol@corp.test") + self.held_at(self.exchange, "carol@corp.test"), 0)

        self.slapd.start()
        self.arrived(self.domino, "carol@corp.test")
        wait_until(lambda: self.rcpt_replies(["dave@corp.test"])["dave@corp.test"].startswith("250"), 30,
                   what="dave known again once the directory is back")
        self.assertEqual(self.held_at(self.domino, "carol@corp.test"), 1)
        self.assertEqual(self.held_at(self.exchange, "carol@corp.test"), 0)


class DirectoryCheck(unittest.TestCase):
    """`config check` says which sources it cannot reach, and why."""

    def setUp(self):
        self.slapd = Slapd(people()).start()
        self.addCleanup(self.slapd.remove_files)
        self.base = self.slapd.path("check")
        os.makedirs(self.base, exist_ok=True)

    def check(self, source):
        path = os.path.join(self.base, "postern.toml")
        with open(path, "w") as f:
            f.write(config_text([connector(name="inbound", tls="none")], server={"accepted_domains": [],
                                                                             "data_dir": self.base + "/data"},
                                send_connectors=[hold_send_connector()],
                                extra='\n[[accepted_domain]]\nname = "corp.test"\ntype = "authoritative"\n'
                                      'recipients_ldap = "corp-directory"\n' + source))
        return run([postern_bin(), "config", "check", "-c", path], check=False)

    def test_reachable_unreachable_and_unverified(self):
        ok = self.check(self.slapd.source_toml())
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertNotIn("cannot be reached", ok.stdout + ok.stderr)
        ldaps = self.check(self.slapd.source_toml().replace(self.slapd.uri, self.slapd.ldaps_uri))
        self.assertEqual(ldaps.returncode, 0, ldaps.stdout + ldaps.stderr)
        self.assertNotIn("cannot be reached", ldaps.stdout + ldaps.stderr)
        # ldap:// to a port that speaks TLS at once: StartTLS cannot even be asked for.
        crossed = self.check(self.slapd.source_toml().replace(self.slapd.uri,
                                                              f"ldap://127.0.0.1:{self.slapd.ldaps_port}"))
        self.assertIn('ldap_source "corp-directory" cannot be reached', crossed.stdout + crossed.stderr)

        wrong_root = self.check(self.slapd.source_toml().replace(self.slapd.ca_file, "/etc/ssl/certs/ca-certificates.crt"))
        self.assertEqual(wrong_root.returncode, 0)
        self.assertIn('ldap_source "corp-directory" cannot be reached', wrong_root.stdout + wrong_root.stderr)
        self.assertIn("TLS handshake failed", wrong_root.stdout + wrong_root.stderr)

        wrong_password = self.check(self.slapd.source_toml().replace(self.slapd.password_file,
                                                                     self.slapd.path("ldap.csr")))
        self.assertIn("bind as cn=postern", wrong_password.stdout + wrong_password.stderr)
        self.assertIn("Invalid credentials", wrong_password.stdout + wrong_password.stderr)

        os.chmod(self.slapd.password_file, 0o644)
        loose = self.check(self.slapd.source_toml())
        self.assertIn("has mode 0644: a password file should be 0600", loose.stdout + loose.stderr)
        os.chmod(self.slapd.password_file, 0o600)

        self.slapd.stop()
        down = self.check(self.slapd.source_toml())
        self.assertEqual(down.returncode, 0)
        self.assertIn("Can't contact LDAP server", down.stdout + down.stderr)


if __name__ == "__main__":
    unittest.main()

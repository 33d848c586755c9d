"""DANE for SMTP (RFC 7672; DESIGN §3 `dane`, §6 verdict words) against the DNSSEC lab.

nsd serves signed and unsigned zones (dnssec_lab.py); Postern validates them through
[dns] unbound_config. Every next hop is a fake SMTP server on its own 127.0.0.x address
and the one [dns] mx_port, with the certificate its case needs. The sender's key ring
trusts the lab CA, so "server" is a certificate PKIX would accept for mx.postern.test.

  case            DNS                                          hop            outcome, verdict word
  ee.test         signed, TLSA 3 1 1 of the hop's key          selfsigned     delivered, dane-ee
  ta.test         signed, TLSA 2 0 1 of the lab CA             ta chain       delivered, dane-ta
  mismatch.test   signed, MX mx.postern.test, TLSA 3 1 1 wrong server (PKIX)  deferred, tlsa-invalid
  bogus.test      signed, TLSA altered after signing           selfsigned     deferred, dnssec-invalid
  old.test        signed, signatures expired                   selfsigned     deferred (MX bogus)
  plain.test      unsigned, TLSA 3 1 1 wrong                   selfsigned     delivered, opportunistic
  two.test        signed, MX 10 wrong TLSA, MX 20 right TLSA   selfsigned x2  delivered by MX 20, dane-ee
  pkixonly.test   signed, TLSA 1 1 1 only (unusable for SMTP)  no STARTTLS    deferred, starttls-not-supported
  strict.test     unsigned, send connector dane = "required"   selfsigned     deferred, dane-required
  alias.test      signed, MX mx: a CNAME for mail.hosting.test selfsigned     delivered, dane-ee (RFC 7672
                  (signed), TLSA 3 1 1 only at the expanded name              §2.2.2: the expanded name first)
  alias2.test     signed, MX mx: a CNAME for mail2.hosting.test selfsigned    deferred, tlsa-invalid (no TLSA
                  with no TLSA; TLSA 3 1 1 wrong at mx.alias2.test            at the alias: the original name's)

The same lab for REQUIRETLS messages (RFC 8689), handed to Postern over STARTTLS:
  ee.test         hop offers REQUIRETLS                        delivered, MAIL FROM ... REQUIRETLS
  ta.test         hop does not offer REQUIRETLS                returned at once, 5.7.30
  mismatch.test   TLSA mismatch                                returned at once, 5.7.10
  plain.test      MX from insecure DNS                         returned at once, 5.7.10
  two.test        MX 10 fails DANE, MX 20 offers REQUIRETLS    delivered by MX 20
  bogus.test      bogus TLSA (temporary)                       deferred
  old.test        expired signatures: the MX answer is bogus   deferred (a DNS failure, not a verdict)
and "TLS-Required: No" to mismatch.test: delivered despite the TLSA mismatch, and said so.
Returned messages' notices go back with REQUIRETLS, without the body, over a smart host
verified by name (the only path a REQUIRETLS notice may take to client.test).
"""

import hashlib
import os
import shutil
import smtplib
import subprocess
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, NextHop, hops_on_one_port, queued_recipient, relay_connector,
                            require_delivery, send_log_rows, submit)
from dnssec_lab import DnssecLab, Zone
from postern_testlib import PosternTestCase, config_text, pki, postern_bin, run, wait_until

HOPS = {
    "127.0.0.2": "selfsigned",   # ee.test
    "127.0.0.3": "tachain",      # ta.test
    "127.0.0.4": "server",       # mismatch.test (mx.postern.test)
    "127.0.0.5": "selfsigned",   # bogus.test
    "127.0.0.6": "selfsigned",   # old.test
    "127.0.0.7": "selfsigned",   # plain.test
    "127.0.0.8": "selfsigned",   # two.test MX 10
    "127.0.0.9": "selfsigned",   # two.test MX 20
    "127.0.0.10": "no-starttls",  # pkixonly.test
    "127.0.0.11": "selfsigned",  # strict.test
    "127.0.0.12": "selfsigned",  # alias.test: mx.alias.test is a CNAME for mail.hosting.test
    "127.0.0.13": "selfsigned",  # alias2.test: likewise, for mail2.hosting.test
}


def der_sha256(pem_path, public_key_only):
    """SHA-256 of a certificate (selector 0) or of its SubjectPublicKeyInfo (selector 1)."""
    if public_key_only:
        pub = run(["openssl", "x509", "-in", pem_path, "-noout", "-pubkey"]).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub.encode(),
                             capture_output=True, check=True).stdout
    else:
        der = subprocess.run(["openssl", "x509", "-in", pem_path, "-outform", "DER"],
                             capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def make_ta_chain():
    """A leaf for mx.ta.test from the lab CA, served with the CA (DANE-TA needs the
    trust anchor in the chain the server sends when the record holds only its hash)."""
    p = pki()
    if not os.path.exists(p.path("tachain.pem")):
        p.issue("ta", "mx.ta.test", ["DNS:mx.ta.test"])
        with open(p.path("tachain.pem"), "w") as out:
            for name in ("ta.pem", "ca.pem"):
                with open(p.path(name)) as f:
                    out.write(f.read())
        shutil.copyfile(p.path("ta.key"), p.path("tachain.key"))
    return p


def zones():
    p = pki()
    ee = der_sha256(p.path("selfsigned.pem"), True)
    ca = der_sha256(p.ca, False)
    wrong = "ab" * 32
    tlsa = "_25._tcp"   # RFC 7672: the SMTP port, wherever [dns] mx_port points the tests
    return [
        Zone("ee.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.2", f"{tlsa}.mx IN TLSA 3 1 1 {ee}"]),
        Zone("ta.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.3", f"{tlsa}.mx IN TLSA 2 0 1 {ca}"]),
        Zone("postern.test", ["mx IN A 127.0.0.4", f"{tlsa}.mx IN TLSA 3 1 1 {wrong}"]),
        Zone("mismatch.test", ["@ IN MX 10 mx.postern.test."]),
        Zone("bogus.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.5", f"{tlsa}.mx IN TLSA 3 1 1 {ee}"],
             tamper=(ee[:16], "0" * 16)),
        Zone("old.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.6"], expired=True),
        Zone("plain.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.7", f"{tlsa}.mx IN TLSA 3 1 1 {wrong}"],
             kind="unsigned"),
        Zone("two.test", ["@ IN MX 10 mx1", "@ IN MX 20 mx2", "mx1 IN A 127.0.0.8", "mx2 IN A 127.0.0.9",
                          f"{tlsa}.mx1 IN TLSA 3 1 1 {wrong}", f"{tlsa}.mx2 IN TLSA 3 1 1 {ee}"]),
        Zone("pkixonly.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.10", f"{tlsa}.mx IN TLSA 1 1 1 {wrong}"]),
        Zone("strict.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.11"], kind="unsigned"),
        Zone("hosting.test", ["mail IN A 127.0.0.12", f"{tlsa}.mail IN TLSA 3 1 1 {ee}", "mail2 IN A 127.0.0.13"]),
        Zone("alias.test", ["@ IN MX 10 mx", "mx IN CNAME mail.hosting.test."]),
        Zone("alias2.test", ["@ IN MX 10 mx", "mx IN CNAME mail2.hosting.test.", f"{tlsa}.mx IN TLSA 3 1 1 {wrong}"]),
    ]


DOMAINS = ["ee.test", "ta.test", "mismatch.test", "bogus.test", "old.test", "plain.test", "two.test",
           "pkixonly.test", "alias.test", "alias2.test"]


class Dane(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        make_ta_chain()
        cls.port, cls.hops = hops_on_one_port(HOPS)
        for address in ("127.0.0.2", "127.0.0.4", "127.0.0.7", "127.0.0.9"):
            cls.hops[address].offer_requiretls = True
        # Notices to client.test: a smart host verified by name that offers REQUIRETLS.
        cls.notices = NextHop("server", "127.0.0.1", 0)
        cls.notices.offer_requiretls = True
        try:
            cls.lab = DnssecLab(zones())
        except BaseException:
            for h in [*cls.hops.values(), cls.notices]:
                h.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        for h in [*cls.hops.values(), cls.notices]:
            h.stop()
        cls.lab.stop()

    def start_sender(self):
        sender = self.start(config_text(
            [relay_connector()],
            server={"hostname": "sender.postern.test"},
            queue={"retry": ["10m"]},
            send_connectors=[
                {"name": "by-mx", "address_spaces": DOMAINS},
                {"name": "strict", "address_spaces": ["strict.test"], "dane": "required"},
                {"name": "notices", "address_spaces": ["client.test"],
                 "smart_hosts": [f"127.0.0.1:{self.notices.port}"], "require_tls": True,
                 "tls_auth_level": "domain_validation", "tls_domain": "mx.postern.test"}],
            extra=f'\n[dns]\nunbound_config = "{self.lab.unbound_config()}"\nmx_port = {self.port}\n'))
        require_delivery(self, sender)
        return sender

    def submit_over_tls(self, server, rcpt, requiretls=False, headers=""):
        """One message over STARTTLS (REQUIRETLS needs TLS to us too)."""
        body = (f"From: alice@client.test\r\nTo: {rcpt}\r\nSubject: to {rcpt}\r\n{headers}\r\n"
                f"SECRET BODY for {rcpt}\r\n")
        with smtplib.SMTP("127.0.0.1", server.port(), timeout=30) as c:
            c.starttls(context=pki().client_context())
            c.ehlo("client.postern.test")
            self.assertEqual(c.has_extn("requiretls"), True)
            c.sendmail("alice@client.test", [rcpt], body, mail_options=["REQUIRETLS"] if requiretls else [])

    def notice_for(self, rcpt):
        """The notice client.test got about `rcpt`: (MAIL FROM line, text)."""
        for _, mail_from, _, data in self.notices.received():
            if rcpt in data:
                return mail_from, data
        return None

    def received_by(self, address, rcpt):
        return [r for r, _ in self.hops[address].rcpts() if r == rcpt]

    def verdicts_to(self, sender, address):
        """The '*' lines of every send session to address:mx_port."""
        sessions = {}
        for r in send_log_rows(sender):
            sessions.setdefault(r["session-id"], []).append(r)
        out = []
        for rows in sessions.values():
            if any(r["remote-endpoint"] == f"{address}:{self.port}" for r in rows):
                out += [r["data"] for r in rows if r["event"] == "*"]
        return out

    def wait_attempted(self, sender, rcpt):
        return wait_until(lambda: (r := queued_recipient(sender, rcpt)) and r.get("attempts", 0) > 0 and r,
                          DELIVERY_TIMEOUT, what=f"a failed attempt for {rcpt}")

    def test_dane_outcomes_and_verdict_words(self):
        sender = self.start_sender()
        check = sender.cli("config", "check", "-c", sender.config_file)
        self.assertNotIn("DANE is off", check.stderr)
        rcpts = {d: f"user@{d}" for d in DOMAINS + ["strict.test"]}
        for d, rcpt in rcpts.items():
            submit(sender, rcpt, f"dane {d}")

        # Delivered, each with the word that says how the hop was authenticated.
        delivered = {"ee.test": ("127.0.0.2", "result=dane-ee"), "ta.test": ("127.0.0.3", "result=dane-ta"),
                     "plain.test": ("127.0.0.7", "result=opportunistic"),
                     "two.test": ("127.0.0.9", "result=dane-ee"), "alias.test": ("127.0.0.12", "result=dane-ee")}
        for d, (address, word) in delivered.items():
            wait_until(lambda: self.received_by(address, rcpts[d]), DELIVERY_TIMEOUT, what=f"{d} delivered")
            lines = wait_until(lambda: [l for l in self.verdicts_to(sender, address) if "verdict=pass" in l],
                               DELIVERY_TIMEOUT, what=f"the verdict for {d}")
            self.assertIn(word, lines[0], f"{d}: {lines}")
        self.assertIn("policy=DANE", self.verdicts_to(sender, "127.0.0.2")[0])
        self.assertIn("at mail.hosting.test", self.verdicts_to(sender, "127.0.0.12")[0])

        # two.test: MX 10 did not authenticate, got nothing, and said why.
        self.assertEqual(self.received_by("127.0.0.8", rcpts["two.test"]), [])
        self.assertTrue(any("result=tlsa-invalid" in l for l in self.verdicts_to(sender, "127.0.0.8")))

        # Deferred: nothing reached the hop; the queue and the send log name the reason.
        deferred = {"mismatch.test": ("127.0.0.4", "tlsa-invalid"), "bogus.test": ("127.0.0.5", "dnssec-invalid"),
                    "pkixonly.test": ("127.0.0.10", "starttls-not-supported"),
                    "strict.test": ("127.0.0.11", "dane-required"), "alias2.test": ("127.0.0.13", "tlsa-invalid")}
        for d, (address, word) in deferred.items():
            r = self.wait_attempted(sender, rcpts[d])
            self.assertEqual(r["state"], "pending", d)
            self.assertEqual(r.get("last_tls"), word, f"{d}: {r}")
            self.assertEqual(self.received_by(address, rcpts[d]), [], d)
            self.assertTrue(any(f"result={word}" in l for l in self.verdicts_to(sender, address)),
                            f"{d}: {self.verdicts_to(sender, address)}")
        mismatch = queued_recipient(sender, rcpts["mismatch.test"])
        self.assertIn("no TLSA record", mismatch["last_reply"])

        # The expired zone: the MX answer itself is bogus, so nothing is tried at all.
        old = self.wait_attempted(sender, rcpts["old.test"])
        self.assertEqual(old["state"], "pending")
        self.assertEqual(self.hops["127.0.0.6"].connections, 0)

        # `queue show` gives the word too.
        shown = sender.queue("show", queued_recipient_id(sender, rcpts["mismatch.test"])).stdout
        self.assertIn("last TLS: tlsa-invalid", shown)

    def test_without_a_trust_anchor_dane_is_off_with_a_warning(self):
        p = pki()
        home = os.path.join(self.lab.dir, "no-anchor")
        os.makedirs(home, exist_ok=True)
        for src, name in ((p.keyring, "keyring.p12"), (p.stash, "keyring.sth")):
            shutil.copyfile(src, os.path.join(home, name))
            os.chmod(os.path.join(home, name), 0o600)
        unbound_conf = os.path.join(home, "unbound.conf")
        with open(unbound_conf, "w") as f:
            f.write("server:\n  do-not-query-localhost: no\n")
        cfg = config_text([relay_connector()], server={"data_dir": home},
                          send_connectors=[{"name": "by-mx", "address_spaces": DOMAINS}],
                          extra=f'\n[dns]\nunbound_config = "{unbound_conf}"\n')
        path = os.path.join(home, "postern.toml")

        def check(text):
            with open(path, "w") as f:
                f.write(text)
            return run([postern_bin(), "config", "check", "-c", path], check=False)

        warned = check(cfg)
        self.assertEqual(warned.returncode, 0, warned.stderr)
        self.assertRegex(warned.stderr, r"dns.unbound_config: warning: no DNSSEC trust anchor, so DANE is off for "
                                        r"send connector\(s\) by-mx")
        refused = check(cfg.replace('name = "by-mx"', 'name = "by-mx"\ndane = "required"'))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn('dane = "required" needs DNSSEC validation', refused.stderr)


class RequireTls(Dane):
    """REQUIRETLS messages through the same DNSSEC lab (the Dane fixture, not its tests)."""

    test_dane_outcomes_and_verdict_words = None
    test_without_a_trust_anchor_dane_is_off_with_a_warning = None

    def test_requiretls_goes_only_over_verified_tls_to_hops_that_offer_it(self):
        sender = self.start_sender()
        rcpts = {d: f"rt@{d}" for d in ["ee.test", "ta.test", "mismatch.test", "plain.test", "two.test",
                                        "bogus.test", "old.test"]}
        for rcpt in rcpts.values():
            self.submit_over_tls(sender, rcpt, requiretls=True)
        optional = "optional@mismatch.test"
        self.submit_over_tls(sender, optional, headers="TLS-Required: No\r\n")

        for d, address in {"ee.test": "127.0.0.2", "two.test": "127.0.0.9"}.items():
            wait_until(lambda: self.received_by(address, rcpts[d]), DELIVERY_TIMEOUT, what=f"{d} delivered")
            mail_from = next(m for _, m, r, _ in self.hops[address].received() if any(rcpts[d] in x for x in r))
            self.assertIn("REQUIRETLS", mail_from)
            self.assertTrue(any("result=dane-ee" in l for l in self.verdicts_to(sender, address)))
        self.assertEqual(self.received_by("127.0.0.8", rcpts["two.test"]), [])

        # Returned at once, each notice with the reason, REQUIRETLS, and no body.
        for d, status in {"ta.test": "5.7.30", "mismatch.test": "5.7.10", "plain.test": "5.7.10"}.items():
            mail_from, text = wait_until(lambda: self.notice_for(rcpts[d]), DELIVERY_TIMEOUT,
                                         what=f"the notice about {d}")
            self.assertIn(f"Status: {status}", text, d)
            self.assertIn("REQUIRETLS", mail_from, d)
            self.assertNotIn("SECRET BODY", text, d)
            self.assertIsNone(queued_recipient(sender, rcpts[d]), d)
        self.assertEqual(self.received_by("127.0.0.3", rcpts["ta.test"]), [])
        self.assertEqual(self.received_by("127.0.0.4", rcpts["mismatch.test"]), [])
        self.assertEqual(self.received_by("127.0.0.7", rcpts["plain.test"]), [])

        # A temporary DNSSEC failure defers, as for any message.
        for d in ("bogus.test", "old.test"):
            waiting = self.wait_attempted(sender, rcpts[d])
            self.assertEqual(waiting["state"], "pending", d)
            self.assertIsNone(self.notice_for(rcpts[d]), d)

        # TLS-Required: No: the TLSA mismatch does not hold it back, and the log says why.
        wait_until(lambda: self.received_by("127.0.0.4", optional), DELIVERY_TIMEOUT,
                   what="the TLS-Required: No message delivered")
        self.assertTrue(any("policy=TLS-Required: No: DANE not enforced" in l and "verdict=pass" in l
                            for l in self.verdicts_to(sender, "127.0.0.4")))

    def test_requiretls_before_starttls_is_refused(self):
        sender = self.start_sender()
        with smtplib.SMTP("127.0.0.1", sender.port(), timeout=30) as c:
            c.ehlo("client.postern.test")
            self.assertFalse(c.has_extn("requiretls"))
            code, text = c.mail("alice@client.test", ["REQUIRETLS"])
            self.assertEqual((code, text[:6]), (530, b"5.7.10"))


def queued_recipient_id(server, address):
    for m in server.queue_list(strict=True):
        if any(r.get("address") == address for r in m.get("recipients", [])):
            return m["id"]
    raise AssertionError(f"{address} is not queued")


if __name__ == "__main__":
    unittest.main()

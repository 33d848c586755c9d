"""MTA-STS (RFC 8461; DESIGN §3 `mta_sts`, §6 verdict words) against a DNS lab and an
HTTPS policy host.

nsd serves the zones (dnssec_lab.py; unsigned ones except where DANE is tested), a
Python HTTPS server on 127.0.0.30 answers https://mta-sts.DOMAIN/.well-known/mta-sts.txt
with a certificate from the lab CA (the sender's key ring trusts it), and fake SMTP next
hops listen on 127.0.0.x at the one [dns] mx_port.

  case            policy                                 next hop certificate     outcome, verdict word
  enforce.test    enforce, mx: mx.postern.test           mx.postern.test (valid)  delivered, mta-sts
  wrongname.test  enforce, lists its MX                  a name that is not it    deferred, certificate-host-mismatch
  unlisted.test   enforce, lists another MX              valid                    deferred, validation-failure
  testing.test    testing                                wrong name               delivered, opportunistic; counted
                                                                                  as certificate-host-mismatch
  nofetch.test    TXT record, the policy answers 404     valid                    delivered, sts-policy-fetch-error noted
  both.test       enforce and DANE-EE (signed zone)      self-signed, TLSA match  delivered, dane-ee (DANE wins)
The fetched enforce policy is in data_dir/mta-sts.json after the server stopped.
REQUIRETLS (RFC 8689 §4.2.1): an MX listed by an enforced policy is a protected path even
from insecure DNS (delivered, REQUIRETLS passed on); one under a testing policy, one the
enforced policy does not list, or one whose policy cannot be fetched, is not (returned at
once, never connected to); a listed MX with the wrong certificate name returns the message
at once; DANE with MTA-STS delivers (DANE authenticates the hop).
"""

import hashlib
import http.server
import json
import os
import smtplib
import ssl
import threading
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, hops_on_one_port, queued_recipient, relay_connector,
                            require_delivery, submit)
from dnssec_lab import DnssecLab, Zone
from postern_testlib import PosternTestCase, config_text, pki, wait_until
from test_dane import der_sha256

POLICY_HOST = "127.0.0.30"

HOPS = {
    "127.0.0.21": "server",      # enforce.test: mx.postern.test
    "127.0.0.22": "server",      # wrongname.test: its MX is not mx.postern.test
    "127.0.0.23": "server",      # unlisted.test
    "127.0.0.24": "wrong",       # testing.test
    "127.0.0.25": "server",      # nofetch.test
    "127.0.0.26": "selfsigned",  # both.test
}


def policy(mode, *mx):
    return "version: STSv1\r\nmode: " + mode + "\r\n" + "".join(f"mx: {m}\r\n" for m in mx) + "max_age: 86400\r\n"


POLICIES = {
    "mta-sts.enforce.test": (200, "text/plain", policy("enforce", "mx.postern.test")),
    "mta-sts.wrongname.test": (200, "text/plain; charset=utf-8", policy("enforce", "mx.wrongname.test")),
    "mta-sts.unlisted.test": (200, "text/plain", policy("enforce", "*.elsewhere.test")),
    "mta-sts.testing.test": (200, "text/plain", policy("testing", "mx.testing.test")),
    "mta-sts.nofetch.test": (404, "text/plain", "not here"),
    "mta-sts.both.test": (200, "text/plain", policy("enforce", "mx.both.test")),
}


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        host = self.headers.get("Host", "").split(":")[0]
        status, ctype, body = POLICIES.get(host, (404, "text/plain", "unknown host"))
        if self.path != "/.well-known/mta-sts.txt":
            status, body = 404, "wrong path"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def start_policy_host():
    p = pki()
    if not os.path.exists(p.path("policyhost.pem")):
        p.issue("policyhost", "mta-sts.enforce.test", ["DNS:" + h for h in POLICIES])
    server = http.server.ThreadingHTTPServer((POLICY_HOST, 0), PolicyHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(p.path("policyhost.pem"), p.path("policyhost.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def zones():
    ee = der_sha256(pki().path("selfsigned.pem"), True)
    txt = '_mta-sts IN TXT "v=STSv1; id=20261203T1;"'
    policy_a = f"mta-sts IN A {POLICY_HOST}"

    def unsigned(name, records):
        return Zone(name, records + [txt, policy_a], kind="unsigned")
    return [
        Zone("postern.test", ["mx IN A 127.0.0.21"], kind="unsigned"),
        unsigned("enforce.test", ["@ IN MX 10 mx.postern.test."]),
        unsigned("wrongname.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.22"]),
        unsigned("unlisted.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.23"]),
        unsigned("testing.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.24"]),
        unsigned("nofetch.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.25"]),
        Zone("both.test", ["@ IN MX 10 mx", "mx IN A 127.0.0.26", f"_25._tcp.mx IN TLSA 3 1 1 {ee}", txt, policy_a]),
    ]


DOMAINS = ["enforce.test", "wrongname.test", "unlisted.test", "testing.test", "nofetch.test", "both.test"]


class MtaSts(PosternTestCase):

    @classmethod
    def setUpClass(cls):
        cls.policy_host = start_policy_host()
        cls.port, cls.hops = hops_on_one_port(HOPS)
        cls.hops["127.0.0.21"].offer_requiretls = True
        cls.hops["127.0.0.26"].offer_requiretls = True
        try:
            cls.lab = DnssecLab(zones())
        except BaseException:
            cls.policy_host.shutdown()
            for h in cls.hops.values():
                h.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.policy_host.shutdown()
        cls.policy_host.server_close()
        for h in cls.hops.values():
            h.stop()
        cls.lab.stop()

    def verdicts_to(self, sender, address):
        rows = sender.protocol_log("smtp-send").rows()
        sessions = {}
        for r in rows:
            sessions.setdefault(r["session-id"], []).append(r)
        return [r["data"] for rs in sessions.values()
                if any(r["remote-endpoint"] == f"{address}:{self.port}" for r in rs)
                for r in rs if r["event"] == "*"]

    def received_by(self, address, rcpt):
        return [r for r, _ in self.hops[address].rcpts() if r == rcpt]

    def start_sender(self):
        sender = self.start(config_text(
            [relay_connector()],
            server={"hostname": "sender.postern.test"},
            queue={"retry": ["10m"]},
            send_connectors=[{"name": "by-mx", "address_spaces": DOMAINS}],
            extra=(f'\n[dns]\nunbound_config = "{self.lab.unbound_config()}"\nmx_port = {self.port}\n'
                   f'mta_sts_port = {self.policy_host.server_address[1]}\n')))
        require_delivery(self, sender)
        return sender

    def test_policies_decide_where_mail_goes_and_say_so(self):
        sender = self.start_sender()
        rcpts = {d: f"user@{d}" for d in DOMAINS}
        for rcpt in rcpts.values():
            submit(sender, rcpt, f"mta-sts {rcpt}")

        delivered = {"enforce.test": ("127.0.0.21", "result=mta-sts", "MTA-STS enforce (id 20261203T1)"),
                     "testing.test": ("127.0.0.24", "result=opportunistic",
                                      "MTA-STS testing (id 20261203T1): not enforced; enforce would fail: "),
                     "nofetch.test": ("127.0.0.25", "result=opportunistic", "(sts-policy-fetch-error)"),
                     "both.test": ("127.0.0.26", "result=dane-ee", "policy=DANE")}
        for d, (address, word, note) in delivered.items():
            wait_until(lambda: self.received_by(address, rcpts[d]), DELIVERY_TIMEOUT, what=f"{d} delivered")
            lines = wait_until(lambda: [l for l in self.verdicts_to(sender, address) if "verdict=pass" in l],
                               DELIVERY_TIMEOUT, what=f"the verdict for {d}")
            self.assertIn(word, lines[0], d)
            self.assertIn(note, lines[0], d)

        deferred = {"wrongname.test": ("127.0.0.22", "certificate-host-mismatch"),
                    "unlisted.test": ("127.0.0.23", "validation-failure")}
        for d, (address, word) in deferred.items():
            r = wait_until(lambda: (x := queued_recipient(sender, rcpts[d])) and x.get("attempts", 0) > 0 and x,
                           DELIVERY_TIMEOUT, what=f"an attempt for {d}")
            self.assertEqual(r["state"], "pending", d)
            self.assertEqual(r.get("last_tls"), word, f"{d}: {r}")
            self.assertEqual(self.received_by(address, rcpts[d]), [], d)
        self.assertIn("does not list this MX", queued_recipient(sender, rcpts["unlisted.test"])["last_reply"])
        self.assertEqual(self.hops["127.0.0.23"].connections, 0)

        # TLS-RPT counts (RFC 8460): every outcome above, under the policy in force.
        shown = sender.cli("tlsrpt", "show", "-c", sender.config_file, "--json")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        reports = {r["policies"][0]["policy"]["policy-domain"]: r for r in json.loads(shown.stdout)["reports"]}
        for report in reports.values():
            check_rfc8460_report(self, report)
        enforce = reports["enforce.test"]["policies"][0]
        self.assertEqual(enforce["policy"]["policy-type"], "sts")
        self.assertIn("mode: enforce", enforce["policy"]["policy-string"])
        self.assertEqual(enforce["policy"]["mx-host"], ["mx.postern.test"])
        self.assertGreaterEqual(enforce["summary"]["total-successful-session-count"], 1)
        wrong = reports["wrongname.test"]["policies"][0]
        self.assertGreaterEqual(wrong["summary"]["total-failure-session-count"], 1)
        self.assertEqual(wrong["failure-details"][0]["result-type"], "certificate-host-mismatch")
        self.assertEqual(wrong["failure-details"][0]["receiving-mx-hostname"], "mx.wrongname.test")
        self.assertEqual(wrong["failure-details"][0]["receiving-ip"], "127.0.0.22")
        unlisted = reports["unlisted.test"]["policies"][0]
        self.assertEqual(unlisted["failure-details"][0]["result-type"], "validation-failure")
        self.assertEqual(reports["both.test"]["policies"][0]["policy"]["policy-type"], "tlsa")
        # A testing policy: delivered, and counted as the failure enforce would have been.
        testing = reports["testing.test"]["policies"][0]
        self.assertEqual(testing["policy"]["policy-type"], "sts")
        self.assertIn("mode: testing", testing["policy"]["policy-string"])
        self.assertEqual(testing["summary"]["total-successful-session-count"], 0)
        self.assertEqual(testing["failure-details"][0]["result-type"], "certificate-host-mismatch")
        nofetch = reports["nofetch.test"]["policies"][0]
        self.assertEqual(nofetch["policy"]["policy-type"], "no-policy-found")
        self.assertEqual(nofetch["failure-details"][0]["result-type"], "sts-policy-fetch-error")
        self.assertGreaterEqual(nofetch["summary"]["total-successful-session-count"], 1)   # opportunistic TLS
        text = sender.cli("tlsrpt", "show", "-c", sender.config_file, "wrongname.test").stdout
        self.assertIn("wrongname.test (sts)", text)
        self.assertIn("certificate-host-mismatch at mx.wrongname.test (127.0.0.22)", text)

        sender.stop()
        with open(os.path.join(sender.data_dir, "mta-sts.json")) as f:
            cached = json.load(f)["policies"]
        self.assertEqual(cached["enforce.test"]["mode"], "enforce")
        self.assertEqual(cached["enforce.test"]["id"], "20261203T1")
        self.assertEqual(cached["enforce.test"]["mx"], ["mx.postern.test"])
        self.assertNotIn("nofetch.test", cached)
        self.assertEqual(os.stat(os.path.join(sender.data_dir, "mta-sts.json")).st_mode & 0o777, 0o600)

    def test_requiretls_takes_an_mx_an_enforced_policy_lists(self):
        sender = self.start_sender()
        for rcpt in ("rt@enforce.test", "rt@testing.test", "rt@wrongname.test", "rt@unlisted.test", "rt@nofetch.test",
                     "rt@both.test"):
            with smtplib.SMTP("127.0.0.1", sender.port(), timeout=30) as c:
                c.starttls(context=pki().client_context())
                c.ehlo("client.postern.test")
                c.sendmail("alice@client.test", [rcpt], f"Subject: to {rcpt}\r\n\r\nhi\r\n",
                           mail_options=["REQUIRETLS"])
        wait_until(lambda: self.received_by("127.0.0.21", "rt@enforce.test"), DELIVERY_TIMEOUT,
                   what="the REQUIRETLS message at the listed MX")
        mail_from = next(m for _, m, r, _ in self.hops["127.0.0.21"].received() if any("rt@enforce" in x for x in r))
        self.assertIn("REQUIRETLS", mail_from)
        wait_until(lambda: any("not connecting to mx.testing.test: REQUIRETLS" in l
                               for l in self.verdicts_to(sender, "127.0.0.24")),
                   DELIVERY_TIMEOUT, what="the REQUIRETLS refusal for testing.test")
        wait_until(lambda: queued_recipient(sender, "rt@testing.test") is None, DELIVERY_TIMEOUT,
                   what="rt@testing.test returned")
        self.assertEqual(self.received_by("127.0.0.24", "rt@testing.test"), [])
        # A listed MX whose certificate has the wrong name: returned (5.7.10), not retried.
        wait_until(lambda: queued_recipient(sender, "rt@wrongname.test") is None, DELIVERY_TIMEOUT,
                   what="rt@wrongname.test returned")
        self.assertTrue(any("result=certificate-host-mismatch" in l for l in self.verdicts_to(sender, "127.0.0.22")))
        # An MX the enforced policy does not list is no protected path: returned, never connected to.
        wait_until(lambda: queued_recipient(sender, "rt@unlisted.test") is None, DELIVERY_TIMEOUT,
                   what="rt@unlisted.test returned")
        self.assertEqual(self.received_by("127.0.0.22", "rt@wrongname.test"), [])
        self.assertEqual(self.hops["127.0.0.23"].connections, 0)
        # No policy to be had, MX from insecure DNS: no protected path, returned unsent.
        wait_until(lambda: queued_recipient(sender, "rt@nofetch.test") is None, DELIVERY_TIMEOUT,
                   what="rt@nofetch.test returned")
        self.assertEqual(self.received_by("127.0.0.25", "rt@nofetch.test"), [])
        # DANE with MTA-STS: DANE authenticates the hop, which offers REQUIRETLS: delivered.
        wait_until(lambda: self.received_by("127.0.0.26", "rt@both.test"), DELIVERY_TIMEOUT,
                   what="the REQUIRETLS message at both.test")
        mail_from = next(m for _, m, r, _ in self.hops["127.0.0.26"].received() if any("rt@both" in x for x in r))
        self.assertIn("REQUIRETLS", mail_from)


def check_rfc8460_report(test, report):
    """RFC 8460 §4.4 and its JSON schema (§4.5): the required members and their types."""
    for key in ("organization-name", "date-range", "contact-info", "report-id", "policies"):
        test.assertIn(key, report)
    for key in ("start-datetime", "end-datetime"):
        test.assertRegex(report["date-range"][key], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    test.assertIsInstance(report["policies"], list)
    for p in report["policies"]:
        test.assertIn(p["policy"]["policy-type"], ("tlsa", "sts", "no-policy-found"))
        test.assertIsInstance(p["policy"]["policy-domain"], str)
        for key in ("policy-string", "mx-host"):
            if key in p["policy"]:
                test.assertTrue(all(isinstance(s, str) for s in p["policy"][key]))
        for key in ("total-successful-session-count", "total-failure-session-count"):
            test.assertIsInstance(p["summary"][key], int)
        failed = 0
        for f in p.get("failure-details", []):
            test.assertIn(f["result-type"], RESULT_TYPES)
            test.assertIsInstance(f["failed-session-count"], int)
            test.assertIsInstance(f["receiving-mx-hostname"], str)
            failed += f["failed-session-count"]
        test.assertEqual(failed, p["summary"]["total-failure-session-count"])


RESULT_TYPES = {"starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
                "validation-failure", "tlsa-invalid", "dnssec-invalid", "dane-required", "sts-policy-fetch-error",
                "sts-policy-invalid", "sts-webpki-invalid"}


if __name__ == "__main__":
    unittest.main()

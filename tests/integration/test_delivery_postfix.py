"""Postfix as Postern's next hop (DESIGN.md §3 [[send_connector]] smart_hosts, require_tls,
tls_auth_level = domain_validation, client_certificate; §7 real peers).

A private Postfix instance listens on a free loopback port and requires TLS on its side
(smtpd_tls_security_level = encrypt) with a certificate the test CA issued for
mx.postern.test, the send connector's tls_domain. It keeps what it accepts on hold
(smtpd_end_of_data_restrictions = check_client_access static:HOLD), so the test reads
the message back with postqueue/postcat.

- Postern relays through it: Postfix's maillog shows the TLS connection, the message is
  in Postfix's hold queue (by Message-ID), Postern's send log has verdict=pass.
- Postfix also requires and checks a client certificate (smtpd_tls_req_ccert = yes,
  smtpd_tls_CAfile = the test CA): with client_certificate = a key ring label the
  message is accepted ("Trusted TLS connection"); without it Postfix refuses, the
  message stays queued in Postern and the reason is in Postern's send log.
"""

import os
import re
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, connector_lines, queued_recipient,
                            relay_connector, require_delivery, submit)
from postern_testlib import (SERVER_NAME, PostfixInstance, PosternTestCase, config_text,
                             hold_send_connector, require_tool, run, wait_until)

POSTFIX_TIMEOUT = 30.0


class PostfixNextHop(PosternTestCase):

    def setUp(self):
        super().setUp()
        require_tool("postfix")
        if os.geteuid() != 0:
            self.skipTest("a private Postfix instance needs root")

    # -- Postfix side

    def start_postfix(self, require_client_cert):
        settings = {
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_cert_file": self.pki.path("server.pem"),
            "smtpd_tls_key_file": self.pki.path("server.key"),
            "smtpd_tls_loglevel": "1",
            "smtpd_tls_received_header": "yes",
            "smtpd_end_of_data_restrictions": "check_client_access static:HOLD",
        }
        if require_client_cert:
            settings.update({
                "smtpd_tls_ask_ccert": "yes",
                "smtpd_tls_req_ccert": "yes",
                "smtpd_tls_CAfile": self.pki.ca,
            })
        pf = PostfixInstance(settings)
        self.addCleanup(pf.remove_files)
        pf.start()
        self.addCleanup(pf.stop)
        self.addCleanup(self.report_postfix, pf)
        return pf

    def report_postfix(self, pf):
        if self._failed():
            print(f"\n--- postfix maillog ---\n{pf.maillog_text()}")

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        errs = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errs)

    def held(self, pf):
        """Postfix's hold queue: queue id -> postcat text of the message."""
        out = {}
        for entry in pf.queue_json():
            if entry.get("queue_name") == "hold":
                qid = entry["queue_id"]
                p = run(["postcat", "-c", pf.conf, "-q", qid], check=False)
                out[qid] = p.stdout
        return out

    def held_with(self, pf, mid):
        return [t for t in self.held(pf).values() if mid in t]

    # -- Postern side

    def start_postern(self, pf, client_certificate=None):
        send = {"name": "to-postfix", "address_spaces": ["partner.test"],
                "smart_hosts": [f"127.0.0.1:{pf.port}"],
                "require_tls": True, "tls_auth_level": "domain_validation",
                "tls_domain": SERVER_NAME}
        if client_certificate:
            send["client_certificate"] = client_certificate
        a = self.start(config_text([relay_connector()], queue={"retry": ["1m"]},
                                   send_connectors=[send, hold_send_connector()]))
        require_delivery(self, a)
        return a

    # -- tests

    def test_relayed_to_postfix_over_verified_tls(self):
        pf = self.start_postfix(require_client_cert=False)
        a = self.start_postern(pf)
        mid = submit(a, "bob@partner.test", "to postfix")
        texts = wait_until(lambda: self.held_with(pf, mid), POSTFIX_TIMEOUT,
                           what="the message in Postfix's hold queue")
        log = pf.maillog_text()
        self.assertRegex(log, r"postfix/smtpd\[\d+\]: Anonymous TLS connection established from "
                              r"\S+\[127\.0\.0\.1\]: TLSv1\.[23]")
        self.assertRegex(log, r"postfix/smtpd\[\d+\]: \w+: client=\S+\[127\.0\.0\.1\]")
        # Postfix's own Received: header says the hop was encrypted.
        text = texts[0]
        self.assertRegex(text, r"recipient: bob@partner\.test")
        self.assertRegex(text, r"(?s)Received: from " + re.escape(SERVER_NAME) + r".*\(using TLSv1\.[23]")
        wait_until(lambda: any("achieved=domain_validation required=domain_validation; verdict=pass" in l
                               for l in connector_lines(a, "to-postfix")),
                   DELIVERY_TIMEOUT, what="the passing verdict in Postern's send log")
        if a.queue_list() is not None:
            wait_until(lambda: a.queue_list() == [], DELIVERY_TIMEOUT, what="Postern's queue to empty")

    def test_postfix_requiring_a_client_certificate_accepts_the_key_ring_identity(self):
        pf = self.start_postfix(require_client_cert=True)
        a = self.start_postern(pf, client_certificate="mx")   # the key ring label (DESIGN §4)
        mid = submit(a, "bob@partner.test", "mutual TLS to postfix")
        wait_until(lambda: self.held_with(pf, mid), POSTFIX_TIMEOUT,
                   what="the message in Postfix's hold queue")
        log = pf.maillog_text()
        # "Trusted": Postfix verified Postern's client certificate against the test CA.
        self.assertRegex(log, r"Trusted TLS connection established from \S+\[127\.0\.0\.1\]: TLSv1\.[23]")
        self.assertRegex(log, r"client=\S+\[127\.0\.0\.1\]")

    def test_postfix_refuses_without_a_client_certificate_and_postern_keeps_the_message(self):
        pf = self.start_postfix(require_client_cert=True)
        a = self.start_postern(pf)
        mid = submit(a, "bob@partner.test", "no client certificate")

        def refusal():
            lines = connector_lines(a, "to-postfix")
            # after the handshake Postfix answers with an error reply; Postern logs it
            return [l for l in lines if re.match(r"^4\d\d ", l) or re.match(r"^5\d\d ", l)]
        wait_until(refusal, DELIVERY_TIMEOUT, what="Postfix's refusal in Postern's send log")
        self.assertRegex(refusal()[0], r"^421 4\.7\.1 .*No client certificate presented")
        pf.wait_maillog(r"NOQUEUE: abort: TLS from \S+\[127\.0\.0\.1\]: No client certificate presented",
                        timeout=POSTFIX_TIMEOUT)
        lines = connector_lines(a, "to-postfix")
        self.assertTrue(any("verdict=pass" in l for l in lines),
                        "Postern's own verdict on Postfix's certificate passes")
        self.assertFalse(any(l.startswith("MAIL FROM") for l in lines),
                         "Postfix refused the session before any transaction")
        self.assertEqual(self.held_with(pf, mid), [])
        self.assertEqual([e for e in pf.queue_json()], [])
        # Still queued in Postern, with Postfix's refusal as the reason.
        rcpt = wait_until(lambda: (queued_recipient(a, "bob@partner.test") or {}).get("attempts")
                          and queued_recipient(a, "bob@partner.test"), DELIVERY_TIMEOUT,
                          what="the refused attempt in Postern's queue")
        self.assertEqual(rcpt["state"], "pending")
        self.assertRegex(rcpt["last_reply"], r"421 4\.7\.1 .*No client certificate presented")


if __name__ == "__main__":
    unittest.main()

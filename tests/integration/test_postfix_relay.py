"""Postfix relaying to Postern with smtp_tls_security_level = secure (DESIGN §7 real peers).

Postfix (its own instance) takes a message on its smtpd and relays it to
[127.0.0.1]:<postern port>, requiring a verified certificate that matches
mx.postern.test. With Postern's certificate for another name, Postfix must refuse to
deliver: the message stays deferred with a certificate verification reason.
"""

import os
import smtplib
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, PostfixInstance, ProtocolLog,
                             config_text, connector, message, pki, require_postern,
                             start_postern, wait_until)


class PostfixToPostern(unittest.TestCase):

    def setUp(self):
        require_postern(self)
        self.pki = pki()

    def start_pair(self, keyring):
        server = start_postern(config_text([connector(require_tls=True)]), keyring=keyring)
        self.addCleanup(server.remove_files)
        self.addCleanup(self.report, server)
        self.addCleanup(server.stop)
        base = None
        pf = PostfixInstance({
            "relayhost": f"[127.0.0.1]:{server.port()}",
            "smtp_tls_security_level": "secure",
            "smtp_tls_CAfile": self.pki.ca,
            "smtp_tls_loglevel": "1",
            "smtp_tls_policy_maps": "texthash:${config_directory}/tls_policy",
            "maximal_backoff_time": "3600s",
        })
        with open(os.path.join(pf.conf, "tls_policy"), "w") as f:
            # the relayhost is an address: name the certificate identity to match
            f.write(f"[127.0.0.1]:{server.port()} secure match={SERVER_NAME}\n")
        self.addCleanup(pf.remove_files)
        pf.start()
        self.addCleanup(pf.stop)
        self.addCleanup(self.report_postfix, pf)
        return server, pf

    def report(self, server):
        if self._failed():
            print(f"\n--- postern stderr ---\n{server.stderr_text()}")

    def report_postfix(self, pf):
        if self._failed():
            print(f"\n--- postfix maillog ---\n{pf.maillog_text()}")

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        errs = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errs)

    def inject(self, pf, subject):
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=20) as s:
            s.sendmail("alice@client.test", [f"bob@{ACCEPTED_DOMAIN}"],
                       message(1000, subject=subject))

    def test_postfix_relays_over_verified_tls(self):
        server, pf = self.start_pair(self.pki.keyring)
        self.inject(pf, "via postfix")
        m = pf.wait_maillog(r"to=<bob@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*"
                            r"status=(sent|deferred|bounced).*", timeout=60)
        self.assertIn("status=sent", m.group(0), pf.maillog_text())
        log = pf.maillog_text()
        self.assertRegex(log, r"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: "
                              r"TLSv1\.[23]")
        # Postern's side: one session from Postfix that acknowledged one message over TLS
        plog = server.protocol_log()

        def accepted():
            return sum(ProtocolLog.accepted_messages(rows)
                       for rows in plog.sessions().values()
                       if any(r["event"] == "-" for r in rows))
        self.assertEqual(wait_until(accepted, 10, what="the session in the protocol log"), 1)
        self.assertTrue(any(r["event"] == "<" and r["data"].upper() == "STARTTLS"
                            for r in plog.rows()))
        queue = server.queue_list()
        if queue is not None:
            self.assertEqual(len(queue), 1, queue)

    def test_postfix_refuses_wrong_name_certificate(self):
        server, pf = self.start_pair(self.pki.wrong_keyring)
        self.inject(pf, "must not arrive")
        m = pf.wait_maillog(r"to=<bob@example\.test>, relay=.*status=(\w+) \((.*)\)", timeout=60)
        self.assertEqual(m.group(1), "deferred", pf.maillog_text())
        self.assertRegex(m.group(2), r"(?i)certificate|verif", pf.maillog_text())
        self.assertRegex(pf.maillog_text(), r"(?i)server certificate verification failed|"
                                            r"certificate not verified|hostname mismatch|"
                                            r"does not match")
        # still in Postfix's queue, deferred for the same reason
        queue = pf.queue_json()
        self.assertEqual(len(queue), 1, queue)
        self.assertEqual(queue[0]["queue_name"], "deferred", queue)
        self.assertRegex(queue[0]["recipients"][0].get("delay_reason", ""), r"(?i)certificate")
        # and Postern acknowledged nothing
        rows = server.protocol_log().rows()
        self.assertFalse(any(r["event"] == "<" and r["data"].upper().startswith("MAIL")
                             for r in rows), rows)


if __name__ == "__main__":
    unittest.main()

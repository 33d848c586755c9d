"""Real SMTP clients against Postern: swaks, `openssl s_client -starttls smtp`, Python's
smtplib; and TLS versions below 1.2 refused (DESIGN §1, §3 [tls])."""

import re
import smtplib
import ssl
import subprocess
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, SharedServerTestCase, config_text,
                             connector, message, require_tool, run)


class Clients(SharedServerTestCase):
    CONFIG = config_text([connector(require_tls=True)])

    def test_swaks_sends_over_verified_starttls(self):
        require_tool("swaks")
        p = run(["swaks", "--to", f"bob@{ACCEPTED_DOMAIN}", "--from", "alice@client.test",
                 "--server", f"127.0.0.1:{self.server.port()}", "--tls", "--tls-verify",
                 "--tls-ca-path", self.pki.ca, "--tls-sni", SERVER_NAME,
                 "--helo", "swaks.client.postern.test", "--timeout", "20"],
                timeout=60, check=False)
        out = p.stdout + p.stderr
        self.assertEqual(p.returncode, 0, out)
        m = re.search(r"TLS started with cipher (TLSv1\.[23]):(\S+)", out)
        self.assertTrue(m, out)
        self.assertRegex(m.group(2), r"GCM|CHACHA20", out)
        self.assertRegex(out, r"<[-~]\s+250[ -]2\.0\.0 .*queued", out)

    def test_openssl_s_client_verifies_server_and_gets_esmtp(self):
        p = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect",
             f"127.0.0.1:{self.server.port()}", "-CAfile", self.pki.ca,
             "-verify_hostname", SERVER_NAME, "-verify_return_error", "-servername", SERVER_NAME,
             "-crlf", "-ign_eof", "-nocommands"],
            input="EHLO sclient.postern.test\nNOOP\nQUIT\n", capture_output=True, text=True,
            timeout=30)
        out = p.stdout + p.stderr
        self.assertIn("Verify return code: 0 (ok)", p.stdout, out)
        self.assertRegex(out, r"Protocol\s*:\s*TLSv1\.[23]")
        self.assertRegex(out, r"(?m)^250[ -]")
        self.assertRegex(out, r"(?m)^221 ")
        # STARTTLS is not offered again inside TLS (RFC 3207 §4.2)
        after = p.stdout.split("Verify return code", 1)[1]
        self.assertNotRegex(after, r"(?m)^250[ -]STARTTLS")

    def test_smtplib_sends_with_starttls(self):
        with smtplib.SMTP("127.0.0.1", self.server.port(), local_hostname="py.client.postern.test",
                          timeout=20) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            self.assertTrue(s.has_extn("size"))
            # the certificate carries IP SAN 127.0.0.1, which smtplib checks
            s.starttls(context=self.pki.client_context())
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            refused = s.sendmail("alice@client.test",
                                 [f"bob@{ACCEPTED_DOMAIN}", f"carol@{ACCEPTED_DOMAIN}"],
                                 message(4096))
            self.assertEqual(refused, {})
            code, text = s.noop()
            self.assertEqual(code, 250)

    def test_smtplib_plaintext_mail_is_refused(self):
        with smtplib.SMTP("127.0.0.1", self.server.port(), timeout=20) as s:
            s.ehlo()
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                s.sendmail("alice@client.test", [f"bob@{ACCEPTED_DOMAIN}"], message(10))
            self.assertEqual(cm.exception.smtp_code, 530)
            self.assertTrue(cm.exception.smtp_error.startswith(b"5.7.0"), cm.exception.smtp_error)

    def old_tls_context(self, version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")     # let the client offer what it can
        ctx.minimum_version = version
        ctx.maximum_version = version
        return ctx

    def test_tls_1_0_and_1_1_are_refused(self):
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=version.name):
                c = self.smtp()
                c.hello()
                with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
                    c.starttls(self.old_tls_context(version))
                    c.cmd("EHLO old.client.postern.test")

    def test_tls_1_2_with_cbc_only_is_refused_and_aead_accepted(self):
        ctx = self.old_tls_context(ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA"
                        ":@SECLEVEL=0")
        c = self.smtp()
        c.hello()
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            c.starttls(ctx)
            c.cmd("EHLO cbc.client.postern.test")
        ctx = self.old_tls_context(ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("ECDHE+AESGCM")
        c = self.smtp()
        c.hello()
        c.starttls(ctx)
        self.assertEqual(c.sock.version(), "TLSv1.2")
        c.expect("250", "EHLO gcm.client.postern.test")


if __name__ == "__main__":
    unittest.main()

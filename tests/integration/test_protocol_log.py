"""The protocol log in Exchange's CSV format (DESIGN §6), as an administrator reads it."""

import re
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, FIELDS, SharedServerTestCase, config_text,
                             connector)

FIELDS_LINE = "#Fields: " + ",".join(FIELDS)


class ProtocolLogFormat(SharedServerTestCase):

    def session(self, cert=None, evil=None):
        c = self.tls_session(cert)
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        if evil:
            c.send_raw(evil)
            c.reply()
        c.expect("354", "DATA")
        c.send_raw("Subject: secret body text\r\n\r\nthe body must never be logged\r\n.\r\n")
        c.expect("250")
        c.expect("221", "QUIT")
        c.close()
        return self.server.protocol_log().wait_session_closed(c.local_port)

    def test_headers_and_fields(self):
        self.session()
        log = self.server.protocol_log()
        files = log.files()
        self.assertTrue(files)
        self.assertRegex(files[0], r"/smtp-receive/RECV\d{8}-\d+\.log$")
        headers = log.headers()[0]
        self.assertIn("#Software: Postern", headers)
        self.assertTrue(any(h.startswith("#Version:") for h in headers), headers)
        self.assertIn("#Log-type: SMTP Receive Protocol Log", headers)
        self.assertTrue(any(h.startswith("#Date:") for h in headers), headers)
        self.assertIn(FIELDS_LINE, headers)

    def test_session_lines(self):
        rows = self.session()
        self.assertEqual([int(r["sequence-number"]) for r in rows], list(range(len(rows))))
        self.assertEqual(rows[0]["event"], "+")
        self.assertEqual(rows[-1]["event"], "-")
        for r in rows:
            self.assertRegex(r["date-time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(r["connector-id"], "inbound")
            self.assertRegex(r["local-endpoint"], rf"^127\.0\.0\.1:{self.server.port()}$")
            self.assertRegex(r["remote-endpoint"], r"^127\.0\.0\.1:\d+$")
            self.assertIn(r["event"], "+-<>*")
        self.assertEqual(len({r["session-id"] for r in rows}), 1)
        data = [r["data"] for r in rows]
        self.assertIn("EHLO client.postern.test", data)
        self.assertIn("MAIL FROM:<alice@client.test>", data)
        self.assertFalse(any("never be logged" in d or "secret body" in d for d in data))

    def test_tls_outcome_is_logged(self):
        rows = self.session(cert="partner")
        info = "\n".join(r["data"] + " " + r["context"] for r in rows if r["event"] == "*")
        self.assertRegex(info, r"TLSv1\.[23]")
        self.assertRegex(info, r"GCM|CHACHA20")
        self.assertIn("partner.postern.test", info)
        fp = self.pki.fingerprint("partner").split(":", 1)[1]
        flat = re.sub(r"[^0-9a-f]", "", info.lower())
        self.assertIn(fp, flat, info)

    def test_control_bytes_cannot_forge_lines(self):
        rows = self.session(evil=b"NOOP x\x01injected,\"line\x1b[31m\r\n")
        noop = [r for r in rows if r["event"] == "<" and r["data"].startswith("NOOP")]
        self.assertTrue(noop, rows)
        self.assertIn("\\x01", noop[0]["data"].lower())
        self.assertIn("\\x1b", noop[0]["data"].lower())
        raw = open(self.server.protocol_log().files()[0], "rb").read()
        self.assertNotIn(b"\x1b", raw)
        self.assertFalse(any(l.startswith(b"injected") for l in raw.split(b"\n")))


if __name__ == "__main__":
    unittest.main()

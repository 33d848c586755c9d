"""Attacks on the SMTP framing: STARTTLS command injection (CVE-2011-0411 class) and SMTP
smuggling (end-of-data sequences other than <CRLF>.<CRLF>), DESIGN §5."""

import ssl
import unittest

from postern_testlib import ACCEPTED_DOMAIN, SharedServerTestCase, ProtocolLog


class StartTlsInjection(SharedServerTestCase):

    def test_command_pipelined_with_starttls_is_not_answered_inside_tls(self):
        c = self.smtp()
        c.hello()
        # one write: STARTTLS and a plaintext command an attacker slipped in after it
        c.send_raw(b"STARTTLS\r\nEHLO evil.postern.test\r\n")
        lines = c.expect("220")
        # nothing may follow the 220 in plaintext either
        self.assertEqual(c.buf, b"", f"bytes after 220 in plaintext: {c.buf!r}")
        c.sock = self.pki.client_context().wrap_socket(c.sock, server_hostname="mx.postern.test")
        # The session starts over after TLS (RFC 3207 §4.2): MAIL without a new EHLO is a
        # sequence error. Had the injected EHLO been answered inside TLS, its multi-line 250
        # would arrive first and MAIL would be accepted.
        c.send("MAIL FROM:<alice@client.test>")
        code, lines = c.reply()
        self.assertEqual(code, 503, f"first reply inside TLS: {lines}\n" + "\n".join(c.transcript))
        self.assertEqual(len(lines), 1, lines)
        c.expect("250", "EHLO good.postern.test")
        c.expect("250", "MAIL FROM:<alice@client.test>")


SMUGGLED = ("MAIL FROM:<mallory@evil.test>\r\n"
            f"RCPT TO:<victim@{ACCEPTED_DOMAIN}>\r\n"
            "DATA\r\n"
            "From: <ceo@example.test>\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
            ".\r\n")

FORMS = {
    "LF.LF": "\n.\n",
    "LF.CRLF": "\n.\r\n",
    "CR.CR": "\r.\r",
    "CRLF.LF": "\r\n.\n",
    "CRLF.CR": "\r\n.\r",
}


class Smuggling(SharedServerTestCase):

    def smuggle(self, separator):
        c = self.smtp()
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw("From: <alice@client.test>\r\nSubject: carrier\r\n\r\nhello" + separator
                   + SMUGGLED + "QUIT\r\n")
        replies = c.read_until_closed(timeout=15)
        return c, replies

    def check(self, name):
        c, replies = self.smuggle(FORMS[name])
        codes = [code for code, _ in replies]
        transcript = "\n".join(c.transcript)
        # never a second transaction: no second 354, at most one 250 for end of data
        self.assertNotIn(354, codes, transcript)
        self.assertLessEqual(codes.count(250), 1, transcript)
        rows = self.server.protocol_log().wait_session_closed(c.local_port)
        received = [r["data"] for r in rows if r["event"] == "<"]
        self.assertFalse(any("mallory" in d for d in received),
                         f"smuggled MAIL was read as a command: {received}")
        self.assertLessEqual(ProtocolLog.accepted_messages(rows), 1, rows)
        queue = self.server.queue_list()
        if queue is not None:
            self.assertFalse(any("mallory" in str(e) for e in queue), queue)
        # DESIGN §5: bare CR or LF in DATA -> read to the first <CRLF>.<CRLF>, store
        # nothing, 550 5.6.0. Every form here contains a bare CR or LF.
        self.assertEqual(replies[0][0], 550, transcript)
        self.assertTrue(replies[0][1][-1].startswith("550 5.6.0"), transcript)
        self.assertEqual(ProtocolLog.accepted_messages(rows), 0, rows)

    def test_lf_dot_lf(self):
        self.check("LF.LF")

    def test_lf_dot_crlf(self):
        self.check("LF.CRLF")

    def test_cr_dot_cr(self):
        self.check("CR.CR")

    def test_crlf_dot_lf(self):
        self.check("CRLF.LF")

    def test_crlf_dot_cr(self):
        self.check("CRLF.CR")

    def test_proper_end_of_data_then_pipelined_commands_are_two_messages(self):
        # control: the real terminator followed by a pipelined transaction is legitimate
        c = self.smtp()
        c.hello()
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw("Subject: first\r\n\r\nhello\r\n.\r\n")
        c.expect("250")
        c.send_raw("MAIL FROM:<alice@client.test>\r\n"
                   f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>\r\nDATA\r\n")
        c.expect("250")
        c.expect("250")
        c.expect("354")
        c.send_raw("Subject: second\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        c.expect("250")
        c.expect("221")
        rows = self.server.protocol_log().wait_session_closed(c.local_port)
        self.assertEqual(ProtocolLog.accepted_messages(rows), 2, rows)


class CommandLineLimits(SharedServerTestCase):

    def test_command_line_over_2048_octets_gets_500_552(self):
        c = self.smtp()
        c.hello()
        c.expect("500 5.5.2", "NOOP " + "a" * 2100)
        c.expect("250", "NOOP")

    def test_nul_in_command_gets_500_552(self):
        c = self.smtp()
        c.hello()
        c.send_raw(b"MAIL FROM:<alice\x00@client.test>\r\n")
        c.expect("500 5.5.2")


if __name__ == "__main__":
    unittest.main()

"""[debug] switches in both directions (DESIGN §3 [debug]).

One message goes in over STARTTLS and out over STARTTLS to a fake next hop. With every
switch on, the server log shows the receive side's decisions (connector chosen and why,
the limits, the TLS verdict, the relay decision), each naming its connector; every line in
and out on both sides; handshake messages by name in both directions (ClientHello,
ServerHello, Certificate, Finished); and save_outbound_dir is created 0700 with a copy of
the message sent. With every switch off, the same traffic leaves none of these lines.
"""

import os
import re
import stat
import unittest

from delivery_fakes import DELIVERY_TIMEOUT, NextHop
from postern_testlib import (ACCEPTED_DOMAIN, SERVER_NAME, PosternTestCase, SmtpConn, config_text, connector,
                             message, wait_until)


class DebugSwitches(PosternTestCase):

    def start_with(self, debug):
        self.hop = NextHop("server")
        self.addCleanup(self.hop.stop)
        return self.start(config_text(
            [connector(name="inbound", remote_ip_ranges=["127.0.0.0/8"], accept_any_recipient=True)],
            send_connectors=[{"name": "to-partner", "address_spaces": ["partner.test"],
                              "smart_hosts": [f"127.0.0.1:{self.hop.port}"], "require_tls": True,
                              "tls_auth_level": "domain_validation", "tls_domain": SERVER_NAME}],
            debug=debug))

    def traffic(self, server):
        c = SmtpConn("127.0.0.1", server.port())
        c.hello()
        c.starttls(self.pki.client_context())
        c.expect("250", "EHLO client.postern.test")
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", "RCPT TO:<bob@partner.test>")
        c.expect("354", "DATA")
        c.send_raw(message(300, subject="traced", rcpt="bob@partner.test") + ".\r\n")
        c.expect("250")
        c.expect("221", "QUIT")
        c.close()
        wait_until(lambda: self.hop.received(), DELIVERY_TIMEOUT, what="the message at the next hop")

    def test_every_switch_on(self):
        server = self.start_with({"smtp_server_debug": True, "smtp_client_debug": True, "smtp_io_trace": True,
                                  "trace_tls_handshake": True, "save_outbound_dir": "saved"})
        saved = os.path.join(server.data_dir, "saved")
        self.assertTrue(os.path.isdir(saved), "save_outbound_dir was not created")
        self.assertEqual(stat.S_IMODE(os.stat(saved).st_mode), 0o700)
        self.traffic(server)
        log = wait_until(lambda: (lambda t: t if re.search(r"tls-trace to 127\.0\.0\.1:\d+ <<< Finished", t)
                                  else None)(server.stderr_text()),
                         DELIVERY_TIMEOUT, what="the outbound handshake trace")
        # Receive side: decisions, each line naming its connector.
        self.assertRegex(log, r"smtp-server inbound 127\.0\.0\.1:\d+: chosen on 127\.0\.0\.1:\d+ "
                              r"\(bind 127\.0\.0\.1:0, remote_ip_ranges 127\.0\.0\.0/8\); tls starttls; "
                              r"sessions 1/\d+ in all")
        self.assertRegex(log, r"smtp-server inbound 127\.0\.0\.1:\d+: TLS protocol=TLSv1\.[23]")
        self.assertRegex(log, r"smtp-server inbound 127\.0\.0\.1:\d+: verdict: encryption_only achieved")
        self.assertRegex(log, r"smtp-server inbound 127\.0\.0\.1:\d+: recipient bob@partner\.test taken: relay "
                              r"permitted")
        self.assertRegex(log, r"smtp-server inbound 127\.0\.0\.1:\d+: message received")
        # IO both ways, both sides.
        self.assertRegex(log, r"smtp-io inbound 127\.0\.0\.1:\d+ < MAIL FROM:<alice@client\.test>")
        self.assertRegex(log, r"smtp-io inbound 127\.0\.0\.1:\d+ > 250 ")
        self.assertRegex(log, r"smtp-io inbound 127\.0\.0\.1:\d+ < Subject: traced")
        self.assertRegex(log, r"smtp-io 127\.0\.0\.1:\d+ > RCPT TO:<bob@partner\.test>")
        self.assertRegex(log, r"smtp-io 127\.0\.0\.1:\d+ < 250")
        # Handshakes by message name, both directions.
        for line in (r"tls-trace inbound 127\.0\.0\.1:\d+ <<< ClientHello \(\d+ octets\)",
                     r"tls-trace inbound 127\.0\.0\.1:\d+ >>> ServerHello",
                     r"tls-trace inbound 127\.0\.0\.1:\d+ >>> Certificate ",
                     r"tls-trace inbound 127\.0\.0\.1:\d+ <<< Finished",
                     r"tls-trace to 127\.0\.0\.1:\d+ >>> ClientHello",
                     r"tls-trace to 127\.0\.0\.1:\d+ <<< ServerHello",
                     r"tls-trace to 127\.0\.0\.1:\d+ <<< Certificate "):
            self.assertRegex(log, line)
        self.assertNotRegex(log, r"tls-trace .* type=")
        # The copy of what was sent.
        files = wait_until(lambda: os.listdir(saved), DELIVERY_TIMEOUT, what="a file in save_outbound_dir")
        path = os.path.join(saved, files[0])
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, errors="replace") as f:
            self.assertIn("Subject: traced", f.read())

    def test_every_switch_off_leaves_no_trace(self):
        server = self.start_with({"report_tls_handshake_errors": True})
        self.traffic(server)
        log = server.stderr_text()
        for marker in ("smtp-server ", "smtp-io ", "tls-trace ", "smtp-client "):
            self.assertNotIn(marker, log)
        self.assertFalse(os.path.exists(os.path.join(server.data_dir, "saved")))


if __name__ == "__main__":
    unittest.main()

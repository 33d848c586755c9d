"""Refused deliveries bounce at expiry (DESIGN.md §3 [queue] retry/expire, require_tls:
"defer, then bounce (DSN)"; RFC 3464 delivery status notifications).

[queue] expire is a few seconds and retry one second, so the message that a require_tls
connector may not send (the next hop offers no STARTTLS, or its certificate has the
wrong name) expires within the test. The sender's domain routes to a fake next hop that
records what it receives: the DSN comes from the null sender, is multipart/report with a
message/delivery-status part (Action: failed) for the refused recipient only, and its
text names the TLS reason. The refused next hops never see MAIL, and the message leaves
the queue. With RET=FULL the bounce returns the whole message only up to [queue]
bounce_size_limit (2KB here); a larger one comes back as its headers, and the text says so.
A bounce (null sender) that cannot be delivered is logged at warning with its id and reason
and reported to [queue] double_bounce_recipient, from the null sender again.
"""

import re
import email
import email.policy
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, NextHop, connector_lines, relay_connector,
                            require_delivery, submit, wait_sessions_logged)
from postern_testlib import SERVER_NAME, PosternTestCase, config_text, hold_send_connector, wait_until

EXPIRE = "3s"


class ExpiryBounce(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.notls = NextHop("no-starttls")
        self.wrong = NextHop("wrong")
        self.sender_hop = NextHop("no-starttls")      # client.test: where bounces go
        for h in (self.notls, self.wrong, self.sender_hop):
            self.addCleanup(h.stop)
        required = {"require_tls": True, "tls_auth_level": "domain_validation",
                    "tls_domain": SERVER_NAME}
        self.a = self.start(config_text(
            [relay_connector()],
            queue={"retry": ["1s"], "expire": EXPIRE, "delay_notice": "1h",
                   "bounce_size_limit": "2KB", "double_bounce_recipient": "postmaster@client.test"},
            send_connectors=[
                dict(name="to-notls", address_spaces=["notls.test"],
                     smart_hosts=[f"127.0.0.1:{self.notls.port}"], **required),
                dict(name="to-wrong", address_spaces=["wrong.test"],
                     smart_hosts=[f"127.0.0.1:{self.wrong.port}"], **required),
                {"name": "to-sender", "address_spaces": ["client.test"],
                 "smart_hosts": [f"127.0.0.1:{self.sender_hop.port}"]},
                hold_send_connector()]))
        require_delivery(self, self.a)

    def bounces(self):
        """Messages the sender's next hop received, parsed, with their envelope sender."""
        out = []
        for _, mail_from, rcpts, data in self.sender_hop.received():
            out.append((mail_from, rcpts, email.message_from_string(data, policy=email.policy.default), data))
        return out

    def dsn_for(self, rcpt):
        for mail_from, rcpts, msg, raw in self.bounces():
            if rcpt in raw:
                return mail_from, rcpts, msg, raw
        return None

    def check_dsn(self, rcpt, original_mid, reason_pattern):
        got = wait_until(lambda: self.dsn_for(rcpt), DELIVERY_TIMEOUT,
                         what=f"the DSN for {rcpt} at the sender's next hop")
        mail_from, rcpts, msg, raw = got
        # From the null sender (RFC 5321 §4.5.5), to the original sender.
        self.assertTrue(mail_from.startswith("MAIL FROM:<>"), mail_from)
        self.assertEqual(rcpts, ["RCPT TO:<alice@client.test>"])
        # RFC 3464 §2: multipart/report; report-type=delivery-status.
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        parts = list(msg.iter_parts())
        self.assertGreaterEqual(len(parts), 2)
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        human = parts[0].get_content()
        self.assertIn(f"<{rcpt}>", human)
        self.assertRegex(human, reason_pattern)
        # The fields as sent (the parser would refold long ones).
        status = raw[raw.index("Content-Type: message/delivery-status"):]
        # The status fields follow RFC 5322 syntax: long ones are folded; read them unfolded.
        status = re.sub(r"\r\n(?=[ \t])", "", status)
        self.assertRegex(status, r"(?m)^Reporting-MTA: dns; " + SERVER_NAME.replace(".", r"\."))
        self.assertRegex(status, rf"(?m)^Final-Recipient: rfc822; {rcpt}")
        self.assertRegex(status, r"(?m)^Action: failed")
        self.assertRegex(status, r"(?m)^Status: [45]\.\d+\.\d+")
        self.assertRegex(status, r"(?m)^Diagnostic-Code: smtp; .*" + reason_pattern)
        # The original's headers come back (text/rfc822-headers), so the sender can tell which.
        self.assertIn(original_mid, raw)
        return msg

    def test_refused_messages_bounce_at_expiry_with_the_tls_reason(self):
        mid_notls = submit(self.a, "bob@notls.test", "no STARTTLS there")
        mid_wrong = submit(self.a, "carol@wrong.test", "wrong name there")

        self.check_dsn("bob@notls.test", mid_notls, r"STARTTLS not offered")
        self.check_dsn("carol@wrong.test", mid_wrong, r"certificate name mismatch")
        self.assertRegex(self.dsn_for("bob@notls.test")[3], r"expired after " + EXPIRE + " in the queue")
        # One DSN per message, each naming only its own recipient.
        self.assertEqual(len(self.bounces()), 2)
        self.assertNotIn("carol@wrong.test", self.dsn_for("bob@notls.test")[3])

        # Refused next hops never saw MAIL, however often they were tried.
        for hop in (self.notls, self.wrong):
            self.assertEqual(hop.received(), [])
            self.assertEqual(hop.mail_commands, 0)
        self.assertGreaterEqual(self.notls.connections, 1)
        for name in ("to-notls", "to-wrong"):
            self.assertFalse(any(l.startswith("MAIL FROM") for l in connector_lines(self.a, name)))
        # The DSN itself went out through the sender's connector.
        wait_sessions_logged(self.a, ["to-sender"])
        self.assertTrue(any(l.startswith("MAIL FROM:<>") for l in connector_lines(self.a, "to-sender")))
        if self.a.queue_list() is not None:
            wait_until(lambda: self.a.queue_list() == [], DELIVERY_TIMEOUT,
                       what="the queue to be empty after the bounces went out")

    def test_an_undeliverable_bounce_is_logged_and_reported_to_double_bounce_recipient(self):
        # A bounce (null sender) whose recipient's next hop may not be used: it expires too.
        submit(self.a, "bob@notls.test", "a bounce from elsewhere", sender="")
        line = wait_until(lambda: re.search(r"warning delivery: (\S+): undeliverable bounce \(null sender\) "
                                            r"to <bob@notls\.test>: (.*)", self.a.stderr_text()),
                          DELIVERY_TIMEOUT, what="the warning about the undeliverable bounce")
        self.assertRegex(line.group(2), r"STARTTLS not offered.*; reported to double_bounce_recipient "
                                        r"postmaster@client\.test")
        # The report: from the null sender, to the postmaster address, naming the lost recipient.
        got = wait_until(lambda: [b for b in self.bounces() if "RCPT TO:<postmaster@client.test>" in b[1]],
                         DELIVERY_TIMEOUT, what="the double bounce at the sender's next hop")
        mail_from, rcpts, _, raw = got[0]
        self.assertTrue(mail_from.startswith("MAIL FROM:<>"), mail_from)
        self.assertRegex(raw, r"(?m)^Final-Recipient: rfc822; bob@notls\.test")
        self.assertIn("a bounce from elsewhere", raw)
        self.assertEqual(len(self.bounces()), 1)

    def submit_ret_full(self, rcpt, subject, size):
        """One message with RET=FULL (RFC 3461 §4.3); returns its Message-ID."""
        return submit(self.a, rcpt, subject, size=size, mail_parameters=" RET=FULL")

    def test_ret_full_returns_the_message_only_up_to_bounce_size_limit(self):
        small = self.submit_ret_full("dave@notls.test", "small enough", 500)
        large = self.submit_ret_full("erin@notls.test", "too large to return", 8000)

        msg = self.check_dsn("dave@notls.test", small, r"STARTTLS not offered")
        parts = list(msg.iter_parts())
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        self.assertIn("x" * 76 + "\r\nend\r\n", self.dsn_for("dave@notls.test")[3])
        self.assertNotIn("only its headers", parts[0].get_content())

        msg = self.check_dsn("erin@notls.test", large, r"STARTTLS not offered")
        parts = list(msg.iter_parts())
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertIn("The original message was larger than 2048 bytes; only its headers are included.",
                      parts[0].get_content())
        raw = self.dsn_for("erin@notls.test")[3]
        self.assertIn("Subject: too large to return", raw)
        self.assertNotIn("x" * 76, raw)
        self.assertLess(len(raw), 4096)


if __name__ == "__main__":
    unittest.main()

"""Mutual TLS on a receive connector (DESIGN §3 partners, §5 554 5.7.0).

The handshake completes whatever the client presents (the certificate is requested, not
required); only a certificate that chains to the key ring's root AND matches
partner_names (or partner_fingerprints) lets the client past 554 5.7.0.
"""

import re
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, PARTNER_NAME, SharedServerTestCase, config_text,
                             connector, message, pki)


def mutual_connector(**kw):
    c = connector(require_tls=True, auth_mechanisms=["mutual_tls"],
                  permission_groups=["partners"])
    c.update(kw)
    return c


class MutualTlsByName(SharedServerTestCase):
    @classmethod
    def config(cls):
        return config_text([mutual_connector(partner_names=[PARTNER_NAME])])

    def refused(self, cert):
        """The handshake completes, then every command but QUIT gets 554 5.7.0."""
        c = self.smtp()
        c.hello()
        c.starttls(self.pki.client_context(cert))
        c.expect("554 5.7.0 Client certificate required", "EHLO client.postern.test")
        c.expect("554 5.7.0", "MAIL FROM:<alice@client.test>")
        c.expect("554 5.7.0", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("554 5.7.0", "DATA")
        c.expect("221", "QUIT")
        return c

    def test_listed_partner_is_accepted(self):
        c = self.tls_session(cert="partner")
        c.expect("250", "MAIL FROM:<alice@partner.postern.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")
        c.expect("354", "DATA")
        c.send_raw(message(200) + ".\r\n")
        c.expect("250")
        c.expect("221", "QUIT")

    def test_no_client_certificate_is_refused(self):
        self.refused(None)

    def test_unlisted_name_is_refused(self):
        self.refused("unlisted")

    def test_self_signed_certificate_with_partner_name_is_refused(self):
        self.refused("selfsigned")

    def test_refusal_reason_is_in_protocol_log(self):
        c = self.refused("unlisted")
        c.close()
        rows = self.server.protocol_log().wait_session_closed(c.local_port)
        info = " ".join(r["data"] + " " + r["context"] for r in rows if r["event"] == "*")
        # the TLS outcome names the peer certificate (DESIGN §6)
        self.assertIn("stranger.postern.test", info, rows)


class MutualTlsByFingerprint(SharedServerTestCase):
    @classmethod
    def config(cls):
        return config_text([mutual_connector(partner_fingerprints=[pki().fingerprint("partner")])])

    def test_partner_fingerprint_is_accepted(self):
        c = self.tls_session(cert="partner")
        c.expect("250", "MAIL FROM:<alice@partner.postern.test>")
        c.expect("250", f"RCPT TO:<bob@{ACCEPTED_DOMAIN}>")

    def test_other_verified_certificate_is_refused(self):
        c = self.smtp()
        c.hello()
        c.starttls(self.pki.client_context("unlisted"))
        c.expect("554 5.7.0", "MAIL FROM:<alice@client.test>")

    def test_self_signed_certificate_is_refused(self):
        c = self.smtp()
        c.hello()
        c.starttls(self.pki.client_context("selfsigned"))
        c.expect("554 5.7.0", "MAIL FROM:<alice@client.test>")


if __name__ == "__main__":
    unittest.main()

"""A certificate renewed into the key ring is served after a reload (DESIGN.md §1 "restart
the Router": `postern reload` / SIGHUP: new certificates take effect, no connection is cut
mid-message).

The key ring is made with the command line alone (`postern ca`, `postern keyring create,
request, trust, install`), the server runs on it, and the renewal is what an administrator
does: a new request under a new label, the CA signs it, install, `keyring default NEW`,
then SIGHUP. A session opened before the reload, in the middle of DATA, finishes its
message with 250 on the old certificate; a new connection sees the new one. A broken key
ring at reload time (a stash with the wrong password) leaves the old certificate served
and says why in the server log.
"""

import os
import signal
import smtplib
import ssl
import unittest

from postern_testlib import (ACCEPTED_DOMAIN, KEYRING_PASSWORD, SERVER_NAME, config_text, connector,
                             message, start_postern, wait_until)
from test_keyring import KeyringTestCase

RELOAD_TIMEOUT = 30


def der_of(pem_file):
    with open(pem_file) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class ServedKeyringTestCase(KeyringTestCase):
    """A server running on a key ring made by the CLI, and the renewal walk.

    Also used by test_control.py (reload through the control socket)."""

    CONNECTOR = {}

    def start_server(self, **server_kw):
        self.ca("init", "--subject", "CN=Postern Lab Root CA,O=Postern Tests")
        csr = self.make_ring_with_request("mx")
        self.ca("sign", csr, "--out", self.path("mx.pem"))
        self.ring("trust", self.path("lab", "ca.pem"))
        self.ring("install", self.path("mx.pem"))
        self.server = start_postern(config_text([connector(**self.CONNECTOR)], **server_kw),
                                    keyring=self.keyring)
        self.addCleanup(self.stop_server)
        # From here on the CLI works on the server's own key ring, found through its config.
        self.client_ctx = ssl.create_default_context(cafile=self.path("lab", "ca.pem"))
        return self.server

    def stop_server(self):
        rc = self.server.stop()
        if getattr(self, "killed_on_purpose", False) and rc == -signal.SIGKILL:
            rc = 0
        if rc not in (0, None) or self._failed():
            print(f"\n--- postern stderr ---\n{self.server.stderr_text()}")
        else:
            self.server.remove_files()

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        errs = getattr(result, "errors", []) + getattr(result, "failures", [])
        return any(t is self for t, _ in errs)

    def served(self, *args, expect=0):
        """`postern keyring -c SERVER_CONFIG ...`: the key ring the server reads."""
        return self.postern("keyring", "-c", self.server.config_file, *args, expect=expect)

    def renew(self, label):
        """New key and request under `label`, signed by the lab CA, installed, made default.
        Returns the new certificate's PEM file."""
        csr = self.path(label + ".csr")
        self.served("request", "--subject", f"CN={SERVER_NAME},O=Postern Tests",
                    "--san", f"DNS:{SERVER_NAME},IP:127.0.0.1", "--label", label, "--out", csr)
        pem = self.path(label + ".pem")
        self.ca("sign", csr, "--out", pem, "--days", "60")
        self.served("install", pem)
        self.served("default", label)
        return pem

    def log_count(self, text):
        return self.server.stderr_text().count(text)

    def sighup_and_wait(self, outcome):
        """SIGHUP, then wait (bounded) for one more `outcome` line in the server log."""
        before = self.log_count(outcome)
        self.server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_count(outcome) > before, RELOAD_TIMEOUT,
                   what=f"{outcome!r} in the server log after SIGHUP")

    def new_session(self):
        """smtplib over STARTTLS, verified against the lab CA (the IP SAN 127.0.0.1)."""
        s = smtplib.SMTP("127.0.0.1", self.server.port(), timeout=15)
        self.addCleanup(self._close, s)
        s.ehlo("client.postern.test")
        code, _ = s.starttls(context=self.client_ctx)
        self.assertEqual(code, 220)
        s.ehlo("client.postern.test")
        return s

    @staticmethod
    def _close(s):
        try:
            s.close()
        except Exception:
            pass

    @staticmethod
    def peer_der(session):
        return session.sock.getpeercert(binary_form=True)

    def served_certificate(self):
        s = self.new_session()
        der = self.peer_der(s)
        s.quit()
        return der

    def send_one(self, session):
        session.sendmail("alice@client.test", [f"bob@{ACCEPTED_DOMAIN}"], message(100))


class RenewalAndReload(ServedKeyringTestCase):
    def test_renewed_certificate_served_to_new_connections_while_old_session_finishes(self):
        self.start_server()
        old_der = der_of(self.path("mx.pem"))
        self.assertEqual(self.served_certificate(), old_der)

        # Session A: in the middle of DATA when the certificate changes.
        a = self.new_session()
        self.assertEqual(self.peer_der(a), old_der)
        self.assertEqual(a.mail("alice@client.test")[0], 250)
        self.assertEqual(a.rcpt(f"bob@{ACCEPTED_DOMAIN}")[0], 250)
        self.assertEqual(a.docmd("DATA")[0], 354)
        body = message(2000, subject="begun before the reload").replace("\r\n", "\n").split("\n")
        half = len(body) // 2
        a.send(("\r\n".join(body[:half]) + "\r\n").encode())

        new_pem = self.renew("mx-2")
        new_der = der_of(new_pem)
        self.assertNotEqual(new_der, old_der)
        self.sighup_and_wait("reload: done")
        self.assertIn('serving certificate "mx-2"', self.server.stderr_text())

        # Connection B sees the new certificate...
        b = self.new_session()
        self.assertEqual(self.peer_der(b), new_der)
        self.send_one(b)
        b.quit()

        # ...while A, still on the old one, finishes its message.
        a.send(("\r\n".join(body[half:]) + "\r\n.\r\n").encode())
        code, text = a.getreply()
        self.assertEqual(code, 250, text)
        self.assertEqual(self.peer_der(a), old_der)
        a.quit()

    def test_broken_keyring_at_reload_keeps_the_old_certificate(self):
        self.start_server()
        old_der = der_of(self.path("mx.pem"))
        stash = os.path.join(self.server.data_dir, "keyring.sth")
        with open(stash, "w") as f:
            f.write("not " + KEYRING_PASSWORD + "\n")
        os.chmod(stash, 0o600)

        self.sighup_and_wait("the running configuration and key ring stay in place")
        log = self.server.stderr_text()
        reload_part = log[log.rindex("reload: reading"):]
        self.assertIn("error", reload_part)
        self.assertNotIn("reload: done", reload_part)
        self.assertNotIn(KEYRING_PASSWORD, log)

        self.assertEqual(self.served_certificate(), old_der)
        s = self.new_session()
        self.send_one(s)
        s.quit()
        self.assertTrue(self.server.running())

    def test_keyring_replaced_by_garbage_keeps_the_old_certificate(self):
        self.start_server()
        old_der = der_of(self.path("mx.pem"))
        with open(os.path.join(self.server.data_dir, "keyring.p12"), "wb") as f:
            f.write(b"\x30\x03not a key ring")
        self.sighup_and_wait("the running configuration and key ring stay in place")
        self.assertEqual(self.served_certificate(), old_der)


if __name__ == "__main__":
    unittest.main()

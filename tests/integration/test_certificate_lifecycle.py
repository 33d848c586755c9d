"""Certificate lifecycle (DESIGN §4 keyring renew, import, remove).

- `keyring renew mx` under load: a new key and CSR for mx's names, kept as the pending
  renewal "mx-renewal" while mx keeps serving (`keyring list` shows it); the lab CA signs
  it; `keyring install` replaces mx's certificate and key under the same label, so the
  configuration (which names "mx") is untouched; `reload` serves the new certificate to new
  connections. Sessions sending mail all the while all end with 250: none is cut.
- `keyring import` of a PKCS#12 (.pfx) made by `openssl pkcs12 -export` and of a PEM key
  with its chain: the entry serves after a reload; a file whose chain does not reach a
  trusted root is refused and the key ring is unchanged.
- `keyring remove` and `keyring label` of a label the configuration uses are refused,
  naming the reference; an unused one goes.
"""

import json
import os
import ssl
import threading
import unittest

from postern_testlib import ACCEPTED_DOMAIN, KEYRING_PASSWORD, SERVER_NAME, message, wait_until
from test_keyring_reload import ServedKeyringTestCase, der_of


class Lifecycle(ServedKeyringTestCase):

    def listed(self):
        return {e["label"]: e for e in json.loads(self.served("list", "--json").stdout)["entries"]}

    def reload(self):
        p = self.postern("reload", "-c", self.server.config_file)
        self.assertIn("reloaded", p.stdout)

    def test_renewal_under_load_cuts_no_session(self):
        self.start_server(tls={"certificate": "mx"})
        old_der = der_of(self.path("mx.pem"))
        self.assertEqual(self.served_certificate(), old_der)

        # Load: four senders, each sending one message after another over STARTTLS.
        stop = threading.Event()
        results, failures = [], []

        def sender():
            while not stop.is_set():
                try:
                    s = self.new_session()
                    s.sendmail("alice@client.test", [f"bob@{ACCEPTED_DOMAIN}"], message(2000))
                    results.append(self.peer_der(s))
                    s.quit()
                except Exception as e:            # a cut session is exactly what must not happen
                    failures.append(repr(e))
        threads = [threading.Thread(target=sender) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(results) >= 8, 60, what="load before the renewal")
            csr = self.path("mx-renew.csr")
            out = self.served("renew", "mx", "--out", csr).stdout
            self.assertIn('requested as "mx-renewal"', out)
            entries = self.listed()
            self.assertEqual(entries["mx"]["renewal_pending"], "mx-renewal")
            self.assertEqual(entries["mx-renewal"]["renews"], "mx")
            self.assertEqual(entries["mx-renewal"]["names"], [f"DNS:{SERVER_NAME}", "IP:127.0.0.1"])
            self.assertRegex(self.served("list").stdout, r"mx\s+server \(renewal pending: mx-renewal\)")
            # Still the old certificate while the renewal waits for its CA.
            self.assertEqual(self.served_certificate(), old_der)

            pem = self.path("mx-new.pem")
            self.ca("sign", csr, "--out", pem, "--days", "60")
            out = self.served("install", pem).stdout
            self.assertIn('installed "mx"', out)
            self.assertNotIn("mx-renewal", self.listed())
            self.reload()
            new_der = der_of(pem)
            wait_until(lambda: new_der in results[-4:], 60, what="sessions on the renewed certificate")
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertEqual(failures, [])
        self.assertIn(old_der, results)
        self.assertEqual(self.served_certificate(), new_der)
        # The configuration was not touched: it still names "mx".
        with open(self.server.config_file) as f:
            self.assertIn('certificate = "mx"', f.read())
        # A second renewal while none is pending works again; two at once do not.
        self.served("renew", "mx", "--out", self.path("again.csr"))
        p = self.served("renew", "mx", "--out", self.path("twice.csr"), expect=1)
        self.assertIn('a renewal of "mx" is already pending as "mx-renewal"', p.stderr)

    def make_foreign_leaf(self, name):
        """A key and certificate for `name` signed by the lab CA with openssl alone, as
        another tool would have made them."""
        key, csr, pem = self.path(name + ".key"), self.path(name + ".csr"), self.path(name + ".pem")
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", key, "-out", csr, "-subj", f"/O=Postern Tests/CN={SERVER_NAME}",
                     "-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1")
        self.ca("sign", csr, "--out", pem, "--days", "40")
        return key, pem

    def test_import_pkcs12_and_pem_then_serve(self):
        self.start_server()
        key, pem = self.make_foreign_leaf("imported")
        pfx = self.path("imported.pfx")
        pass_file = self.path("pfx.pass")
        with open(pass_file, "w") as f:
            f.write("pfx secret\n")
        os.chmod(pass_file, 0o600)
        self.openssl("pkcs12", "-export", "-inkey", key, "-in", pem, "-certfile", self.path("lab", "ca.pem"),
                     "-name", "from-windows", "-passout", "pass:pfx secret", "-out", pfx)
        out = self.served("import", pfx, "--import-password-file", pass_file).stdout
        self.assertIn('imported "from-windows"', out)
        self.assertEqual(self.listed()["from-windows"]["role"], "server")
        # The root in the .pfx was not added as a new trust anchor: the ring had it already.
        roots = [e for e in self.listed().values() if e["role"] == "root"]
        self.assertEqual(len(roots), 1)

        key2, pem2 = self.make_foreign_leaf("pem-import")
        out = self.served("import", pem2, "--key", key2, "--label", "from-pem").stdout
        self.assertIn('imported "from-pem"', out)

        # Serve the PKCS#12 one: set it as [tls] certificate, reload, see it.
        self.postern("config", "set", "-c", self.server.config_file, "tls", "certificate=from-windows")
        self.reload()
        self.assertEqual(self.served_certificate(), der_of(pem))

        # Wrong password, and a chain to a root the ring does not trust: refused, nothing changes.
        with open(pass_file, "w") as f:
            f.write("wrong\n")
        p = self.served("import", pfx, "--import-password-file", pass_file, "--label", "x", expect=1)
        self.assertIn("wrong password", p.stderr)
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", self.path("self.key"), "-out", self.path("self.pem"), "-days", "30",
                     "-subj", f"/CN={SERVER_NAME}", "-addext", "extendedKeyUsage=serverAuth")
        before = set(self.listed())
        p = self.served("import", self.path("self.pem"), "--key", self.path("self.key"), expect=1)
        self.assertIn("does not chain to a trusted root of the key ring", p.stderr)
        self.assertEqual(set(self.listed()), before)

    def test_referenced_labels_cannot_be_removed_or_renamed(self):
        self.start_server(tls={"certificate": "mx"})
        p = self.served("remove", "mx", expect=1)
        self.assertIn('cannot remove "mx"', p.stderr)
        self.assertIn("[tls] certificate", p.stderr)
        p = self.served("label", "mx", "mx-old", expect=1)
        self.assertIn('cannot rename "mx"', p.stderr)
        self.assertIn("mx", self.listed())
        # An unused entry goes.
        csr = self.path("spare.csr")
        self.served("request", "--subject", f"CN=spare.{ACCEPTED_DOMAIN}", "--label", "spare", "--out", csr)
        self.served("remove", "spare")
        self.assertNotIn("spare", self.listed())


if __name__ == "__main__":
    unittest.main()

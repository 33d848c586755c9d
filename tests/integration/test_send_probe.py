"""`postern probe` and `postern send` (DESIGN.md §1, §4) against real servers on loopback.

- probe against a `postern serve` whose certificate (mx.postern.test, test CA) is checked
  with the right CA and name: exit 0, domain_validation; a wrong --tls-domain: exit 1
  (certificate_validation only); no --ca: the chain is not verified (system store).
- probe against a fake server written here that only speaks TLS 1.0 (OpenSSL security
  level 0): the plain message that Postern requires TLS 1.2, exit 1.
- send delivers over verified STARTTLS (exit 0, 250, TLS 1.2+), refuses to send MAIL to a
  server whose certificate has the wrong name, and reports the 530 of a require_tls
  connector when asked to send in plaintext (the final reply printed, exit 1).
- send --client-certificate LABEL presents a key ring certificate (key ring from --keyring
  and --stash, or from -c FILE) to a mutual-TLS connector and is let in; without it the
  server's 554 5.7.0 is printed and the exit is 1. probe names the certificate it presented.
- send --tls against a STARTTLS port says in plain words to use --starttls.

Every port comes from the OS; every wait is bounded.
"""

import json
import socket
import ssl
import threading
import unittest
import warnings

from postern_testlib import (ACCEPTED_DOMAIN, KEYRING_PASSWORD, PARTNER_NAME, SERVER_NAME, PosternTestCase,
                             config_text, connector, pki, postern_bin, run, wait_until)


def postern(*args, timeout=60):
    return run([postern_bin(), *args], timeout=timeout, check=False)


class OldTlsServer:
    """An SMTP server on 127.0.0.1:<OS port> that offers STARTTLS but can only do TLS 1.0
    (like Domino 8.5): SECLEVEL=0, maximum_version TLSv1."""

    def __init__(self):
        p = pki()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():           # TLS 1.0 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1
            self.ctx.maximum_version = ssl.TLSVersion.TLSv1
        self.ctx.load_cert_chain(p.path("server.pem"), p.path("server.key"))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.versions = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        conn.settimeout(10)
        f = conn.makefile("rb")
        try:
            conn.sendall(b"220 old.postern.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO"):
                    conn.sendall(b"250-old.postern.test\r\n250 STARTTLS\r\n")
                elif cmd == b"STARTTLS":
                    conn.sendall(b"220 go ahead\r\n")
                    try:
                        tls = self.ctx.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                    with tls:
                        self.versions.append(tls.version())
                        tf = tls.makefile("rb")
                        while True:
                            l = tf.readline()
                            if not l:
                                return
                            if l.strip().upper() == b"QUIT":
                                tls.sendall(b"221 bye\r\n")
                                return
                            tls.sendall(b"250 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()


class ProbeTest(PosternTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start(config_text(connectors=[connector(tls="starttls")]))
        self.target = f"127.0.0.1:{self.server.port()}"

    def probe(self, *args):
        p = postern("probe", self.target, "--json", *args)
        try:
            doc = json.loads(p.stdout)
        except ValueError:
            self.fail(f"probe printed no JSON (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p, doc

    def test_right_ca_and_name_reaches_domain_validation(self):
        p, doc = self.probe("--ca", self.pki.ca, "--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(doc["achieved"], "domain_validation")
        self.assertTrue(doc["pass"])
        t = doc["tls"]
        self.assertIn(t["protocol"], ("TLSv1.2", "TLSv1.3"))
        self.assertTrue(t["chain_verified"])
        self.assertTrue(t["name_matches"])
        self.assertIn("Postern Test Root CA", t["verified_root"])
        leaf = t["chain"][0]
        self.assertIn(SERVER_NAME, leaf["subject"])
        self.assertIn("DNS:" + SERVER_NAME, leaf["subject_alt_names"])
        self.assertTrue(leaf["not_before"] and leaf["not_after"])

    def test_text_output_names_chain_and_level(self):
        p = postern("probe", self.target, "--ca", self.pki.ca, "--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Level:        domain_validation (required domain_validation): PASS", p.stdout)
        self.assertIn("Certificate 0: ", p.stdout)

    def test_ip_address_matches_ip_san(self):
        # The test certificate carries IP:127.0.0.1; without --tls-domain the host is the name.
        p, doc = self.probe("--ca", self.pki.ca)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(doc["achieved"], "domain_validation")

    def test_wrong_name_fails_domain_validation(self):
        p, doc = self.probe("--ca", self.pki.ca, "--tls-domain", "other.postern.test")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(doc["achieved"], "certificate_validation")
        self.assertFalse(doc["tls"]["name_matches"])
        self.assertIn("does not match the name other.postern.test", doc["reason"])
        # A lower --level that the server does reach passes.
        p, doc = self.probe("--ca", self.pki.ca, "--tls-domain", "other.postern.test",
                            "--level", "certificate_validation")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_partial_wildcard_is_not_a_match(self):
        p, doc = self.probe("--ca", self.pki.ca, "--tls-domain", "mx*.postern.test")
        self.assertEqual(p.returncode, 1)
        self.assertNotEqual(doc["achieved"], "domain_validation")

    def test_without_ca_the_chain_is_not_verified(self):
        p, doc = self.probe("--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(doc["achieved"], "encryption_only")
        self.assertFalse(doc["tls"]["chain_verified"])
        self.assertIn("certificate not verified", doc["reason"])
        p, doc = self.probe("--tls-domain", SERVER_NAME, "--level", "encryption_only")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_bad_level_is_usage_error(self):
        p = postern("probe", self.target, "--level", "strong")
        self.assertEqual(p.returncode, 2)


class NoStarttlsProbeTest(PosternTestCase):

    def test_server_without_starttls_reaches_no_level(self):
        server = self.start(config_text(connectors=[connector(tls="none")]))
        p = postern("probe", f"127.0.0.1:{server.port()}", "--json", "--level", "encryption_only")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertFalse(doc["starttls_offered"])
        self.assertEqual(doc["achieved"], "none")
        self.assertIn("does not offer STARTTLS", doc["reason"])
        p = postern("probe", f"127.0.0.1:{server.port()}", "--level", "none")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class OldTlsProbeTest(PosternTestCase):

    def test_tls10_only_peer_is_told_plainly(self):
        old = OldTlsServer()
        self.addCleanup(old.close)
        p = postern("probe", f"127.0.0.1:{old.port}", "--ca", self.pki.ca, "--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        plain = "this server only offers TLS 1.0 / TLS 1.1; Postern requires TLS 1.2 or later"
        self.assertIn(plain, p.stdout)
        self.assertIn(plain, p.stderr)
        # The diagnostic handshake really took place, at TLS 1.0.
        self.assertIn("TLSv1", old.versions)
        p = postern("probe", f"127.0.0.1:{old.port}", "--json", "--level", "encryption_only")
        doc = json.loads(p.stdout)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(doc.get("old_tls_only"))
        self.assertEqual(doc["achieved"], "none")
        self.assertEqual(doc["diagnostic_handshake"]["protocol"], "TLSv1")


class SendTest(PosternTestCase):

    def send(self, server, *args):
        return postern("send", "--server", f"127.0.0.1:{server.port()}", "--json",
                       "--from", "alice@client.test", *args)

    def test_send_delivers_over_verified_starttls(self):
        server = self.start(config_text(connectors=[connector(tls="starttls", require_tls=True)]))
        p = self.send(server, "--to", f"bob@{ACCEPTED_DOMAIN}", "--starttls", "--ca", self.pki.ca,
                      "--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertTrue(doc["delivered"])
        self.assertTrue(doc["final_reply"].startswith("250"), doc["final_reply"])
        self.assertIn(doc["tls"]["protocol"], ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(doc["tls"]["achieved"], "domain_validation")
        transcript = "\n".join(doc["transcript"])
        self.assertIn("C: STARTTLS", transcript)
        self.assertIn("C: DATA", transcript)
        # The server's protocol log (written in the background) shows the message accepted.
        def accepted():
            return any(r["event"] == ">" and r["data"].startswith("250") and "queued" in r["data"].lower()
                       for r in server.protocol_log().rows())
        wait_until(accepted, 10, what="the 250 in the receive protocol log")

    def test_send_text_output(self):
        server = self.start(config_text(connectors=[connector(tls="starttls", require_tls=True)]))
        p = postern("send", "--server", f"127.0.0.1:{server.port()}", "--to", f"bob@{ACCEPTED_DOMAIN}",
                    "--starttls", "--ca", self.pki.ca, "--tls-domain", SERVER_NAME)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("C: EHLO", p.stdout)
        self.assertIn("result:   delivered: 250", p.stdout)

    def test_send_refuses_wrong_name_before_mail(self):
        server = self.start(config_text(connectors=[connector(tls="starttls", require_tls=True)]))
        p = self.send(server, "--to", f"bob@{ACCEPTED_DOMAIN}", "--starttls", "--ca", self.pki.ca,
                      "--tls-domain", "other.postern.test")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertFalse(doc["delivered"])
        self.assertIn("name mismatch", doc["failure"] + doc["tls"]["verdict"])
        self.assertFalse(any(l.startswith("C: MAIL") for l in doc["transcript"]), doc["transcript"])

    def test_plaintext_send_to_require_tls_gets_530(self):
        server = self.start(config_text(connectors=[connector(tls="starttls", require_tls=True)]))
        p = self.send(server, "--to", f"bob@{ACCEPTED_DOMAIN}")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertTrue(doc["final_reply"].startswith("530"), doc)
        self.assertFalse(doc["tls"]["used"])


class ClientCertificateTest(PosternTestCase):
    """A mutual-TLS receive connector that lets in the partner certificate and the server's own."""

    def setUp(self):
        super().setUp()
        self.server = self.start(config_text(connectors=[connector(
            tls="starttls", require_tls=True, auth_mechanisms=["mutual_tls"], permission_groups=["partners"],
            partner_names=[PARTNER_NAME, SERVER_NAME])]))
        # A key ring holding the partner's certificate and key, as a partner would keep it.
        self.partner_ring = self.pki.path("partner-keyring.p12")
        run(["openssl", "pkcs12", "-export", "-inkey", self.pki.path("partner.key"),
             "-in", self.pki.path("partner.pem"), "-name", "partner", "-certfile", self.pki.ca,
             "-caname", "Postern Test Root CA", "-passout", "pass:" + KEYRING_PASSWORD, "-out", self.partner_ring])

    def send(self, *args):
        return postern("send", "--server", f"127.0.0.1:{self.server.port()}", "--from", "alice@partner.test",
                       "--to", f"bob@{ACCEPTED_DOMAIN}", "--starttls", "--ca", self.pki.ca,
                       "--tls-domain", SERVER_NAME, *args)

    def test_send_with_client_certificate_is_let_in(self):
        p = self.send("--client-certificate", "partner", "--keyring", self.partner_ring, "--stash", self.pki.stash)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r'client:   presented certificate "partner" \(.*CN=' + PARTNER_NAME)
        self.assertRegex(p.stdout, r"(?m)^reply:    250 ")
        self.assertIn("result:   delivered: 250", p.stdout)

    def test_send_with_the_servers_key_ring_from_its_configuration(self):
        p = self.send("--client-certificate", "mx", "-c", self.server.config_file, "--json")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertTrue(doc["delivered"])
        self.assertIn('"mx"', doc["client_certificate"])

    def test_send_without_client_certificate_prints_the_554_and_fails(self):
        p = self.send()
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"(?m)^reply:    554 5\.7\.0 ")
        self.assertRegex(p.stderr, r"^postern send: not delivered: 554 5\.7\.0 ")

    def test_unknown_label_is_a_clear_error(self):
        p = self.send("--client-certificate", "nobody", "--keyring", self.partner_ring, "--stash", self.pki.stash)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn('--client-certificate "nobody" is not a certificate with a key in', p.stderr)
        p = self.send("--client-certificate", "partner")
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("needs the key ring: -c FILE, or --keyring and --stash", p.stderr)

    def test_probe_presents_the_client_certificate(self):
        p = postern("probe", f"127.0.0.1:{self.server.port()}", "--ca", self.pki.ca, "--tls-domain", SERVER_NAME,
                    "--client-certificate", "partner", "--keyring", self.partner_ring, "--stash", self.pki.stash)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('Client cert:  presented "partner"', p.stdout)

    def test_implicit_tls_against_a_starttls_port_says_so(self):
        p = postern("send", "--server", f"127.0.0.1:{self.server.port()}", "--to", f"bob@{ACCEPTED_DOMAIN}",
                    "--tls", "--ca", self.pki.ca, "--tls-domain", SERVER_NAME, "--timeout", "5")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("it wants STARTTLS, not implicit TLS; use --starttls", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()

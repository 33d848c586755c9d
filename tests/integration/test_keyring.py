"""`postern keyring` and `postern ca` end to end, with the command line alone (DESIGN.md §4).

The walk-through of DESIGN §1: a lab CA, a key ring, a certificate request, the CA signs it,
install is refused until the root is trusted, then installed and listed. Interop: `openssl
req -verify` accepts the CSR, `openssl pkcs12 -info` opens the key ring and its exports.
Every install refusal is checked for its exit status, its reason and an unchanged key ring.
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from postern_testlib import (KEYRING_PASSWORD, SERVER_NAME, config_text, connector, keep_files,
                             postern_bin, run, start_postern)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.abspath(os.path.join(HERE, "..", "..", "build", "postern"))


def binary():
    return os.environ.get("POSTERN_BIN") or postern_bin() or DEFAULT_BIN


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class KeyringTestCase(unittest.TestCase):
    def setUp(self):
        if not os.access(binary(), os.X_OK):
            self.fail(f"postern binary not built ({binary()}; build it, or set POSTERN_BIN)")
        self.dir = tempfile.mkdtemp(prefix="postern-keyring-")
        if not keep_files():
            self.addCleanup(shutil.rmtree, self.dir, True)
        self.keyring = self.path("ring", "keyring.p12")
        self.stash = self.path("ring", "keyring.sth")
        self.password_file = self.path("password")
        with open(self.password_file, "w") as f:
            f.write(KEYRING_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def postern(self, *args, expect=0):
        p = run([binary(), *args], check=False, stdin=subprocess.DEVNULL)
        if expect is not None:
            self.assertEqual(p.returncode, expect,
                             f"postern {' '.join(args)}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def ring(self, *args, expect=0):
        return self.postern("keyring", "--keyring", self.keyring, *args, expect=expect)

    def ca(self, *args, expect=0):
        return self.postern("ca", "--dir", self.path("lab"), *args, expect=expect)

    def entries(self):
        return {e["label"]: e for e in json.loads(self.ring("list", "--json").stdout)["entries"]}

    def openssl(self, *args, check=True):
        return run(["openssl", *args], check=check)

    # -- building blocks

    def make_ring_with_request(self, label="mx", key="ecdsa-p256"):
        os.makedirs(self.path("ring"), exist_ok=True)
        # The stash gets the known password so `serve` tests can reuse postern_testlib's stash.
        self.postern("keyring", "--keyring", self.keyring, "--password-file", self.password_file, "create")
        csr = self.path(label + ".csr")
        self.ring("request", "--subject", f"CN={SERVER_NAME},O=Postern Tests",
                  "--san", f"DNS:{SERVER_NAME},IP:127.0.0.1", "--key", key, "--label", label,
                  "--out", csr)
        return csr

    def openssl_ca_sign(self, csr, out, startdate, enddate, eku="serverAuth"):
        """Signs with `openssl ca` using the lab CA's files: the only way to pick exact
        (past or future) validity dates with OpenSSL 3.0's command line."""
        base = self.path("openssl-ca")
        os.makedirs(os.path.join(base, "new"), exist_ok=True)
        open(os.path.join(base, "index.txt"), "w").close()
        with open(os.path.join(base, "serial"), "w") as f:
            f.write("1000\n")
        eku_line = f"extendedKeyUsage = {eku}\n" if eku else ""
        cnf = os.path.join(base, "ca.cnf")
        with open(cnf, "w") as f:
            f.write(f"""[ca]
default_ca = lab
[lab]
database = {base}/index.txt
new_certs_dir = {base}/new
serial = {base}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
x509_extensions = leaf
[anything]
commonName = supplied
organizationName = optional
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{eku_line}""")
        self.openssl("ca", "-batch", "-config", cnf, "-cert", self.path("lab", "ca.pem"),
                     "-keyfile", self.path("lab", "ca.key"), "-in", csr, "-out", out, "-notext",
                     "-startdate", startdate, "-enddate", enddate)
        return out


class WalkThrough(KeyringTestCase):
    def test_ca_keyring_request_sign_trust_install_list(self):
        self.ca("init", "--subject", "CN=Postern Lab Root CA,O=Postern Tests")
        self.assertEqual(mode_of(self.path("lab", "ca.key")), 0o600)
        root = json.loads(self.ca("show", "--json").stdout)
        self.assertEqual(root["subject"], "CN=Postern Lab Root CA,O=Postern Tests")

        csr = self.make_ring_with_request()
        for f in (self.keyring, self.stash, self.keyring + ".requests.json"):
            self.assertEqual(mode_of(f), 0o600, f)
        verify = self.openssl("req", "-in", csr, "-verify", "-noout", "-text")
        self.assertIn("verify OK", verify.stdout + verify.stderr)
        self.assertIn(f"DNS:{SERVER_NAME}", verify.stdout)
        self.assertIn("IP Address:127.0.0.1", verify.stdout)

        requests = json.loads(self.ring("requests", "--json").stdout)["requests"]
        self.assertEqual(len(requests), 1)
        self.assertEqual(requests[0]["state"], "pending")
        self.assertEqual(requests[0]["key_type"], "ecdsa-p256")
        self.assertEqual(len(requests[0]["public_key_sha256"]), 64)
        self.assertEqual(self.entries()["mx"]["role"], "pending")

        cert = self.path("mx.pem")
        self.ca("sign", csr, "--out", cert, "--days", "90")
        text = self.openssl("x509", "-in", cert, "-noout", "-text").stdout
        self.assertIn("TLS Web Server Authentication, TLS Web Client Authentication", text)
        self.assertIn(f"DNS:{SERVER_NAME}", text)
        self.assertIn("X509v3 Authority Key Identifier", text)

        refused = self.ring("install", cert, expect=1)
        self.assertIn("does not chain to a trusted root", refused.stderr)
        self.assertEqual(len(refused.stderr.strip().splitlines()), 1, refused.stderr)
        self.assertEqual(self.entries()["mx"]["role"], "pending")

        self.ring("trust", self.path("lab", "ca.pem"))
        self.ring("install", cert)
        entries = self.entries()
        self.assertEqual(entries["mx"]["role"], "server")
        self.assertTrue(entries["mx"]["default"])
        self.assertIn(f"DNS:{SERVER_NAME}", entries["mx"]["names"])
        self.assertEqual(entries["mx"]["issuer"], "CN=Postern Lab Root CA,O=Postern Tests")
        self.assertGreaterEqual(entries["mx"]["days_left"], 89)
        self.assertEqual(entries["Postern Lab Root CA"]["role"], "root")
        self.assertEqual(json.loads(self.ring("requests", "--json").stdout)["requests"][0]["state"],
                         "installed")
        shown = self.ring("show", "mx").stdout
        self.assertIn("SHA-256:", shown)
        self.assertIn("server", shown)

        # The key ring itself is a standard PKCS#12 file.
        info = self.openssl("pkcs12", "-info", "-nokeys", "-in", self.keyring,
                            "-passin", "file:" + self.stash)
        self.assertIn("friendlyName: mx", info.stdout)
        self.assertIn("PBES2, PBKDF2, AES-256-CBC", info.stderr + info.stdout)

    def test_exports_open_with_openssl(self):
        self.ca("init")
        csr = self.make_ring_with_request()
        self.ca("sign", csr, "--out", self.path("mx.pem"))
        self.ring("trust", self.path("lab", "ca.pem"))
        self.ring("install", self.path("mx.pem"))

        p12 = self.path("mx.p12")
        self.ring("export", "mx", "--format", "pkcs12", "--out", p12, "--with-key")
        self.assertEqual(mode_of(p12), 0o600)
        info = self.openssl("pkcs12", "-info", "-in", p12, "-passin", "file:" + self.stash, "-nodes")
        self.assertIn("BEGIN PRIVATE KEY", info.stdout)
        self.assertIn("friendlyName: mx", info.stdout)

        legacy = self.path("mx-legacy.pfx")
        self.ring("export", "mx", "--format", "pkcs12", "--out", legacy, "--with-key", "--legacy",
                  "--export-password-file", self.password_file)
        info = self.openssl("pkcs12", "-legacy", "-info", "-in", legacy, "-nodes",
                            "-passin", "file:" + self.password_file)
        self.assertIn("pbeWithSHA1And3-KeyTripleDES-CBC", info.stdout + info.stderr)

        pem = self.path("mx-chain.pem")
        self.ring("export", "mx", "--format", "pem", "--out", pem)
        with open(pem) as f:
            text = f.read()
        self.assertEqual(text.count("BEGIN CERTIFICATE"), 2)      # leaf and root
        self.assertNotIn("PRIVATE KEY", text)
        self.openssl("verify", "-CAfile", self.path("lab", "ca.pem"), self.path("mx.pem"))

        # A PKCS#12 export opens as a key ring again (same layout).
        listing = run([binary(), "keyring", "--keyring", p12, "--password-file", self.stash, "list",
                       "--json"], check=False)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        roles = {e["label"]: e["role"] for e in json.loads(listing.stdout)["entries"]}
        self.assertEqual(roles["mx"], "server")

    def test_openssl_made_pfx_is_read(self):
        """A .pfx made elsewhere (here: `openssl pkcs12 -export -legacy`, like old Windows)."""
        self.ca("init")
        key = self.path("other.key")
        self.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
        csr = self.path("other.csr")
        self.openssl("req", "-new", "-key", key, "-subj", "/CN=other.postern.test", "-out", csr,
                     "-addext", "subjectAltName=DNS:other.postern.test")
        self.ca("sign", csr, "--out", self.path("other.pem"))
        pfx = self.path("other.pfx")
        self.openssl("pkcs12", "-export", "-legacy", "-name", "windows-cert", "-inkey", key,
                     "-in", self.path("other.pem"), "-certfile", self.path("lab", "ca.pem"),
                     "-passout", "file:" + self.password_file, "-out", pfx)
        listing = run([binary(), "keyring", "--keyring", pfx, "--password-file", self.password_file,
                       "list", "--json"], check=False)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        roles = {e["label"]: e["role"] for e in json.loads(listing.stdout)["entries"]}
        self.assertEqual(roles, {"windows-cert": "server", "Postern Lab Root CA": "root"})


class InstallRefusals(KeyringTestCase):
    def setUp(self):
        super().setUp()
        self.ca("init")
        self.csr = self.make_ring_with_request()
        self.ring("trust", self.path("lab", "ca.pem"))

    def assert_refused(self, cert, reason):
        before = read_bytes(self.keyring)
        p = self.ring("install", cert, expect=1)
        self.assertIn(reason, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertEqual(read_bytes(self.keyring), before, "a refused install changed the key ring")
        self.assertEqual(self.entries()["mx"]["role"], "pending")

    def test_no_matching_request(self):
        key = self.path("stranger.key")
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        csr = self.path("stranger.csr")
        self.openssl("req", "-new", "-key", key, "-subj", "/CN=stranger.postern.test", "-out", csr,
                     "-addext", "subjectAltName=DNS:stranger.postern.test")
        self.ca("sign", csr, "--out", self.path("stranger.pem"))
        self.assert_refused(self.path("stranger.pem"), "no pending request matches")

    def test_expired(self):
        cert = self.openssl_ca_sign(self.csr, self.path("expired.pem"), "20200101000000Z", "20200201000000Z")
        self.assert_refused(cert, "expired on 2020-02-01")

    def test_not_yet_valid(self):
        cert = self.openssl_ca_sign(self.csr, self.path("future.pem"), "20990101000000Z", "20991231000000Z")
        self.assert_refused(cert, "not valid before 2099-01-01")

    def test_chain_does_not_reach_a_trusted_root(self):
        self.postern("ca", "--dir", self.path("other-lab"), "init", "--subject", "CN=Untrusted Lab CA")
        self.postern("ca", "--dir", self.path("other-lab"), "sign", self.csr, "--out", self.path("untrusted.pem"))
        self.assert_refused(self.path("untrusted.pem"), "does not chain to a trusted root")

    def test_lacks_server_auth(self):
        cert = self.openssl_ca_sign(self.csr, self.path("client-only.pem"), "20200101000000Z",
                                    "20991231000000Z", eku="clientAuth")
        self.assert_refused(cert, "lacks extendedKeyUsage serverAuth")


class Editing(KeyringTestCase):
    def test_trust_refuses_a_leaf_unless_pinned(self):
        self.ca("init")
        csr = self.make_ring_with_request()
        self.ca("sign", csr, "--out", self.path("leaf.pem"))
        p = self.ring("trust", self.path("leaf.pem"), expect=1)
        self.assertIn("not a CA certificate", p.stderr)
        self.ring("trust", self.path("leaf.pem"), "--pinned-peer", "--label", "partner")
        self.assertEqual(self.entries()["partner"]["role"], "peer")

    def test_label_default_remove(self):
        self.ca("init")
        csr = self.make_ring_with_request("one")
        self.ring("trust", self.path("lab", "ca.pem"))
        self.ca("sign", csr, "--out", self.path("one.pem"))
        self.ring("install", self.path("one.pem"))
        csr2 = self.path("two.csr")
        self.ring("request", "--subject", "CN=mx2.postern.test", "--label", "two", "--key", "rsa-2048",
                  "--out", csr2)
        self.ca("sign", csr2, "--out", self.path("two.pem"))
        self.ring("install", self.path("two.pem"))
        self.assertFalse(any(e["default"] for e in self.entries().values()))

        self.ring("default", "two")
        self.assertTrue(self.entries()["two"]["default"])
        self.ring("default", "Postern Lab Root CA", expect=1)

        self.ring("label", "two", "mx2")
        self.assertTrue(self.entries()["mx2"]["default"])
        self.ring("label", "mx2", "one", expect=1)       # taken

        self.ring("request", "--subject", "CN=later.postern.test", "--out", self.path("later.csr"))
        self.ring("remove", "later.postern.test")
        states = {r["label"]: r["state"] for r in json.loads(self.ring("requests", "--json").stdout)["requests"]}
        self.assertEqual(states, {"one": "installed", "mx2": "installed", "later.postern.test": "cancelled"})
        self.ring("remove", "mx2")
        self.assertNotIn("mx2", self.entries())
        self.ring("show", "mx2", expect=1)

    def test_stash_readable_by_group_is_refused(self):
        self.make_ring_with_request()
        os.chmod(self.stash, 0o640)
        p = self.ring("list", expect=1)
        self.assertIn("0600", p.stderr)
        self.assertNotIn(KEYRING_PASSWORD, p.stderr + p.stdout)

    def test_usage_errors_exit_2(self):
        self.postern("keyring", "list", expect=2)
        self.postern("keyring", "--keyring", self.keyring, "request", "--subject", "CN=x", "--key", "dsa-1024",
                     "--out", self.path("x.csr"), expect=2)
        self.postern("keyring", "--keyring", self.keyring, "export", "x", "--format", "pem", "--legacy",
                     "--out", self.path("x.pem"), expect=2)
        self.postern("keyring", "--keyring", self.keyring, "export", "x", expect=2)   # --format/--out missing

    def test_create_refuses_to_overwrite(self):
        self.make_ring_with_request()
        p = self.ring("create", expect=1)
        self.assertIn("already exists", p.stderr)

    def test_config_file_names_the_key_ring(self):
        data = self.path("data")
        cfg = self.path("postern.toml")
        with open(cfg, "w") as f:
            f.write(config_text([connector()]).replace("{data_dir}", data))
        self.postern("keyring", "-c", cfg, "--password-file", self.password_file, "create")
        self.assertTrue(os.path.exists(os.path.join(data, "keyring.p12")))
        self.assertEqual(mode_of(os.path.join(data, "keyring.sth")), 0o600)
        self.postern("keyring", "-c", cfg, "request", "--subject", f"CN={SERVER_NAME}", "--out", self.path("c.csr"))
        listing = json.loads(self.postern("keyring", "list", "-c", cfg, "--json").stdout)
        self.assertEqual([e["role"] for e in listing["entries"]], ["pending"])


class Serving(KeyringTestCase):
    def test_serve_with_a_keyring_made_by_the_cli(self):
        """`openssl s_client -starttls smtp` verifies the certificate installed by the CLI."""
        self.ca("init")
        csr = self.make_ring_with_request()
        self.ca("sign", csr, "--out", self.path("mx.pem"))
        self.ring("trust", self.path("lab", "ca.pem"))
        self.ring("install", self.path("mx.pem"))
        server = start_postern(config_text([connector()]), keyring=self.keyring)
        self.addCleanup(server.remove_files)
        self.addCleanup(server.stop)
        p = run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{server.port()}",
                 "-CAfile", self.path("lab", "ca.pem"), "-verify_hostname", SERVER_NAME,
                 "-verify_return_error", "-brief"], check=False, input="QUIT\r\n", timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Verification: OK", p.stdout + p.stderr)


if __name__ == "__main__":
    unittest.main()

"""`postern config check` refuses bad files with FILE:LINE: KEY (DESIGN §3 "Errors, not
warnings", §4 exit status), and `serve` does not start on them.

It also runs what only the running server would otherwise discover (DESIGN §4 "config
check"): a key ring that does not exist or does not open with its stash, a [server] user
that does not exist, key ring labels that name nothing; and it warns (exit 0) about a
serving certificate without [server] hostname among its names, certificates that expire
within 30 days (the test PKI's all do) and accepted domains that no send connector covers.
Whatever it refuses, serve refuses with the same words.
"""

import json
import os
import re
import shutil
import tempfile
import unittest

from postern_testlib import (PosternTestCase, config_text, connector, postern_bin, run,
                             start_postern)


class ConfigCheck(PosternTestCase):

    def write(self, text, keyring="keyring.p12"):
        """The file, in a directory whose data/ holds the test key ring (`keyring`, a file of
        the test PKI, or None for none) and its stash, as start_postern lays them out."""
        d = tempfile.mkdtemp(prefix="postern-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        data = os.path.join(d, "data")
        os.makedirs(data, mode=0o700)
        if keyring:
            shutil.copyfile(self.pki.path(keyring), os.path.join(data, "keyring.p12"))
            shutil.copyfile(self.pki.stash, os.path.join(data, "keyring.sth"))
            os.chmod(os.path.join(data, "keyring.p12"), 0o600)
            os.chmod(os.path.join(data, "keyring.sth"), 0o600)
        path = os.path.join(d, "postern.toml")
        with open(path, "w") as f:
            f.write(text.replace("{data_dir}", data))
        return path

    def check(self, text, keyring="keyring.p12", *extra):
        path = self.write(text, keyring)
        p = run([postern_bin(), "config", "check", "-c", path, *extra], check=False)
        return path, p

    @staticmethod
    def line_of(text, needle, after=None):
        lines = text.splitlines()
        start = 0
        if after:
            start = next(i for i, l in enumerate(lines) if after in l)
        for i in range(start, len(lines)):
            if needle in lines[i]:
                return i + 1
        raise AssertionError(f"{needle!r} not in config")

    def assert_refused(self, text, needle, key, words=(), after=None):
        """Exit 1, and a diagnostic FILE:LINE: naming the key (and words) on stderr."""
        path, p = self.check(text)
        self.assertEqual(p.returncode, 1, f"config check accepted a bad file:\n{p.stdout}{p.stderr}")
        line = self.line_of(text, needle, after)
        rx = re.compile(rf"{re.escape(path)}:{line}:.*{re.escape(key)}")
        self.assertRegex(p.stderr + p.stdout, rx)
        for w in words:
            self.assertIn(w.lower(), (p.stderr + p.stdout).lower())
        return p

    def test_good_file_passes(self):
        path, p = self.check(config_text())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(f"{path}: valid", p.stdout)

    def test_unknown_key(self):
        text = config_text([connector(requre_tls=True)])
        p = self.assert_refused(text, "requre_tls", "requre_tls")
        self.assertIn('(connector "inbound"): unknown key; did you mean "require_tls"?', p.stderr)

    # -- what only a running server used to find out -------------------------------------

    def refused_by_check_and_serve(self, text, needle, key, words, keyring="keyring.p12"):
        """config check exits 1 naming FILE:LINE: KEY and `words`; serve exits 1 with the same line."""
        path, p = self.check(text, keyring)
        self.assertEqual(p.returncode, 1, f"config check accepted it:\n{p.stdout}{p.stderr}")
        line = self.line_of(text, needle)
        m = re.search(rf"^{re.escape(path)}:{line}: {re.escape(key)}.*$", p.stderr, re.M)
        self.assertIsNotNone(m, p.stderr)
        for w in words:
            self.assertIn(w, m.group(0))
        # serve: the same finding, then it does not start.
        data = os.path.join(os.path.dirname(path), "data")
        rc, err = start_postern(text, data_dir=data, expect_failure=True,
                                keyring=self.pki.path(keyring) if keyring else None)
        self.assertEqual(rc, 1, err)
        self.assertIn(m.group(0)[len(path):], err)
        return m.group(0)

    def test_missing_key_ring_is_an_error(self):
        text = config_text()
        path = self.write(text, keyring=None)
        p = run([postern_bin(), "config", "check", "-c", path], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, rf"{re.escape(path)}:\d+: tls.keyring: .*keyring.p12 does not exist, and receive "
                                   r'connector "inbound" serves TLS')

    def test_wrong_stash_is_an_error(self):
        text = config_text(tls={"stash": "other.sth"})
        path = self.write(text)
        stash = os.path.join(os.path.dirname(path), "data", "other.sth")
        with open(stash, "w") as f:
            f.write("not the password\n")
        os.chmod(stash, 0o600)
        p = run([postern_bin(), "config", "check", "-c", path], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"tls.keyring: .*wrong password")

    def test_user_that_does_not_exist_is_an_error(self):
        self.refused_by_check_and_serve(config_text(server={"user": "no-such-postern-user"}), "user =",
                                        "server.user", ["no-such-postern-user"])

    def test_unknown_client_certificate_label_is_an_error(self):
        text = config_text(send_connectors=[{"name": "to-partner", "address_spaces": ["*"],
                                             "smart_hosts": ["127.0.0.1:2526"],
                                             "client_certificate": "no-such-label"}])
        line = self.refused_by_check_and_serve(text, "client_certificate", "send_connector[0].client_certificate",
                                               ['(connector "to-partner")', '"no-such-label" is not in the key ring'])
        self.assertIn("a certificate with its key", line)

    def test_unknown_serving_certificate_label_is_an_error(self):
        self.refused_by_check_and_serve(config_text(tls={"certificate": "mx-old"}), "certificate =",
                                        "tls.certificate", ['"mx-old" is not in the key ring'])

    def test_root_label_used_as_client_certificate_is_an_error(self):
        text = config_text(send_connectors=[{"name": "to-partner", "address_spaces": ["*"],
                                             "smart_hosts": ["127.0.0.1:2526"],
                                             "client_certificate": "Postern Test Root CA"}])
        self.refused_by_check_and_serve(text, "client_certificate", "send_connector[0].client_certificate",
                                        ["is a root, not a certificate with its key"])

    def test_warnings_exit_0_and_name_what_to_fix(self):
        # The wrong-name key ring serves wrong.postern.test; hostname stays mx.postern.test.
        text = config_text(server={"accepted_domains": ["example.test", "unrouted.test"]},
                           send_connectors=[{"name": "to-example", "address_spaces": ["example.test"],
                                             "smart_hosts": ["127.0.0.1:2526"]}])
        path, p = self.check(text, "wrong-keyring.p12")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, rf"^{re.escape(path)}: valid \(\d+ warnings\)")
        err = p.stderr
        self.assertRegex(err, r'tls: warning: the serving certificate "mx" \(.*CN=wrong.postern.test.*\) does not '
                              r'name \[server\] hostname "mx.postern.test"')
        self.assertRegex(err, r'tls.keyring: warning: .*certificate "mx" .* expires in \d+ day')
        line = self.line_of(text, "accepted_domains")
        self.assertRegex(err, rf'{re.escape(path)}:{line}: server.accepted_domains: warning: accepted domain '
                              r'"unrouted.test" has no send connector')
        self.assertNotIn('"example.test" has no send connector', err)

    def test_json_report_names_connectors(self):
        text = config_text(send_connectors=[{"name": "to-partner", "address_spaces": ["*"],
                                             "smart_hosts": ["127.0.0.1:2526"],
                                             "client_certificate": "no-such-label"}])
        path, p = self.check(text, "keyring.p12", "--json")
        self.assertEqual(p.returncode, 1)
        report = json.loads(p.stdout)
        self.assertFalse(report["valid"])
        errors = [e for e in report["errors"] if e["key"] == "send_connector[0].client_certificate"]
        self.assertEqual(len(errors), 1, report)
        self.assertEqual(errors[0]["connector"], "to-partner")
        self.assertEqual(errors[0]["line"], self.line_of(text, "client_certificate"))

    def test_config_set_refuses_a_connector_that_does_not_exist(self):
        text = config_text()
        path = self.write(text)
        p = run([postern_bin(), "config", "set", "-c", path, "receive_connector", "inbund", "max_recipients=50"],
                check=False)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn('no receive_connector is named "inbund" (there are: inbound); add --create', p.stderr)
        with open(path) as f:
            self.assertEqual(f.read(), text.replace("{data_dir}", os.path.join(os.path.dirname(path), "data")))
        p = run([postern_bin(), "config", "set", "-c", path, "--create", "send_connector", "to-partner",
                 'address_spaces=["partner.test"]', 'smart_hosts=["127.0.0.1:2526"]'], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(path) as f:
            self.assertIn('[[send_connector]]\nname = "to-partner"', f.read())

    def test_wrong_type(self):
        text = config_text([connector(max_recipients="many")])
        self.assert_refused(text, "max_recipients", "max_recipients")

    def test_require_tls_without_tls(self):
        text = config_text([connector(tls="none", require_tls=True)])
        path, p = self.check(text)
        self.assertEqual(p.returncode, 1)
        out = p.stdout + p.stderr
        lines = {self.line_of(text, 'tls = "none"'), self.line_of(text, "require_tls")}
        self.assertTrue(any(re.search(rf"{re.escape(path)}:{n}:", out) for n in lines), out)

    def test_mutual_tls_without_partners(self):
        text = config_text([connector(require_tls=True, auth_mechanisms=["mutual_tls"])])
        self.assert_refused(text, "auth_mechanisms", "auth_mechanisms")

    def test_open_relay(self):
        text = config_text([connector(accept_any_recipient=True)])
        self.assert_refused(text, "accept_any_recipient", "accept_any_recipient")

    def test_weak_cipher_is_named(self):
        text = config_text(tls={"ciphers": "ECDHE+AESGCM:RC4-SHA"})
        self.assert_refused(text, "ciphers", "ciphers", words=["RC4"])

    def test_cbc_cipher_is_refused(self):
        text = config_text(tls={"ciphers": "ECDHE-RSA-AES128-SHA"})
        self.assert_refused(text, "ciphers", "ciphers")

    def test_tls_1_1_minimum_is_refused(self):
        text = config_text(tls={"min_version": "1.1"})
        self.assert_refused(text, "min_version", "min_version")

    def test_serve_does_not_start_on_a_bad_file(self):
        text = config_text([connector(requre_tls=True)])
        rc, err = start_postern(text, expect_failure=True)
        self.assertNotEqual(rc, 0)
        self.assertIn("requre_tls", err)


if __name__ == "__main__":
    unittest.main()

"""`postern config check` refuses bad files with FILE:LINE: KEY (DESIGN §3 "Errors, not
warnings", §4 exit status), and `serve` does not start on them."""

import os
import re
import shutil
import tempfile
import unittest

from postern_testlib import (PosternTestCase, config_text, connector, postern_bin, run,
                             start_postern)


class ConfigCheck(PosternTestCase):

    def write(self, text):
        d = tempfile.mkdtemp(prefix="postern-cfg-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "postern.toml")
        with open(path, "w") as f:
            f.write(text.replace("{data_dir}", os.path.join(d, "data")))
        return path

    def check(self, text):
        path = self.write(text)
        p = run([postern_bin(), "config", "check", "-c", path], check=False)
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

    def test_unknown_key(self):
        text = config_text([connector(requre_tls=True)])
        self.assert_refused(text, "requre_tls", "requre_tls")

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

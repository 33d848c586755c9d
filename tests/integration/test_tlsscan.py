"""External TLS scanners against a STARTTLS receive connector: no protocol below TLS 1.2
and no non-AEAD cipher suite (DESIGN §1, §3 [tls]). testssl is slow (minutes), which is
why this file stands alone."""

import re
import unittest

from postern_testlib import SharedServerTestCase, require_tool, run

AEAD = re.compile(r"GCM|CHACHA20|POLY1305|CCM", re.I)


class TlsScan(SharedServerTestCase):

    def test_testssl_protocols_and_ciphers(self):
        require_tool("testssl")
        p = run(["testssl", "--starttls", "smtp", "--quiet", "--color", "0", "--warnings", "off",
                 "--openssl-timeout", "10", "-p", "-e", f"127.0.0.1:{self.server.port()}"],
                timeout=840, check=False)
        out = p.stdout
        protocols = {}
        for name in ("SSLv2", "SSLv3", "TLS 1", "TLS 1.1", "TLS 1.2", "TLS 1.3"):
            m = re.search(rf"(?m)^\s*{re.escape(name)}\s+(.*)$", out)
            self.assertTrue(m, f"{name} missing in testssl output:\n{out}")
            protocols[name] = m.group(1)
        for old in ("SSLv2", "SSLv3", "TLS 1", "TLS 1.1"):
            self.assertIn("not offered", protocols[old], f"{old}: {protocols[old]}\n{out}")
        self.assertRegex(protocols["TLS 1.2"], r"^offered", out)
        # -e: one line per cipher the server accepts: hexcode, OpenSSL name, ..., IANA name
        ciphers = re.findall(r"(?m)^\s*x[0-9a-f]{2,6}\s+(\S+)\s+.*?\s(TLS_\S+)\s*$", out)
        self.assertTrue(ciphers, f"no cipher lines in testssl output:\n{out}")
        weak = [c for c in ciphers if not AEAD.search(c[1])]
        self.assertEqual(weak, [], f"non-AEAD suites offered: {weak}\n{out}")

    def test_sslscan_protocols_and_ciphers(self):
        require_tool("sslscan")
        p = run(["sslscan", "--no-colour", "--starttls-smtp", f"127.0.0.1:{self.server.port()}"],
                timeout=300, check=False)
        out = p.stdout
        states = dict(re.findall(r"(?m)^(SSLv[23]|TLSv1\.[0-3])\s+(enabled|disabled)", out))
        for old in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
            self.assertEqual(states.get(old), "disabled", f"{old}\n{out}")
        self.assertEqual(states.get("TLSv1.2"), "enabled", out)
        accepted = re.findall(r"(?m)^(?:Preferred|Accepted)\s+(TLSv1\.[0-3]|SSLv[23])\s+\d+ bits\s+(\S+)",
                              out)
        self.assertTrue(accepted, out)
        self.assertTrue(all(v in ("TLSv1.2", "TLSv1.3") for v, _ in accepted), accepted)
        weak = [c for _, c in accepted if not AEAD.search(c)]
        self.assertEqual(weak, [], f"non-AEAD suites accepted: {weak}\n{out}")


if __name__ == "__main__":
    unittest.main()

"""`postern demo --json` (DESIGN.md §4): two organisations exchanging mail over enforced,
verified TLS. The story it prints is checked, not only its exit status:

- the plaintext attempt on A was refused with 530 5.7.0;
- hop 1 (client -> A) and hop 2 (A -> B) used TLS 1.2 or later with an AEAD cipher;
- both certificates were verified against the demo's lab root and the expected name
  (domain_validation), hop 2 as A's send protocol log records it (verdict=pass);
- B acknowledged A's message with 250 after DATA and recognised A as a mutual-TLS partner;
- both servers stopped with exit status 0 after SIGTERM, and the temp dir is removed.
"""

import json
import os
import unittest

from postern_testlib import postern_bin, require_postern, run

DEMO_TIMEOUT = 240


def tls_ok(protocol, cipher):
    return protocol in ("TLSv1.2", "TLSv1.3") and any(x in cipher for x in ("GCM", "CHACHA20", "CCM"))


class DemoTest(unittest.TestCase):

    def setUp(self):
        require_postern(self)

    def test_demo_story(self):
        p = run([postern_bin(), "demo", "--json"], timeout=DEMO_TIMEOUT, check=False)
        try:
            story = json.loads(p.stdout)
        except ValueError:
            self.fail(f"demo printed no JSON (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
        self.assertEqual(p.returncode, 0, json.dumps(story.get("failures"), indent=2) + p.stderr)
        self.assertTrue(story["ok"])
        self.assertEqual(story["failures"], [])

        root = story["pki"]["root"]
        self.assertIn("Postern Demo Root CA", root)
        self.assertIn("mx.a.demo.test", story["pki"]["org_a"]["subject"])
        self.assertIn("mx.b.demo.test", story["pki"]["org_b"]["subject"])

        self.assertTrue(story["plaintext"]["refused"])
        self.assertTrue(story["plaintext"]["reply"].startswith("530 5.7.0"), story["plaintext"])

        hop1, hop2 = story["hops"]
        self.assertTrue(hop1["delivered"])
        self.assertTrue(hop1["reply"].startswith("250"), hop1)
        self.assertTrue(tls_ok(hop1["protocol"], hop1["cipher"]), hop1)
        self.assertEqual(hop1["achieved"], "domain_validation")
        self.assertEqual(hop1["name"], "mx.a.demo.test")
        self.assertIn(root, hop1["verified_against"])

        self.assertTrue(hop2["delivered"], hop2)
        self.assertTrue(tls_ok(hop2["protocol"], hop2["cipher"]), hop2)
        self.assertEqual(hop2["achieved"], "domain_validation")
        self.assertEqual(hop2["required"], "domain_validation")
        self.assertEqual(hop2["verdict"], "pass")
        self.assertEqual(hop2["name"], "mx.b.demo.test")
        self.assertIn("mx.b.demo.test", hop2["send_log"]["subject"])
        self.assertEqual(hop2["send_log"]["issuer"], root)
        self.assertTrue(hop2["receive_log"]["reply"].startswith("250"), hop2["receive_log"])
        self.assertTrue(hop2["receive_log"]["client_certificate_verified"], hop2["receive_log"])
        self.assertTrue(hop2["partner"])
        if "b_queue" in hop2:                       # when `postern queue` is available
            self.assertEqual(hop2["b_queue"]["count"], 1)

        self.assertEqual(story["stopped"]["org_a"], "exit status 0")
        self.assertEqual(story["stopped"]["org_b"], "exit status 0")
        self.assertFalse(os.path.exists(story["work_dir"]), "the temp dir should be removed")

    def test_peer_postfix_is_refused_clearly(self):
        p = run([postern_bin(), "demo", "--peer", "postfix"], timeout=60, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not available yet", p.stderr)


if __name__ == "__main__":
    unittest.main()

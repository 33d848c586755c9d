"""`postern demo --json` (DESIGN.md §4): two organisations exchanging mail over enforced,
verified TLS. The story it prints is checked, not only its exit status:

- the plaintext attempt on A was refused with 530 5.7.0;
- hop 1 (client -> A) and hop 2 (A -> B) used TLS 1.2 or later with an AEAD cipher;
- both certificates were verified against the demo's lab root and the expected name
  (domain_validation), hop 2 as A's send protocol log records it (verdict=pass);
- B acknowledged A's message with 250 after DATA and recognised A as a mutual-TLS partner;
- both servers stopped with exit status 0 after SIGTERM, and the temp dir is removed.

`postern demo --peer postfix` (org B is a private Postfix instance), with --keep so that the
files a user would look at are read here, not only the story:
- the message is in bob's Maildir with the Received header Postfix wrote: TLS 1.2+ with an
  AEAD cipher, A's client certificate (CN mx.a.demo.test) issued by the lab root and
  "verified OK";
- A's send protocol log has the verdict line (achieved=domain_validation
  required=domain_validation; verdict=pass); Postfix's maillog has the Trusted TLS session
  from A and the Maildir delivery;
- the other way, Postfix's maillog has "Verified TLS connection established" to A's partner
  connector and the delivery, and A's receive protocol log took B as a partner;
- plaintext refused by A and by Postfix (530 5.7.0); B's key ring export is 0600 with the key;
  Postfix's master is gone afterwards. The text form says PASS and removes its temp dir.
The Postfix variant is skipped only when /usr/sbin/postfix is missing (its exchange also
when the tests do not run as root); not as root, the demo must refuse with one clear line.
"""

import glob
import json
import os
import re
import shutil
import stat
import unittest

from postern_testlib import MissingDependency, keep_files, postern_bin, require_postern, require_tool, run

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


POSTFIX = "/usr/sbin/postfix"


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class DemoWithPostfixTest(unittest.TestCase):

    def setUp(self):
        require_postern(self)
        if not os.path.exists(POSTFIX):
            raise MissingDependency(f"{POSTFIX} is missing: postfix is not installed (scripts/setup.sh installs it)")

    def test_not_root_is_refused_clearly(self):
        cmd = [postern_bin(), "demo", "--peer", "postfix"]
        if os.geteuid() == 0:
            require_tool("setpriv")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
        p = run(cmd, timeout=60, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("root", p.stderr)

    def run_json(self):
        p = run([postern_bin(), "demo", "--peer", "postfix", "--keep", "--json"],
                timeout=DEMO_TIMEOUT, check=False)
        try:
            story = json.loads(p.stdout)
        except ValueError:
            self.fail(f"demo printed no JSON (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
        if not keep_files():
            self.addCleanup(shutil.rmtree, story["work_dir"], True)
        self.assertEqual(p.returncode, 0, json.dumps(story.get("failures"), indent=2) + p.stderr)
        return story

    def test_demo_story_with_postfix(self):
        if os.geteuid() != 0:
            self.skipTest("a private Postfix instance needs root")
        story = self.run_json()
        work = story["work_dir"]
        self.assertTrue(story["ok"])
        self.assertEqual(story["failures"], [])
        self.assertEqual(story["peer"], "postfix")
        self.assertTrue(story["servers"]["org_b"]["software"].startswith("Postfix"))
        root = story["pki"]["root"]

        # B's certificate and key, exported from its key ring for Postfix
        export = story["pki"]["org_b_export"]["file"]
        self.assertEqual(stat.S_IMODE(os.stat(export).st_mode), 0o600)
        pem = read_text(export)
        self.assertIn("-----BEGIN CERTIFICATE-----", pem)
        self.assertIn("PRIVATE KEY-----", pem)

        # plaintext refused on both sides
        self.assertTrue(story["plaintext"]["refused"])
        self.assertTrue(story["plaintext"]["reply"].startswith("530 5.7.0"), story["plaintext"])
        self.assertTrue(story["plaintext_b"]["refused"])
        self.assertTrue(story["plaintext_b"]["reply"].startswith("530 5.7.0"), story["plaintext_b"])

        hop1, hop2, hop3 = story["hops"]
        self.assertTrue(hop1["delivered"])
        self.assertEqual(hop1["achieved"], "domain_validation")

        # A -> B: A's verdict, as its send protocol log has it
        self.assertTrue(hop2["delivered"], hop2)
        self.assertTrue(tls_ok(hop2["protocol"], hop2["cipher"]), hop2)
        self.assertEqual(hop2["verdict"], "pass")
        self.assertIn("mx.b.demo.test", hop2["send_log"]["subject"])
        self.assertEqual(hop2["send_log"]["issuer"], root)
        send_log = "".join(read_text(f) for f in glob.glob(os.path.join(work, "a", "data", "log",
                                                                          "smtp-send", "*.log")))
        self.assertIn("achieved=domain_validation required=domain_validation; verdict=pass", send_log)
        self.assertIn("to-org-b", send_log)

        # A -> B: bob's Maildir, with the Received header Postfix wrote
        mailbox = os.path.join(work, "b", "postfix", "mail", "b.demo.test", "bob", "new")
        files = [os.path.join(mailbox, f) for f in os.listdir(mailbox)]
        with_id = [f for f in files if hop1["message_id"] in read_text(f)]
        self.assertEqual(len(with_id), 1, files)
        self.assertEqual(with_id[0], hop2["mailbox"]["file"])
        text = read_text(with_id[0])
        received = re.search(r"^Received: from mx\.a\.demo\.test .*?(?=^\S)", text, re.S | re.M)
        self.assertIsNotNone(received, text)
        header = " ".join(received.group(0).split())
        m = re.search(r"\(using (TLSv1\.[23]) with cipher (\S+) ", header)
        self.assertIsNotNone(m, header)
        self.assertTrue(tls_ok(m.group(1), m.group(2)), header)
        self.assertIn('(Client CN "mx.a.demo.test", Issuer "Postern Demo Root CA" (verified OK))', header)
        self.assertIn("by mx.b.demo.test (Postfix) with ESMTPS", header)
        self.assertTrue(hop2["mailbox"]["client_verified"])

        # A -> B: Postfix's maillog
        maillog = read_text(os.path.join(work, "b", "postfix", "maillog"))
        self.assertRegex(maillog, r"postfix/smtpd\[\d+\]: Trusted TLS connection established from "
                                  r"\S+\[127\.0\.0\.1\]: TLSv1\.[23] with cipher")
        self.assertRegex(maillog, r"postfix/virtual\[\d+\]: \w+: to=<bob@b\.demo\.test>, relay=virtual, "
                                  r".*status=sent \(delivered to maildir\)")
        self.assertTrue(hop2["postfix"]["client_certificate_verified"])

        # B -> A: Postfix's smtp client verified A (secure), A took B as a partner
        self.assertTrue(hop3["delivered"], hop3)
        self.assertTrue(hop3["verified"], hop3)
        self.assertTrue(tls_ok(hop3["protocol"], hop3["cipher"]), hop3)
        partner_port = story["servers"]["org_a"]["partner_listen"].rsplit(":", 1)[1]
        self.assertRegex(maillog, r"postfix/smtp\[\d+\]: Verified TLS connection established to "
                                  r"127\.0\.0\.1\[127\.0\.0\.1\]:" + partner_port + r": TLSv1\.[23]")
        self.assertRegex(maillog, r"to=<alice@a\.demo\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:" +
                                  partner_port + r", .*status=sent \(250 ")
        self.assertTrue(hop3["partner"])
        self.assertTrue(hop3["receive_log"]["client_certificate_verified"], hop3["receive_log"])
        self.assertIn("mx.b.demo.test", hop3["receive_log"]["client_certificate"])
        self.assertTrue(hop3["receive_log"]["reply"].startswith("250"), hop3["receive_log"])

        # stopped: A with exit status 0, Postfix's master gone
        self.assertEqual(story["stopped"]["org_a"], "exit status 0")
        self.assertRegex(story["stopped"]["org_b"], r"^master pid \d+ gone$")
        self.assertTrue(process_gone(story["servers"]["org_b"]["master_pid"]))

    def test_demo_text_with_postfix(self):
        if os.geteuid() != 0:
            self.skipTest("a private Postfix instance needs root")
        p = run([postern_bin(), "demo", "--peer", "postfix"], timeout=DEMO_TIMEOUT, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Result: PASS", p.stdout)
        self.assertIn("org B is Postfix", p.stdout)
        self.assertIn("achieved=domain_validation required=domain_validation verdict=pass", p.stdout)
        self.assertIn("Trusted TLS connection established", p.stdout)
        self.assertIn("Verified TLS connection established", p.stdout)
        self.assertIn("(verified OK)", p.stdout)
        work = re.search(r"work directory: (\S+)", p.stdout).group(1)
        self.assertFalse(os.path.exists(work), "the temp dir should be removed")


if __name__ == "__main__":
    unittest.main()

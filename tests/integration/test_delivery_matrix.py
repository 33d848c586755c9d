"""The send connector TLS matrix (DESIGN.md §3 [[send_connector]]: require_tls,
tls_auth_level, ignore_starttls; the opportunistic-sending and domain-validation rules).

Five fake next hops (no STARTTLS; STARTTLS answered 454; a self-signed certificate; a
trusted certificate with the wrong name; a valid one) and one Postern with a send
connector per (setting, fake) pair. For every pair the table says whether the fake gets
the message and how (over TLS, or in plaintext); a message that must not be sent never
reaches MAIL and its connector's send log has the failed verdict.

The combinations the configuration refuses (a tls_auth_level above encryption_only
without require_tls; ignore_starttls with require_tls) are shown refused by `postern
config check` and by `postern serve`.
"""

import os
import tempfile
import unittest

from delivery_fakes import (DELIVERY_TIMEOUT, NextHop, connector_lines, relay_connector,
                            require_delivery, submit, wait_sessions_logged)
from postern_testlib import (SERVER_NAME, PosternTestCase, config_text, hold_send_connector,
                             postern_bin, run, start_postern, wait_until)

TLS, PLAIN, NO = "tls", "plaintext", None

# The fakes: name -> FakeNextHop mode.
FAKES = {"notls": "no-starttls", "refused": "454", "selfsigned": "selfsigned",
         "wrongname": "wrong", "valid": "server"}

# Rows: name -> (send connector settings, {fake: expected outcome}).
MATRIX = {
    "opportunistic": (
        {"require_tls": False, "tls_auth_level": "encryption_only"},
        {"notls": PLAIN, "refused": PLAIN, "selfsigned": TLS, "wrongname": TLS, "valid": TLS}),
    "encrypt": (
        {"require_tls": True, "tls_auth_level": "encryption_only"},
        {"notls": NO, "refused": NO, "selfsigned": TLS, "wrongname": TLS, "valid": TLS}),
    "cert": (
        {"require_tls": True, "tls_auth_level": "certificate_validation"},
        {"notls": NO, "refused": NO, "selfsigned": NO, "wrongname": TLS, "valid": TLS}),
    "domain": (
        {"require_tls": True, "tls_auth_level": "domain_validation", "tls_domain": SERVER_NAME},
        {"notls": NO, "refused": NO, "selfsigned": NO, "wrongname": NO, "valid": TLS}),
    "ignore": (
        {"require_tls": False, "ignore_starttls": True},
        {"notls": PLAIN, "refused": PLAIN, "selfsigned": PLAIN, "wrongname": PLAIN, "valid": PLAIN}),
}

# What the send log says for a refused pair (the verdict line's reason).
REFUSAL = {"notls": "STARTTLS not offered", "refused": "454 4.7.0",
           "selfsigned": "certificate not trusted", "wrongname": "certificate name mismatch"}


def connector_name(row, fake):
    return f"{row}-{fake}"


def domain(row, fake):
    return f"{row}-{fake}.test"


class TlsMatrix(PosternTestCase):

    def test_which_next_hops_get_mail_and_how(self):
        hops = {name: NextHop(mode) for name, mode in FAKES.items()}
        for hop in hops.values():
            self.addCleanup(hop.stop)
        send = []
        for row, (settings, _) in MATRIX.items():
            for fake, hop in hops.items():
                c = {"name": connector_name(row, fake), "address_spaces": [domain(row, fake)],
                     "smart_hosts": [f"127.0.0.1:{hop.port}"]}
                c.update(settings)
                send.append(c)
        send.append(hold_send_connector())
        a = self.start(config_text([relay_connector()], send_connectors=send,
                                   queue={"retry": ["1m"]}))
        require_delivery(self, a)

        for row in MATRIX:
            for fake in FAKES:
                submit(a, f"bob@{domain(row, fake)}", f"{row} to {fake}")

        expected_sent = {(domain(row, fake), fake): how for row, (_, outcomes) in MATRIX.items()
                         for fake, how in outcomes.items() if how is not None}
        refused = [(row, fake) for row, (_, outcomes) in MATRIX.items()
                   for fake, how in outcomes.items() if how is None]

        def received():
            out = {}
            for fake, hop in hops.items():
                for rcpt, tls in hop.rcpts():
                    out[(rcpt.split("@", 1)[1], fake)] = tls
            return out

        try:
            wait_until(lambda: set(expected_sent) <= set(received()), DELIVERY_TIMEOUT,
                       what="every permitted pair to be delivered")
        except TimeoutError:
            self.fail(f"not delivered: {sorted(set(expected_sent) - set(received()))}")

        def refusals_logged():
            return all(any("verdict=fail" in line and REFUSAL[fake] in line
                           for line in connector_lines(a, connector_name(row, fake)))
                       for row, fake in refused)
        wait_until(refusals_logged, DELIVERY_TIMEOUT, what="every refused pair's verdict in the send log")

        # Every delivered pair's session is over before its log lines are read.
        wait_sessions_logged(a, [connector_name(row, fake) for row, (_, outcomes) in MATRIX.items()
                                 for fake, how in outcomes.items() if how is not None])
        got = received()
        for (dom, fake), how in sorted(expected_sent.items()):
            with self.subTest(pair=dom):
                tls = got[(dom, fake)]
                if how == TLS:
                    self.assertIn(tls, ("TLSv1.2", "TLSv1.3"), f"{dom} must arrive over TLS")
                else:
                    self.assertIsNone(tls, f"{dom} must arrive in plaintext, not over {tls}")
        for row, fake in refused:
            with self.subTest(refused=domain(row, fake)):
                self.assertNotIn((domain(row, fake), fake), got)
                lines = connector_lines(a, connector_name(row, fake))
                self.assertFalse(any(l.startswith("MAIL FROM") for l in lines),
                                 f"{connector_name(row, fake)} must never reach MAIL")
        # Each delivered pair arrived exactly once.
        for fake, hop in hops.items():
            rcpts = [r for r, _ in hop.rcpts()]
            self.assertEqual(len(rcpts), len(set(rcpts)), f"{fake}: duplicates {rcpts}")

        # The log says why: opportunistic 454 went out in plaintext after the refusal;
        # the verdict lines name the level achieved against the level required.
        wait_until(lambda: any("TLS failed (" in l and "sent in plaintext" in l
                               for l in connector_lines(a, connector_name("opportunistic", "refused"))),
                   DELIVERY_TIMEOUT, what="the plaintext fallback line after the 454")
        self.assertTrue(any("achieved=certificate_validation required=domain_validation; verdict=fail" in l
                            for l in connector_lines(a, connector_name("domain", "wrongname"))))
        self.assertTrue(any("achieved=encryption_only required=certificate_validation; verdict=fail" in l
                            for l in connector_lines(a, connector_name("cert", "selfsigned"))))
        self.assertTrue(any("achieved=encryption_only required=encryption_only; verdict=pass" in l
                            for l in connector_lines(a, connector_name("encrypt", "selfsigned"))))
        self.assertTrue(any("STARTTLS not used by configuration" in l
                            for l in connector_lines(a, connector_name("ignore", "valid"))))
        ignore_valid = connector_lines(a, connector_name("ignore", "valid"))
        self.assertFalse(any(l == "STARTTLS" for l in ignore_valid), "ignore_starttls sent STARTTLS")


class RefusedCombinations(PosternTestCase):
    """DESIGN §3 errors: the server does not start, and config check names the key."""

    CASES = {
        "certificate_validation without require_tls":
            ({"require_tls": False, "tls_auth_level": "certificate_validation"}, "tls_auth_level"),
        "domain_validation without require_tls":
            ({"require_tls": False, "tls_auth_level": "domain_validation"}, "tls_auth_level"),
        "ignore_starttls with require_tls":
            ({"require_tls": True, "ignore_starttls": True}, "ignore_starttls"),
    }

    def test_refused_by_config_check_and_serve(self):
        for what, (settings, key) in self.CASES.items():
            with self.subTest(what):
                c = {"name": "out", "address_spaces": ["*"], "smart_hosts": ["127.0.0.1:25"]}
                c.update(settings)
                text = config_text([relay_connector()], send_connectors=[c])
                rc, stderr = start_postern(text, expect_failure=True)
                self.assertNotEqual(rc, 0)
                self.assertIn(key, stderr)
                # config check on the same text names the key and its line
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "postern.toml")
                    with open(path, "w") as f:
                        f.write(text.replace("{data_dir}", d))
                    p = run([postern_bin(), "config", "check", "-c", path], check=False)
                    self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                    self.assertRegex(p.stderr + p.stdout, rf"postern\.toml:\d+.*{key}")


if __name__ == "__main__":
    unittest.main()

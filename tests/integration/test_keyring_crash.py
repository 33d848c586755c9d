"""A crash in the middle of `postern keyring install` leaves the old key ring (DESIGN.md §3
"Files": temp (0600) -> fsync -> rename -> fsync of the directory).

The fault shim (tests/fault/fault_shim.cpp, preloaded) stops the install at its rename: the
new key ring is written and fsynced to its temporary file, and the shim creates a marker
file and waits. The test kills it with SIGKILL at that moment and checks what an administrator
would: `postern keyring list` and `openssl pkcs12` still open the old key ring with the
stash password, the leftover temporary file was readable by nobody else, and the install can
simply be run again (which also clears the leftover).
"""

import glob
import json
import os
import signal
import stat
import subprocess
import unittest

from postern_testlib import fault_shim, run, wait_until
from test_keyring import KeyringTestCase, binary, mode_of, read_bytes


class CrashDuringInstall(KeyringTestCase):
    def setUp(self):
        super().setUp()
        self.ca("init")
        csr = self.make_ring_with_request("mx")
        self.ring("trust", self.path("lab", "ca.pem"))
        self.cert = self.path("mx.pem")
        self.ca("sign", csr, "--out", self.cert)

    def temporaries(self):
        return glob.glob(os.path.join(os.path.dirname(self.keyring),
                                      "." + os.path.basename(self.keyring) + ".tmp-*"))

    def assert_opens_with_openssl(self):
        p = run(["openssl", "pkcs12", "-info", "-noout", "-in", self.keyring,
                 "-passin", "file:" + self.stash], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def install_killed_before_rename(self):
        control = self.path("fault")
        with open(control, "w") as f:
            f.write("pause-rename\n")
        marker = control + ".paused"
        env = dict(os.environ, LD_PRELOAD=fault_shim(), POSTERN_FAULT_CONTROL=control,
                   POSTERN_FAULT_DIR=os.path.dirname(os.path.realpath(self.keyring)))
        proc = subprocess.Popen([binary(), "keyring", "--keyring", self.keyring, "install", self.cert],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

        def cleanup():
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
        self.addCleanup(cleanup)
        wait_until(lambda: os.path.exists(marker) or proc.poll() is not None, 60,
                   what="install to reach the rename")
        if proc.poll() is not None:
            self.fail("install ended before its rename: " + str(proc.communicate()))
        leftovers = self.temporaries()
        self.assertEqual(len(leftovers), 1, leftovers)
        self.assertEqual(mode_of(leftovers[0]), 0o600, "the new key ring's temporary file is readable by others")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        return leftovers[0]

    def test_sigkill_before_rename_keeps_the_old_key_ring(self):
        before = read_bytes(self.keyring)
        requests_before = read_bytes(self.keyring + ".requests.json")
        self.assertEqual(self.entries()["mx"]["role"], "pending")

        leftover = self.install_killed_before_rename()

        # The old key ring, byte for byte, and it opens as before.
        self.assertEqual(read_bytes(self.keyring), before)
        self.assertEqual(read_bytes(self.keyring + ".requests.json"), requests_before)
        entries = self.entries()
        self.assertEqual(entries["mx"]["role"], "pending")
        self.assertEqual(entries["Postern Lab Root CA"]["role"], "root")
        self.assert_opens_with_openssl()
        self.assertEqual(mode_of(self.keyring), 0o600)

        # Run again: it succeeds and clears the abandoned temporary file.
        self.ring("install", self.cert)
        self.assertEqual(self.entries()["mx"]["role"], "server")
        self.assertFalse(os.path.exists(leftover))
        self.assertEqual(self.temporaries(), [])
        self.assert_opens_with_openssl()
        self.assertEqual(mode_of(self.keyring), 0o600)
        states = [r["state"] for r in json.loads(self.ring("requests", "--json").stdout)["requests"]]
        self.assertEqual(states, ["installed"])

    def test_every_key_ring_command_still_works_after_the_crash(self):
        self.install_killed_before_rename()
        shown = self.ring("show", "mx").stdout
        self.assertIn("pending", shown)
        # A different change (not the interrupted one) goes through too, then the install.
        self.ring("request", "--subject", "CN=other.postern.test", "--label", "other",
                  "--out", self.path("other.csr"))
        self.ring("install", self.cert)
        entries = self.entries()
        self.assertEqual((entries["mx"]["role"], entries["other"]["role"]), ("server", "pending"))
        self.assertEqual(self.temporaries(), [])
        self.assertTrue(stat.S_ISREG(os.stat(self.keyring).st_mode))


if __name__ == "__main__":
    unittest.main()

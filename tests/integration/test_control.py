"""`postern reload` and `postern stop` over the control socket (DESIGN.md §3 control_socket,
§4 command line).

What an administrator sees: `postern reload -c FILE` makes new sessions use a changed
configuration value (EHLO SIZE) and a renewed certificate, and exits 1 with the reason
when the new file is refused (the old configuration keeps serving); `postern stop -c FILE`
returns once the server has exited 0; with no server both say so in one line. The socket
is 0600, owned by the service user; a local user other than root and the service user is
refused, even one that can pass the file mode (CAP_DAC_OVERRIDE), and the refusal is
logged. A second server on the same socket is refused at start; a socket left by a killed
server is replaced.
"""

import os
import pwd
import signal
import ssl
import stat
import subprocess
import unittest

from postern_testlib import (config_text, connector, postern_bin, require_tool, start_postern, wait_until)
from test_keyring_reload import ServedKeyringTestCase, der_of

SIZE_10MB = 10 * 1024 * 1024
SIZE_20MB = 20 * 1024 * 1024
OTHER_UID = 40123          # a uid that is neither root nor the service user


def as_uid(uid, gid, *cmd, caps=None):
    """The command run with another identity (setpriv), optionally with ambient caps."""
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    if caps:
        prefix += [f"--inh-caps=+{caps}", f"--ambient-caps=+{caps}"]
    return prefix + list(cmd)


class ControlTestCase(ServedKeyringTestCase):
    CONNECTOR = {"max_message_size": "10MB"}

    def control(self, command, expect=0, prefix=(), config=None):
        cmd = list(prefix) + [postern_bin(), command, "-c", config or self.server.config_file]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if expect is not None:
            self.assertEqual(p.returncode, expect, f"{' '.join(cmd)}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def ehlo_size(self):
        s = self.new_session()
        size = s.esmtp_features.get("size")
        s.quit()
        return int(size)

    def socket_path(self):
        return self.server.ready["control_socket"]


class ReloadAndStop(ControlTestCase):
    def test_socket_is_private_and_named_in_the_ready_file(self):
        self.start_server()
        path = self.socket_path()
        self.assertEqual(path, os.path.join(self.server.data_dir, "control.sock"))
        st = os.stat(path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)

    def test_reload_picks_up_a_changed_value_for_new_sessions(self):
        self.start_server()
        self.assertEqual(self.ehlo_size(), SIZE_10MB)
        self.postern("config", "set", "-c", self.server.config_file, "receive_connector", "inbound",
                     "max_message_size=20MB")
        p = self.control("reload")
        self.assertIn("reloaded", p.stdout)
        self.assertEqual(self.ehlo_size(), SIZE_20MB)

    def test_reload_picks_up_a_renewed_certificate(self):
        self.start_server()
        old = der_of(self.path("mx.pem"))
        self.assertEqual(self.served_certificate(), old)
        new = der_of(self.renew("mx-2"))
        p = self.control("reload")
        self.assertIn('serving certificate "mx-2"', p.stdout)
        self.assertEqual(self.served_certificate(), new)

    def test_refused_configuration_keeps_the_running_one(self):
        self.start_server()
        with open(self.server.config_file, "a") as f:
            f.write('\n[server.oops]\nno_such_key = 1\n')
        p = self.control("reload", expect=1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("postern reload:", p.stderr)
        # The client reads the file too and names it, before it asks the server.
        self.assertIn(self.server.config_file, p.stderr)
        self.assertTrue(self.server.running())
        self.assertEqual(self.ehlo_size(), SIZE_10MB)

    def test_refused_key_ring_is_reported_by_reload(self):
        self.start_server()
        with open(os.path.join(self.server.data_dir, "keyring.p12"), "wb") as f:
            f.write(b"\x30\x03not a key ring")
        p = self.control("reload", expect=1)
        self.assertIn("stay in place", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertEqual(self.served_certificate(), der_of(self.path("mx.pem")))

    def test_stop_ends_the_server_with_exit_0(self):
        self.start_server()
        path = self.socket_path()
        p = self.control("stop")
        self.assertIn("stopped", p.stdout)
        # `stop` returned after the server closed the control connection: it is exiting.
        self.assertEqual(self.server.proc.wait(timeout=30), 0, self.server.stderr_text())
        self.assertFalse(os.path.exists(path), "the control socket was left behind")
        self.assertIn("control socket: stop requested by uid", self.server.stderr_text())

        gone = self.control("reload", expect=1)
        self.assertIn("no server is running", gone.stderr)
        self.assertEqual(len(gone.stderr.strip().splitlines()), 1, gone.stderr)


class StartUp(ControlTestCase):
    def test_second_server_on_the_same_socket_is_refused(self):
        first = self.start_server()
        text = config_text([connector()], server={"control_socket": self.socket_path()})
        rc, stderr = start_postern(text, expect_failure=True)
        self.assertEqual(rc, 1)
        self.assertIn("another postern serve is running", stderr)
        self.assertTrue(first.running())
        self.control("reload")          # the first server's socket still answers

    def test_socket_left_by_a_killed_server_is_replaced(self):
        self.start_server()
        path = self.socket_path()
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait(timeout=30)
        self.killed_on_purpose = True
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        self.assertIn("no server is running", self.control("reload", expect=1).stderr)
        self.assertIn("connection refused", self.control("reload", expect=1).stderr)

        with open(self.server.config_file) as f:
            text = f.read().replace(self.server.data_dir, "{data_dir}")
        second = start_postern(text, data_dir=self.server.data_dir, keyring=self.keyring)
        self.addCleanup(second.stop)
        self.assertIn("replaced the stale socket", second.stderr_text())
        self.control("reload", config=second.config_file)
        self.assertEqual(self.control("stop", config=second.config_file).returncode, 0)
        self.assertEqual(second.proc.wait(timeout=30), 0)


@unittest.skipUnless(hasattr(os, "geteuid") and os.geteuid() == 0, "needs root (setpriv to other users)")
class Peers(ControlTestCase):
    def setUp(self):
        super().setUp()
        require_tool("setpriv")
        # Another user runs the client: the binary and the config file must be reachable.
        exe = postern_bin()
        probe = subprocess.run(as_uid(65534, 65534, exe, "--version"), capture_output=True, text=True)
        if probe.returncode != 0:
            self.skipTest(f"{exe} cannot be run by nobody: {probe.stderr.strip()}")
        os.chmod(self.dir, 0o755)

    def test_other_user_cannot_reach_the_socket(self):
        self.start_server()
        p = self.control("reload", expect=1, prefix=as_uid(OTHER_UID, OTHER_UID))
        self.assertIn("permission denied", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertNotIn("reload: reading", self.server.stderr_text())

    def test_other_user_past_the_file_mode_is_refused_by_peer_credentials(self):
        self.start_server()
        p = self.control("stop", expect=1, prefix=as_uid(OTHER_UID, OTHER_UID, caps="dac_override"))
        self.assertIn(f"permission denied: uid {OTHER_UID}", p.stderr)
        wait_until(lambda: f"refused a request from uid {OTHER_UID}" in self.server.stderr_text(), 10,
                   what="the refusal in the server log")
        self.assertTrue(self.server.running())
        self.assertNotIn("stopping", self.server.stderr_text())

    def start_as_nobody(self):
        self.ca("init", "--subject", "CN=Postern Lab Root CA,O=Postern Tests")
        csr = self.make_ring_with_request("mx")
        self.ca("sign", csr, "--out", self.path("mx.pem"))
        self.ring("trust", self.path("lab", "ca.pem"))
        self.ring("install", self.path("mx.pem"))
        self.server = start_postern(config_text([connector()], server={"user": "nobody"}),
                                    keyring=self.keyring, as_user="nobody")
        self.addCleanup(self.stop_server)
        self.client_ctx = ssl.create_default_context(cafile=self.path("lab", "ca.pem"))

    def test_root_renews_the_key_ring_of_a_server_running_as_the_service_user(self):
        """The files root rewrites (key ring, request log) stay readable by the server."""
        self.start_as_nobody()
        nobody = pwd.getpwnam("nobody")
        new = der_of(self.renew("mx-2"))
        for name in ("keyring.p12", "keyring.p12.requests.json"):
            st = os.stat(os.path.join(self.server.data_dir, name))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (nobody.pw_uid, 0o600), name)
        p = self.control("reload")
        self.assertIn('serving certificate "mx-2"', p.stdout)
        self.assertEqual(self.served_certificate(), new)

    def test_service_user_may_reload_and_stop(self):
        nobody = pwd.getpwnam("nobody")
        self.start_as_nobody()
        st = os.stat(self.socket_path())
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (nobody.pw_uid, 0o600))

        service = as_uid(nobody.pw_uid, nobody.pw_gid)
        self.control("reload", prefix=service)
        self.assertIn(f"reload requested by uid {nobody.pw_uid}", self.server.stderr_text())
        # Root (not the service user) is admitted as well.
        self.control("reload")
        self.control("stop", prefix=service)
        self.assertEqual(self.server.proc.wait(timeout=30), 0, self.server.stderr_text())
        # The dropped server removed its own socket.
        self.assertFalse(os.path.exists(self.socket_path()))


if __name__ == "__main__":
    unittest.main()

"""Started as root, Postern drops to [server] user before serving anyone (DESIGN §3)."""

import os
import pwd
import unittest

from postern_testlib import PosternTestCase, SmtpConn, config_text


def ids_of(pid):
    """(real, effective, saved, fs) uids and gids of a process, from /proc/<pid>/status."""
    uids = gids = groups = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                uids = [int(x) for x in line.split()[1:]]
            elif line.startswith("Gid:"):
                gids = [int(x) for x in line.split()[1:]]
            elif line.startswith("Groups:"):
                groups = [int(x) for x in line.split()[1:]]
    return uids, gids, groups


class PrivilegeDrop(PosternTestCase):

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to start as root")

    def test_serving_process_is_not_root(self):
        server = self.start(config_text(server={"user": "nobody"}))
        nobody = pwd.getpwnam("nobody")
        c = SmtpConn("127.0.0.1", server.port())
        self.addCleanup(c.close)
        c.hello()
        uids, gids, groups = ids_of(server.pid)
        self.assertEqual(uids, [nobody.pw_uid] * 4, f"uids {uids}")
        self.assertEqual(gids, [nobody.pw_gid] * 4, f"gids {gids}")
        self.assertNotIn(0, groups or [], f"supplementary groups {groups}")
        # every thread, too
        for tid in os.listdir(f"/proc/{server.pid}/task"):
            with open(f"/proc/{server.pid}/task/{tid}/status") as f:
                uid_line = next(l for l in f if l.startswith("Uid:"))
            self.assertNotIn("0", uid_line.split()[1:], f"thread {tid}: {uid_line}")
        # and it still accepts mail into data_dir it now owns
        c.expect("250", "MAIL FROM:<alice@client.test>")
        c.expect("250", "RCPT TO:<bob@example.test>")
        c.expect("354", "DATA")
        c.send_raw("Subject: after the drop\r\n\r\nhello\r\n.\r\n")
        c.expect("250")

    def test_unknown_user_is_refused_at_start(self):
        rc, err = self.start_failing(config_text(server={"user": "no-such-user-postern"}))
        self.assertNotEqual(rc, 0)
        self.assertIn("no-such-user-postern", err)

    def start_failing(self, config):
        from postern_testlib import start_postern
        return start_postern(config, expect_failure=True)


if __name__ == "__main__":
    unittest.main()

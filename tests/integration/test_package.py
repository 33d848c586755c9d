"""The Debian package and the systemd contract (README "Installing the package", DESIGN §4).

The package is built from the tested build tree with CPack, as `scripts/setup.sh package`
does, into a temporary directory. Its contents: /usr/sbin/postern, /etc/postern/postern.toml
as a conffile, the systemd unit, postern(8) and postern.toml(5), bash completion, copyright
and changelog; Depends computed from the binary (libssl3, libunbound8, ...) plus adduser;
a postinst that makes the postern system user. lintian reports no error; the unit passes
`systemd-analyze verify` and its offline security review; the man pages render without
warnings and describe every subcommand and every configuration key, and the completion
offers every subcommand (so none of them can drift from the binary). The packaged
configuration passes `config check` but for the things only an administrator can supply.

`serve` reports readiness, reload and stop over $NOTIFY_SOCKET (Type=notify); commands
without -c read /etc/postern/postern.toml.
"""

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from postern_testlib import PosternTestCase, config_text, postern_bin, require_tool, run, wait_until


def build_dir():
    return os.path.dirname(postern_bin())


class Package(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        for tool in ("cpack", "dpkg-deb", "lintian", "systemd-analyze", "groff"):
            require_tool(tool)
        cls.work = tempfile.mkdtemp(prefix="postern-pkg-")
        run(["cpack", "--config", os.path.join(build_dir(), "CPackConfig.cmake"), "-B", cls.work], timeout=600,
            cwd=build_dir())
        debs = [f for f in os.listdir(cls.work) if f.endswith(".deb")]
        assert len(debs) == 1, debs
        cls.deb = os.path.join(cls.work, debs[0])
        cls.root = os.path.join(cls.work, "root")
        run(["dpkg-deb", "-x", cls.deb, cls.root])
        cls.control = os.path.join(cls.work, "control")
        run(["dpkg-deb", "-e", cls.deb, cls.control])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def field(self, name):
        return run(["dpkg-deb", "-f", self.deb, name]).stdout.strip()

    def test_contents(self):
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        for path in ("./usr/sbin/postern", "./etc/postern/postern.toml", "./lib/systemd/system/postern.service",
                     "./usr/share/man/man8/postern.8.gz", "./usr/share/man/man5/postern.toml.5.gz",
                     "./usr/share/bash-completion/completions/postern", "./usr/share/doc/postern/copyright",
                     "./usr/share/doc/postern/changelog.gz"):
            self.assertRegex(listing, rf"(?m) {re.escape(path)}$")
        self.assertNotIn("/usr/local", listing)
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/postern/postern.toml"])
        depends = self.field("Depends")
        for lib in ("libc6", "libssl3", "libunbound8", "libsystemd0", "adduser"):
            self.assertIn(lib, depends)
        # The packaged binary is the tested one (stripped).
        p = run([os.path.join(self.root, "usr/sbin/postern"), "--version"])
        self.assertEqual(p.stdout.strip(), "postern " + self.field("Version"))
        with open(os.path.join(self.control, "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system --group", postinst)
        self.assertEqual(os.stat(os.path.join(self.control, "postinst")).st_mode & 0o777, 0o755)
        run(["sh", "-n", os.path.join(self.control, "postinst")])

    def test_lintian_reports_no_error(self):
        p = run(["lintian", "--no-tag-display-limit", self.deb], check=False, timeout=600)
        errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
        self.assertEqual(errors, [], p.stdout)

    def test_systemd_unit(self):
        unit = os.path.join(self.root, "lib/systemd/system/postern.service")
        with open(unit) as f:
            text = f.read()
        for line in ("Type=notify", "ExecReload=/usr/sbin/postern reload -c /etc/postern/postern.toml",
                     "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=postern",
                     "ReadWritePaths=/var/lib/postern"):
            self.assertIn(line + "\n", text)
        caps = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", text).group(1).split()
        self.assertEqual(sorted(caps), sorted(["CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
                                               "CAP_FOWNER", "CAP_DAC_OVERRIDE"]))
        # verify needs the binary where the unit says: point it at the extracted one.
        local = os.path.join(self.work, "postern.service")
        with open(local, "w") as f:
            f.write(text.replace("/usr/sbin/postern", os.path.join(self.root, "usr/sbin/postern")))
        p = run(["systemd-analyze", "verify", "--man=no", local], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run(["systemd-analyze", "security", "--offline=yes", local], check=False)
        level = re.search(r"Overall exposure level for postern\.service: ([\d.]+) (\w+)", p.stdout)
        self.assertIsNotNone(level, p.stdout + p.stderr)
        self.assertLess(float(level.group(1)), 4.0, p.stdout)

    def man_text(self, path):
        with gzip.open(os.path.join(self.root, path), "rt") as f:
            source = f.read()
        p = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8"], input=source, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stderr), (0, ""))
        return source

    def test_man_pages_and_completion_cover_every_command_and_key(self):
        helptext = run([postern_bin(), "--help"]).stdout
        commands = re.findall(r"(?m)^  ([a-z]+)\s{2,}", helptext.split("Subcommands:")[1])
        self.assertIn("status", commands)
        page8 = self.man_text("usr/share/man/man8/postern.8.gz")
        with open(os.path.join(self.root, "usr/share/bash-completion/completions/postern")) as f:
            completion = f.read()
        offered = re.search(r'local commands="([^"]*)"', completion).group(1).split()
        for c in commands:
            self.assertRegex(page8, rf"(?m)^\.B {c}\b", f"postern(8) does not describe `{c}`")
            self.assertIn(c, offered, f"bash completion does not offer `{c}`")
        run(["bash", "-n", os.path.join(self.root, "usr/share/bash-completion/completions/postern")])

        page5 = self.man_text("usr/share/man/man5/postern.toml.5.gz")
        sections = {m.group(1): m.start() for m in re.finditer(r"(?m)^\.SH \[+([a-z_]+)\]+$", page5)}
        minimal = os.path.join(self.work, "minimal.toml")
        with open(minimal, "w") as f:
            f.write('[server]\nhostname = "a.test"\n[[receive_connector]]\nname = "r"\nbind = ["127.0.0.1:25"]\n'
                    '[[send_connector]]\nname = "s"\naddress_spaces = ["*"]\n'
                    '[[accepted_domain]]\nname = "corp.test"\n'
                    '[[ldap_source]]\nname = "d"\nuri = "ldaps://dc.corp.test"\nbase = "dc=corp,dc=test"\n')
        shown = json.loads(run([postern_bin(), "config", "show", "-c", minimal, "--json"]).stdout)
        ordered = sorted(sections.items(), key=lambda kv: kv[1])
        for section, body in shown.items():
            self.assertIn(section, sections, f"postern.toml(5) has no section for [{section}]")
            start = sections[section]
            following = [pos for _, pos in ordered if pos > start]
            part = page5[start:following[0] if following else len(page5)]
            keys = (body[0] if isinstance(body, list) else body).keys()
            for key in keys:
                self.assertRegex(part, rf"(?m)^\.B {re.escape(key)}$", f"postern.toml(5) lacks [{section}] {key}")

    def test_packaged_configuration_needs_only_what_an_administrator_supplies(self):
        p = run([os.path.join(self.root, "usr/sbin/postern"), "config", "check", "-c",
                 os.path.join(self.root, "etc/postern/postern.toml")], check=False)
        # Valid as a file; what is missing on this machine is the key ring (and maybe the user).
        errors = [l for l in p.stderr.splitlines() if ": warning: " not in l]
        self.assertTrue(errors, p.stderr)
        for line in errors:
            self.assertRegex(line, r"(server\.user: \[server\] user \"postern\": no such user|"
                                   r"tls\.keyring: /var/lib/postern/keyring\.p12 does not exist)")


class SystemdContract(PosternTestCase):

    def test_readiness_reload_and_stop_are_notified(self):
        d = tempfile.mkdtemp(prefix="postern-notify-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        self.addCleanup(sock.close)
        server = self.start(config_text(), env={"NOTIFY_SOCKET": path})
        messages = []

        def receive_until(word):
            while not any(word in m for m in messages):
                messages.append(sock.recv(4096).decode())
            return [m for m in messages if word in m][-1]

        ready = receive_until("READY=1")
        self.assertIn(f"MAINPID={server.pid}", ready)
        run([postern_bin(), "reload", "-c", server.config_file])
        receive_until("RELOADING=1")
        self.assertIn("STATUS=reloaded", receive_until("STATUS=reloaded"))
        server.proc.terminate()
        receive_until("STOPPING=1")
        server.proc.wait(timeout=60)

    def test_commands_read_etc_postern_by_default(self):
        if os.path.exists("/etc/postern/postern.toml"):
            self.skipTest("this machine has its own /etc/postern/postern.toml")
        p = run([postern_bin(), "config", "check"], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("/etc/postern/postern.toml", p.stderr)
        p = run([postern_bin(), "status"], check=False)
        self.assertIn("/etc/postern/postern.toml", p.stderr)


if __name__ == "__main__":
    unittest.main()

"""A DNSSEC lab for the DANE tests: zones signed with ldns-signzone, served by nsd on
127.0.0.1:<free port>, and the unbound_config that makes Postern's libunbound validate
them (a trust anchor for each signed zone, stub zones pointing at nsd).

Zones are given as record lines without the SOA and NS (added here). Kinds:
  signed    signed with a fresh KSK and ZSK (ECDSA P-256); a trust anchor is published,
            so answers from it are secure
  unsigned  served as is, no trust anchor: answers are insecure
  bogus     signed, then records matching `tamper` are altered after signing (or the
            signatures expired): answers for those are bogus
Never the system's nsd or unbound: the processes are ours, stopped by pid.
"""

import os
import shutil
import subprocess
import tempfile

from delivery_fakes import free_udp_tcp_port
from postern_testlib import MissingDependency, keep_files, run, wait_until


def require_tools():
    for tool in ("/usr/sbin/nsd", "/usr/bin/ldns-signzone", "/usr/bin/ldns-keygen", "/usr/bin/ldns-key2ds",
                 "/usr/bin/drill"):
        if not os.access(tool, os.X_OK):
            raise MissingDependency(f"{tool} is not installed (scripts/setup.sh installs nsd and ldnsutils)")


class Zone:
    def __init__(self, name, records, kind="signed", tamper=None, expired=False):
        self.name = name.rstrip(".") + "."
        self.records = records
        self.kind = kind
        self.tamper = tamper          # (old, new): text replaced in the signed zone file
        self.expired = expired        # signatures that ended yesterday
        self.ds = None


class DnssecLab:
    def __init__(self, zones):
        require_tools()
        self.dir = tempfile.mkdtemp(prefix="postern-dnssec-")
        os.chmod(self.dir, 0o755)
        self.port = free_udp_tcp_port()
        self.zones = zones
        for z in zones:
            self._write_zone(z)
        self._start_nsd()

    def path(self, name):
        return os.path.join(self.dir, name)

    def _write_zone(self, z):
        base = z.name.rstrip(".")
        text = (f"$ORIGIN {z.name}\n$TTL 300\n"
                f"@ IN SOA ns.{z.name} hostmaster.{z.name} 1 3600 600 86400 300\n"
                f"@ IN NS ns.{z.name}\nns IN A 127.0.0.1\n" + "".join(r + "\n" for r in z.records))
        plain = self.path(base + ".zone")
        with open(plain, "w") as f:
            f.write(text)
        z.file = plain
        if z.kind == "unsigned":
            return
        keys = []
        for flags in (["-k"], []):   # KSK, then ZSK
            out = run(["ldns-keygen", "-a", "ECDSAP256SHA256", *flags, z.name], cwd=self.dir).stdout.strip()
            keys.append(out)
        args = ["ldns-signzone", "-n"]
        if z.expired:
            args += ["-i", "20200101000000", "-e", "20200201000000"]
        run(args + ["-f", plain + ".signed", plain, *keys], cwd=self.dir)
        z.file = plain + ".signed"
        ds = run(["ldns-key2ds", "-n", "-2", keys[0] + ".key"], cwd=self.dir).stdout.strip()
        z.ds = " ".join(ds.split())
        if z.tamper:
            with open(z.file) as f:
                signed = f.read()
            old, new = z.tamper
            if old not in signed:
                raise AssertionError(f"{old!r} is not in the signed zone {z.name}")
            with open(z.file, "w") as f:
                f.write(signed.replace(old, new))

    def _start_nsd(self):
        conf = self.path("nsd.conf")
        with open(conf, "w") as f:
            f.write("server:\n"
                    f"  ip-address: 127.0.0.1@{self.port}\n"
                    "  do-ip6: no\n"
                    '  username: ""\n'
                    '  chroot: ""\n'
                    f'  zonesdir: "{self.dir}"\n'
                    f'  pidfile: "{self.path("nsd.pid")}"\n'
                    f'  database: ""\n'
                    f'  zonelistfile: "{self.path("zone.list")}"\n'
                    f'  xfrdfile: "{self.path("xfrd.state")}"\n'
                    f'  xfrdir: "{self.dir}"\n'
                    "  server-count: 1\n"
                    "  verbosity: 1\n"
                    "remote-control:\n  control-enable: no\n")
            for z in self.zones:
                f.write(f'zone:\n  name: "{z.name}"\n  zonefile: "{z.file}"\n')
        log = open(self.path("nsd.log"), "wb")
        self.proc = subprocess.Popen(["/usr/sbin/nsd", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        probe = self.zones[0].name

        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nsd exited ({self.proc.returncode}):\n{self.log_text()}")
            return subprocess.run(["drill", "-p", str(self.port), "@127.0.0.1", probe, "SOA"],
                                  capture_output=True, text=True).stdout.find("NOERROR") >= 0
        try:
            wait_until(answers, 20, what="nsd to answer")
        except BaseException:
            self.stop()
            raise

    def log_text(self):
        try:
            with open(self.path("nsd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def unbound_config(self):
        """For [dns] unbound_config: validate with the lab's anchors, ask nsd for its zones."""
        path = self.path("postern-unbound.conf")
        lines = ["server:", "  do-not-query-localhost: no", '  local-zone: "test." nodefault', "  val-log-level: 2"]
        for z in self.zones:
            if z.ds:
                lines.append(f'  trust-anchor: "{z.ds}"')
            else:
                lines.append(f'  domain-insecure: "{z.name}"')
        for z in self.zones:
            lines += ["stub-zone:", f'  name: "{z.name}"', f"  stub-addr: 127.0.0.1@{self.port}"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not keep_files():
            shutil.rmtree(self.dir, ignore_errors=True)

"""Shared helpers for Postern's integration tests (DESIGN.md §3-§6).

Everything here drives real processes on loopback: the `postern` binary (POSTERN_BIN),
`openssl`, Postfix (its own instance, `postfix -c DIR`), swaks. No helper sleeps to
synchronise: every wait polls a condition (ready-file, port, log line, file) with a bound.

Main entry points:
  pki()                      the test PKI (CA, server, partner/unlisted/self-signed clients,
                             wrong-name server) and PKCS#12 key rings, made once per process
  start_postern(cfg, ...)    a running server; .port(), .stop(), .protocol_log(), .queue_list()
  connector(...) / config_text(...)  TOML builders for the DESIGN §3 names
  PostfixInstance            a private Postfix (relay towards Postern, or a bench target)
  SmtpConn                   a raw line-level SMTP client for transcript-style tests
"""

import atexit
import csv
import glob
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

SERVER_NAME = "mx.postern.test"
PARTNER_NAME = "partner.postern.test"
UNLISTED_NAME = "stranger.postern.test"
WRONG_NAME = "wrong.postern.test"
ACCEPTED_DOMAIN = "example.test"
KEYRING_PASSWORD = "correct horse battery staple"

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


# --------------------------------------------------------------------------- utilities

def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    """A port the OS says is free now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postern_bin():
    candidates = [os.environ.get("POSTERN_BIN", ""),
                  os.path.join(REPO, "build", "postern"),
                  os.path.join(REPO, "build-it", "postern")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def fault_shim():
    """The preloaded fault library (tests/fault/fault_shim.cpp), built with the tests."""
    for candidate in (os.environ.get("POSTERN_FAULT_SHIM", ""),
                      os.path.join(REPO, "build", "tests", "libpostern_fault_shim.so")):
        if candidate and os.path.isfile(candidate):
            return candidate
    raise MissingDependency("the fault shim is not built (POSTERN_FAULT_SHIM, build/tests/libpostern_fault_shim.so)")


class MissingDependency(AssertionError):
    """A dependency that scripts/setup.sh installs (or builds) is missing: the test fails,
    it does not skip (a skipped test would pass CI without having run)."""


def missing_postern():
    return MissingDependency("postern binary not built (build it, or set POSTERN_BIN)")


def require_postern(test):
    if postern_bin() is None:
        raise missing_postern()


def require_tool(tool):
    """Fails the test when `tool` (installed by scripts/setup.sh) is not on PATH."""
    if not have(tool):
        raise MissingDependency(f"{tool} is not installed (scripts/setup.sh installs it)")


def have(tool):
    return shutil.which(tool) is not None


def run(cmd, timeout=60, check=True, input=None, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


# --------------------------------------------------------------------------- test PKI

class Pki:
    """CA + leaf certificates made with the openssl command line, in one directory.

    Files (all PEM): ca.pem/ca.key, server.pem/.key (mx.postern.test + IP 127.0.0.1),
    wrong.pem/.key (wrong.postern.test, same CA), partner.pem/.key (client),
    unlisted.pem/.key (client, a name nobody lists), selfsigned.pem/.key (client,
    partner's name but self-signed). Key rings: keyring.p12 (server) and
    wrong-keyring.p12 (wrong-name server), both with stash keyring.sth.
    """

    def __init__(self, directory):
        self.dir = directory
        os.chmod(directory, 0o755)
        self.ca = self.path("ca.pem")
        self._make_ca()
        self._leaf("server", SERVER_NAME, ["DNS:" + SERVER_NAME, "IP:127.0.0.1"])
        self._leaf("wrong", WRONG_NAME, ["DNS:" + WRONG_NAME])
        self._leaf("partner", PARTNER_NAME, ["DNS:" + PARTNER_NAME])
        self._leaf("unlisted", UNLISTED_NAME, ["DNS:" + UNLISTED_NAME])
        self._selfsigned("selfsigned", PARTNER_NAME)
        self.stash = self.path("keyring.sth")
        with open(self.stash, "w") as f:
            f.write(KEYRING_PASSWORD + "\n")
        os.chmod(self.stash, 0o600)
        self.keyring = self._keyring("keyring.p12", "server", "mx")
        self.wrong_keyring = self._keyring("wrong-keyring.p12", "wrong", "mx")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        return run(["openssl", *args], timeout=60)

    def _genkey(self, name):
        key = self.path(name + ".key")
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", key)
        os.chmod(key, 0o600)
        return key

    def _make_ca(self):
        key = self._genkey("ca")
        self._openssl("req", "-x509", "-new", "-key", key, "-out", self.ca, "-days", "30",
                      "-subj", "/O=Postern Tests/CN=Postern Test Root CA",
                      "-addext", "basicConstraints=critical,CA:true",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-addext", "subjectKeyIdentifier=hash")

    def _leaf(self, name, cn, sans):
        key = self._genkey(name)
        csr = self.path(name + ".csr")
        self._openssl("req", "-new", "-key", key, "-out", csr,
                      "-subj", f"/O=Postern Tests/CN={cn}")
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:false\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    f"subjectAltName={','.join(sans)}\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.path("ca.key"),
                      "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext,
                      "-out", self.path(name + ".pem"))

    def issue(self, name, cn, sans):
        """A further leaf from the test CA: <name>.pem and <name>.key."""
        self._leaf(name, cn, sans)
        return self.path(name + ".pem")

    def _selfsigned(self, name, cn):
        key = self._genkey(name)
        self._openssl("req", "-x509", "-new", "-key", key, "-out", self.path(name + ".pem"),
                      "-days", "30", "-subj", f"/O=Postern Tests/CN={cn}",
                      "-addext", f"subjectAltName=DNS:{cn}",
                      "-addext", "extendedKeyUsage=serverAuth,clientAuth")

    def _keyring(self, filename, leaf, label):
        """DESIGN §4 layout: the leaf key+cert with friendlyName=label and localKeyID;
        the CA as a trusted root (no localKeyID)."""
        out = self.path(filename)
        self._openssl("pkcs12", "-export", "-inkey", self.path(leaf + ".key"),
                      "-in", self.path(leaf + ".pem"), "-name", label,
                      "-certfile", self.ca, "-caname", "Postern Test Root CA",
                      "-passout", "pass:" + KEYRING_PASSWORD, "-out", out)
        os.chmod(out, 0o600)
        return out

    def fingerprint(self, name):
        """sha256:<hex> of a PEM certificate, the partner_fingerprints form."""
        out = self._openssl("x509", "-in", self.path(name + ".pem"), "-noout",
                            "-fingerprint", "-sha256").stdout
        hexpart = out.strip().split("=", 1)[1].replace(":", "").lower()
        return "sha256:" + hexpart

    def client_context(self, cert=None, verify=True):
        """An ssl.SSLContext that verifies the server against the test CA and optionally
        presents a client certificate ("partner", "unlisted", "selfsigned")."""
        ctx = ssl.create_default_context(cafile=self.ca) if verify else \
            ssl._create_unverified_context()
        if verify:
            ctx.check_hostname = True
        if cert:
            ctx.load_cert_chain(self.path(cert + ".pem"), self.path(cert + ".key"))
        return ctx


_PKI = None


def keep_files():
    """POSTERN_TEST_KEEP=1 keeps every temp directory (PKI, data_dir, Postfix) for a look."""
    return os.environ.get("POSTERN_TEST_KEEP") == "1"


def pki():
    global _PKI
    if _PKI is None:
        d = tempfile.mkdtemp(prefix="postern-pki-")
        if not keep_files():
            atexit.register(shutil.rmtree, d, True)
        _PKI = Pki(d)
    return _PKI


# --------------------------------------------------------------------------- configuration

def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))      # a TOML basic string is JSON-compatible for our values


def _table(header, values):
    lines = [header]
    for k, v in values.items():
        if v is None:
            continue
        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def connector(name="inbound", **kw):
    """One [[receive_connector]] (DESIGN §3) bound to 127.0.0.1:0, with test defaults
    (STARTTLS offered, TLS not required); keyword arguments override any key."""
    c = {"name": name, "bind": ["127.0.0.1:0"], "tls": "starttls"}
    c.update(kw)
    return c


_HOLD_PORT = None


def hold_send_connector():
    """A send connector for everything whose smart host is a loopback port where nothing
    listens: delivery is refused and deferred, so accepted mail stays in the queue
    (no DNS, no mail leaves the machine)."""
    global _HOLD_PORT
    if _HOLD_PORT is None:
        _HOLD_PORT = free_port()
    return {"name": "nowhere", "address_spaces": ["*"],
            "smart_hosts": [f"127.0.0.1:{_HOLD_PORT}"]}


def config_text(connectors=None, server=None, tls=None, queue=None, log=None, debug=None,
                send_connectors=None, extra=""):
    """A whole configuration file. "{data_dir}" in any string is replaced by start_postern."""
    server_t = {"hostname": SERVER_NAME, "data_dir": "{data_dir}",
                "accepted_domains": [ACCEPTED_DOMAIN], "shutdown_timeout": "5s"}
    server_t.update(server or {})
    tls_t = {"keyring": "keyring.p12", "stash": "keyring.sth"}
    tls_t.update(tls or {})
    # Tests fill disks on purpose only in the full-disk test.
    queue_t = {"min_free": "1MB"}
    queue_t.update(queue or {})
    parts = [_table("[server]", server_t), _table("[tls]", tls_t), _table("[queue]", queue_t)]
    if log:
        parts.append(_table("[log]", log))
    if debug:
        parts.append(_table("[debug]", debug))
    for c in connectors if connectors is not None else [connector()]:
        parts.append(_table("[[receive_connector]]", c))
    if send_connectors is None:
        send_connectors = [hold_send_connector()]
    for s in send_connectors:
        parts.append(_table("[[send_connector]]", s))
    return "\n".join(parts) + extra


# --------------------------------------------------------------------------- the server

class PosternError(RuntimeError):
    pass


class Postern:
    """A running `postern serve` with its own data_dir."""

    def __init__(self, proc, base, data_dir, config_file, ready_file, ready, stderr_path):
        self.proc = proc
        self.base = base
        self.data_dir = data_dir
        self.config_file = config_file
        self.ready_file = ready_file
        self.ready = ready
        self.stderr_path = stderr_path

    # -- discovery
    @property
    def pid(self):
        return self.ready.get("pid", self.proc.pid)

    def port(self, connector_name=None):
        for l in self.ready["listeners"]:
            if connector_name is None or l.get("connector") == connector_name:
                return int(l["port"])
        raise KeyError(f"no listener for connector {connector_name!r}: {self.ready}")

    def stderr_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self):
        return self.proc.poll() is None

    # -- stop
    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then wait with a bound. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise PosternError(f"postern did not stop within {timeout}s of SIGTERM\n"
                                   + self.stderr_text())
        return self.proc.returncode

    def remove_files(self):
        """Removes the server's temp directory (kept with POSTERN_TEST_KEEP=1)."""
        if not keep_files() and self.proc.poll() is not None:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- observation
    def protocol_log(self, kind="smtp-receive"):
        return ProtocolLog(os.path.join(self.data_dir, "log", kind))

    def cli(self, *args, timeout=60):
        """Runs `postern <args>` (e.g. "queue", "-c", FILE, "list")."""
        return run([postern_bin(), *args], timeout=timeout, check=False)

    def queue(self, *args, timeout=60):
        """Runs `postern queue -c FILE <args>` (works with the server running or stopped)."""
        return self.cli("queue", "-c", self.config_file, *args, timeout=timeout)

    def queue_list(self, strict=False):
        """The queued messages as `postern queue -c FILE list --json` reports them: a list of
        {"id", "received_at", "sender", "size", "held", "status", "reason", "recipients":
        [{"address", "state", "attempts", "next_attempt", "last_reply", ...}]}.
        On failure: None, or with strict=True a PosternError with the command's stderr."""
        p = self.queue("list", "--json")
        if p.returncode != 0:
            if strict:
                raise PosternError(f"postern queue list failed ({p.returncode}): {p.stderr.strip()}")
            return None
        try:
            data = json.loads(p.stdout)
        except ValueError:
            if strict:
                raise PosternError(f"postern queue list --json printed no JSON: {p.stdout[:500]!r}")
            return None
        return data["messages"] if isinstance(data, dict) and "messages" in data else data


def start_postern(config, data_dir=None, keyring=None, as_user=None, expect_failure=False,
                  timeout=READY_TIMEOUT, base_dir=None, env=None, wrapper=None, before_start=None):
    """Writes `config` (text; "{data_dir}" replaced) into a fresh data_dir with the test
    key ring and stash, starts `postern serve -c FILE --ready-file PATH`, and waits
    (polling, bounded) for the ready-file JSON. Returns a Postern.

    keyring: path of the PKCS#12 to install as <data_dir>/keyring.p12 (default: the
    mx.postern.test ring). as_user: chown the data_dir to this user (privilege drop tests).
    expect_failure: return (returncode, stderr) when the server exits instead of serving.
    env: variables added to the server's environment (LD_PRELOAD of the fault shim).
    wrapper: a command the server runs under (["prlimit", "--nofile=80:80", "--"]).
    before_start: called with the directory of the configuration file before the server
    starts (files the configuration names relative to it, such as recipient lists).
    """
    binary = postern_bin()
    if binary is None:
        raise missing_postern()
    p = pki()
    base = base_dir or tempfile.mkdtemp(prefix="postern-it-")
    os.chmod(base, 0o755)
    if data_dir is None:
        data_dir = os.path.join(base, "data")
    os.makedirs(data_dir, exist_ok=True)
    os.chmod(data_dir, 0o700)
    shutil.copyfile(keyring or p.keyring, os.path.join(data_dir, "keyring.p12"))
    shutil.copyfile(p.stash, os.path.join(data_dir, "keyring.sth"))
    os.chmod(os.path.join(data_dir, "keyring.p12"), 0o600)
    os.chmod(os.path.join(data_dir, "keyring.sth"), 0o600)
    if as_user:
        pw = pwd.getpwnam(as_user)
        for root, dirs, files in os.walk(data_dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    config_file = os.path.join(base, "postern.toml")
    with open(config_file, "w") as f:
        f.write(config.replace("{data_dir}", data_dir))
    if before_start:
        before_start(base)
    ready_file = os.path.join(base, "ready.json")
    if os.path.exists(ready_file):
        os.unlink(ready_file)
    stderr_path = os.path.join(base, "postern.stderr")
    stderr = open(stderr_path, "ab")
    proc = subprocess.Popen([*(wrapper or []), binary, "serve", "-c", config_file, "--ready-file", ready_file],
                            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                            start_new_session=True, env={**os.environ, **(env or {})})
    stderr.close()
    server = Postern(proc, base, data_dir, config_file, ready_file, None, stderr_path)

    def ready_or_exited():
        if os.path.exists(ready_file):
            try:
                with open(ready_file) as f:
                    return json.load(f)
            except ValueError:
                return None      # written atomically, so this should not happen; poll on
        if proc.poll() is not None:
            return {"exited": proc.returncode}
        return None

    try:
        state = wait_until(ready_or_exited, timeout, what="the ready-file")
    except TimeoutError:
        proc.kill()
        proc.wait(timeout=10)
        raise PosternError(f"postern wrote no ready-file within {timeout}s\n{server.stderr_text()}")
    if "exited" in state:
        if expect_failure:
            return state["exited"], server.stderr_text()
        raise PosternError(f"postern exited with {state['exited']} before it was ready:\n"
                           + server.stderr_text())
    if expect_failure:
        server.stop()
        raise PosternError("postern started although a failure was expected")
    server.ready = state
    return server


class PosternTestCase(unittest.TestCase):
    """Starts servers through self.start(...) and stops them at cleanup; on a failed test
    the server's stderr is printed."""

    def setUp(self):
        require_postern(self)
        self.pki = pki()
        self._servers = []

    def start(self, config, **kw):
        s = start_postern(config, **kw)
        self._servers.append(s)
        self.addCleanup(self._stop, s)
        return s

    def _stop(self, s):
        try:
            s.stop()
        finally:
            outcome = getattr(self, "_outcome", None)
            failed = False
            if outcome is not None:
                result = getattr(outcome, "result", None)
                errs = getattr(result, "errors", []) + getattr(result, "failures", [])
                failed = any(t is self for t, _ in errs)
            if failed or s.proc.returncode not in (0, None):
                sys.stderr.write(f"\n--- postern stderr ({s.base}) ---\n{s.stderr_text()}\n")
            elif not os.path.ismount(s.data_dir):
                s.remove_files()

    def smtp(self, server, connector_name=None, timeout=10):
        c = SmtpConn("127.0.0.1", server.port(connector_name), timeout=timeout)
        self.addCleanup(c.close)
        return c


# --------------------------------------------------------------------------- protocol log

FIELDS = ["date-time", "connector-id", "session-id", "sequence-number", "local-endpoint",
          "remote-endpoint", "event", "data", "context"]


class ProtocolLog:
    """Reads the CSV protocol log files of DESIGN §6 (RECVyyyymmdd-N.log)."""

    def __init__(self, directory):
        self.dir = directory

    def files(self):
        return sorted(glob.glob(os.path.join(self.dir, "*.log")))

    def headers(self):
        out = []
        for path in self.files():
            with open(path, newline="", errors="replace") as f:
                out.append([l.rstrip("\r\n") for l in f if l.startswith("#")])
        return out

    def rows(self):
        rows = []
        for path in self.files():
            with open(path, newline="", errors="replace") as f:
                lines = [l for l in f if not l.startswith("#")]
            for rec in csv.reader(lines):
                if not rec:
                    continue
                rec = rec + [""] * (len(FIELDS) - len(rec))
                rows.append(dict(zip(FIELDS, rec)))
        return rows

    def sessions(self):
        """session-id -> rows in sequence order."""
        by = {}
        for r in self.rows():
            by.setdefault(r["session-id"], []).append(r)
        for rows in by.values():
            rows.sort(key=lambda r: int(r["sequence-number"] or 0))
        return by

    def session_by_remote_port(self, port):
        for sid, rows in self.sessions().items():
            if any(r["remote-endpoint"].endswith(f":{port}") for r in rows):
                return rows
        return None

    def wait_session_closed(self, remote_port, timeout=10):
        """Waits until the session of a client (by its local port) has its `-` line."""
        def done():
            rows = self.session_by_remote_port(remote_port)
            if rows and any(r["event"] == "-" for r in rows):
                return rows
            return None
        return wait_until(done, timeout, what=f"the protocol log of client port {remote_port}")

    @staticmethod
    def accepted_messages(rows):
        """Messages a session acknowledged: `>` 250 replies that follow a `>` 354."""
        count, in_data = 0, False
        for r in rows:
            if r["event"] != ">":
                continue
            if r["data"].startswith("354"):
                in_data = True
            elif in_data:
                if r["data"].startswith("250"):
                    count += 1
                in_data = False
        return count


# --------------------------------------------------------------------------- raw SMTP

class SmtpConn:
    """A line-level SMTP client that writes exactly what it is told (for pipelining,
    injection and smuggling tests) and reads whole replies."""

    def __init__(self, host, port, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.transcript = []
        self.local_port = self.sock.getsockname()[1]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append("C: " + repr(data))
        self.sock.sendall(data)

    def send(self, line):
        self.send_raw(line + "\r\n")

    def _readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server; transcript:\n"
                                      + "\n".join(self.transcript))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """One whole reply: (code, [lines])."""
        lines = []
        while True:
            line = self._readline()
            lines.append(line)
            self.transcript.append("S: " + line)
            if len(line) < 4 or line[3] != "-":
                break
        code = int(lines[-1][:3]) if lines[-1][:3].isdigit() else 0
        return code, lines

    def cmd(self, line):
        self.send(line)
        return self.reply()

    def expect(self, prefix, line=None):
        """Sends `line` (if given) and asserts the reply's last line starts with prefix."""
        if line is not None:
            self.send(line)
        code, lines = self.reply()
        if not lines[-1].startswith(prefix):
            raise AssertionError(f"expected {prefix!r}, got {lines!r}; transcript:\n"
                                 + "\n".join(self.transcript))
        return lines

    def starttls(self, context, server_hostname=SERVER_NAME):
        """STARTTLS + handshake. Any bytes the server sent before the handshake that are
        still unread stay unread (they would be a protocol error)."""
        self.expect("220", "STARTTLS")
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        self.transcript.append("-- TLS " + str(self.sock.version()) + " " + str(self.sock.cipher()))
        return self.sock

    def read_until_closed(self, timeout=10):
        """Every reply until the server closes the connection (bounded)."""
        replies = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                replies.append(self.reply())
            except (ConnectionError, OSError, ssl.SSLError):
                break
        return replies

    def closed_by_peer(self, timeout=10):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except OSError:
            return True

    def hello(self, name="client.postern.test"):
        self.expect("220")
        return self.expect("250", f"EHLO {name}")


def message(size=0, subject="test", sender="alice@client.test", rcpt="bob@example.test",
            received=0):
    """An RFC 5322 message of roughly `size` octets of body (CRLF line ends)."""
    head = "".join(f"Received: from hop{i}.test by relay{i}.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   for i in range(received))
    head += (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
             "Message-ID: <" + str(time.time_ns()) + "@client.test>\r\n\r\n")
    line = "x" * 76 + "\r\n"
    body = line * (size // len(line)) + "end\r\n"
    return head + body


# --------------------------------------------------------------------------- Postfix

class PostfixInstance:
    """A private Postfix instance (`postfix -c DIR`): own main.cf/master.cf, queue and data
    directories, maillog_file, smtpd on 127.0.0.1:<free port>. Never touches the system's
    instance. `settings` are extra main.cf lines (name -> value)."""

    def __init__(self, settings=None, base=None, smtpd_port=None, master_extra=""):
        require_tool("postfix")
        self.base = base or tempfile.mkdtemp(prefix="postern-postfix-")
        os.chmod(self.base, 0o755)
        self.conf = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.maillog = os.path.join(self.base, "maillog")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data, pw.pw_uid, pw.pw_gid)
        os.chmod(self.data, 0o700)
        self.port = smtpd_port or free_port()
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.base,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "postfix.postern.test",
            "mydomain": "postern.test",
            "myorigin": "postfix.postern.test",
            "mydestination": "",
            "local_recipient_maps": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_client_event_limit_exceptions": "127.0.0.0/8",
            "smtp_host_lookup": "native",
            "smtp_dns_support_level": "disabled",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtputf8_enable": "no",
            "master_service_disable": "",
        }
        main.update(settings or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write(f"{k} = {v}\n")
        self._write_master(master_extra)

    def _write_master(self, extra):
        out = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                fields = line.split()
                if line[:1] not in ("#", " ", "\t", "\n") and len(fields) >= 8:
                    if fields[0] == "smtp" and fields[1] == "inet":
                        fields[0] = f"127.0.0.1:{self.port}"
                    if fields[0] in ("submission", "smtps", "628"):
                        continue
                    fields[4] = "n"                 # no chroot: nothing to copy in
                    line = "  ".join(fields[:8]) + (" " + " ".join(fields[8:]) if fields[8:] else "") + "\n"
                out.append(line)
        out.append(extra)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("".join(out))

    def postfix(self, *args, timeout=60, check=True):
        return run(["postfix", "-c", self.conf, *args], timeout=timeout, check=check)

    def postconf(self, *settings):
        run(["postconf", "-c", self.conf, "-e", *settings])

    def start(self):
        self.postfix("check")
        self.postfix("start")
        wait_until(lambda: port_accepts(self.port), 30, what=f"postfix smtpd on {self.port}")
        return self

    def stop(self):
        self.postfix("stop", check=False)
        # wait for the master to be gone (its pid file disappears), bounded
        pidfile = os.path.join(self.queue, "pid", "master.pid")

        def gone():
            try:
                pid = int(open(pidfile).read().strip())
            except (OSError, ValueError):
                return True
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True
        try:
            wait_until(gone, 30, what="postfix master to stop")
        except TimeoutError:
            pass

    def remove_files(self):
        if not keep_files():
            shutil.rmtree(self.base, ignore_errors=True)

    def master_pid(self):
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            return int(f.read().strip())

    def maillog_text(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_maillog(self, pattern, timeout=60):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.maillog_text()), timeout,
                          what=f"{pattern!r} in the Postfix maillog {self.maillog}")

    def queue_json(self):
        p = run(["postqueue", "-c", self.conf, "-j"], check=False)
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]

    def flush(self):
        run(["postqueue", "-c", self.conf, "-f"], check=False)


class SharedServerTestCase(unittest.TestCase):
    """One server for the whole class: subclasses define CONFIG (text) or config()."""

    CONFIG = None

    @classmethod
    def config(cls):
        return cls.CONFIG or config_text()

    @classmethod
    def setUpClass(cls):
        if postern_bin() is None:
            raise missing_postern()
        cls.pki = pki()
        cls.server = start_postern(cls.config())

    @classmethod
    def tearDownClass(cls):
        server = getattr(cls, "server", None)
        if server is not None:
            rc = server.stop()
            if rc not in (0, None):
                sys.stderr.write(f"\n--- postern exited {rc} ---\n{server.stderr_text()}\n")
            else:
                server.remove_files()

    def smtp(self, connector_name=None, timeout=10):
        c = SmtpConn("127.0.0.1", self.server.port(connector_name), timeout=timeout)
        self.addCleanup(c.close)
        return c

    def tls_session(self, cert=None, name="client.postern.test"):
        """Banner, EHLO, STARTTLS, EHLO: a session ready for MAIL."""
        c = self.smtp()
        c.hello(name)
        c.starttls(self.pki.client_context(cert))
        c.expect("250", f"EHLO {name}")
        return c

    def dump_on_failure(self):
        return self.server.stderr_text()

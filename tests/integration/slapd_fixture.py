"""A private OpenLDAP server (Debian's slapd) for the directory tests and the benchmark.

Started on 127.0.0.1:<free port> (ldap://, StartTLS) and another (ldaps://) with its own configuration, database and certificate
(issued by Postern's lab CA, `postern ca`), never the system's instance. StartTLS is
offered on ldap://; anonymous users may only bind, so a search works only after the bind
Postern is configured with. Entries carry `mail` and Active Directory's `proxyAddresses`
(a small schema of its own, with AD's OID), so both attribute kinds are exercised.
"""

import os
import shutil
import signal
import subprocess
import tempfile

from postern_testlib import (MissingDependency, free_port, keep_files, port_accepts, postern_bin, run,
                             wait_until)

SLAPD = "/usr/sbin/slapd"
BASE = "dc=corp,dc=test"
SERVICE_DN = "cn=postern,ou=services,dc=corp,dc=test"
SERVICE_PASSWORD = "directory-secret"

PROXY_SCHEMA = """\
attributetype ( 1.2.840.113556.1.2.210 NAME 'proxyAddresses'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'posternMailRecipient'
    SUP top AUXILIARY MAY proxyAddresses )
"""


def require_slapd():
    for tool in (SLAPD, "/usr/sbin/slapadd"):
        if not os.access(tool, os.X_OK):
            raise MissingDependency(f"{tool} is not installed (scripts/setup.sh installs slapd)")


def person(uid, mail=None, proxies=(), ou="people"):
    """One inetOrgPerson entry as LDIF."""
    lines = [f"dn: uid={uid},ou={ou},{BASE}", "objectClass: inetOrgPerson", "objectClass: posternMailRecipient",
             f"uid: {uid}", f"cn: {uid}", f"sn: {uid}"]
    if mail:
        lines.append(f"mail: {mail}")
    lines += [f"proxyAddresses: {p}" for p in proxies]
    return "\n".join(lines) + "\n\n"


class Slapd:
    def __init__(self, entries="", base=None):
        require_slapd()
        self.base = base or tempfile.mkdtemp(prefix="postern-slapd-")
        os.chmod(self.base, 0o755)
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_port = free_port()
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.proc = None
        self.db = os.path.join(self.base, "db")
        os.makedirs(self.db, exist_ok=True)
        self._certificates()
        self.password_file = os.path.join(self.base, "bind.secret")
        with open(self.password_file, "w") as f:
            f.write(SERVICE_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        with open(os.path.join(self.base, "proxy.schema"), "w") as f:
            f.write(PROXY_SCHEMA)
        self.conf = os.path.join(self.base, "slapd.conf")
        with open(self.conf, "w") as f:
            f.write(self._config())
        self.load(self._skeleton() + entries)

    def path(self, name):
        return os.path.join(self.base, name)

    def _certificates(self):
        """The lab CA (`postern ca init`) signs a CSR made for 127.0.0.1."""
        if postern_bin() is None:
            raise MissingDependency("postern binary not built (build it, or set POSTERN_BIN)")
        ca = self.path("ca")
        run([postern_bin(), "ca", "--dir", ca, "init", "--subject", "CN=Directory Lab Root"])
        self.ca_file = os.path.join(ca, "ca.pem")
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.path("ldap.key"), "-out", self.path("ldap.csr"), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        run([postern_bin(), "ca", "--dir", ca, "sign", self.path("ldap.csr"), "--out", self.path("ldap.pem")])

    def _config(self):
        return f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {self.path("proxy.schema")}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {self.path("slapd.pid")}
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {self.path("ldap.pem")}
TLSCertificateKeyFile {self.path("ldap.key")}
# Binds only over TLS (an SSF of 128 or more).
security simple_bind=128
database mdb
maxsize 1073741824
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw admin-secret
directory {self.db}
index objectClass,mail,proxyAddresses,uid,businessCategory eq
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by * none
"""

    def _skeleton(self):
        return (f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp\n\n"
                f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
                f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n\n"
                f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                f"cn: postern\nuserPassword: {SERVICE_PASSWORD}\n\n")

    def load(self, ldif):
        """slapadd, offline (quick mode): before start or while stopped."""
        path = self.path("load.ldif")
        with open(path, "w") as f:
            f.write(ldif)
        run(["/usr/sbin/slapadd", "-q", "-f", self.conf, "-l", path], timeout=600)

    def start(self):
        log = open(self.path("slapd.log"), "ab")
        # -d 0: stay in the foreground (its pid is ours to stop), log nothing much.
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-h", f"{self.uri} {self.ldaps_uri}", "-f", self.conf],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(lambda: (port_accepts(self.port) and port_accepts(self.ldaps_port)) or self.proc.poll() is not None, 30,
                   what=f"slapd on {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"slapd exited ({self.proc.returncode}):\n{open(self.path('slapd.log')).read()}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def search(self, ldap_filter):
        """ldapsearch over StartTLS as the service account, as Postern asks."""
        env = dict(os.environ, LDAPTLS_CACERT=self.ca_file, LDAPTLS_REQCERT="demand")
        return subprocess.run(["ldapsearch", "-LLL", "-ZZ", "-H", self.uri, "-x", "-D", SERVICE_DN,
                               "-w", SERVICE_PASSWORD, "-b", BASE, ldap_filter, "mail"],
                              capture_output=True, text=True, env=env, timeout=30)

    def source_toml(self, name="corp-directory", filter="(|(mail=%s)(proxyAddresses=smtp:%s))",
                    attributes=("mail", "proxyAddresses"), extra=""):
        attrs = ", ".join(f'"{a}"' for a in attributes)
        return (f'\n[[ldap_source]]\nname = "{name}"\nuri = "{self.uri}"\nca_file = "{self.ca_file}"\n'
                f'bind_dn = "{SERVICE_DN}"\nbind_password_file = "{self.password_file}"\nbase = "{BASE}"\n'
                f'filter = "{filter}"\nattributes = [{attrs}]\n{extra}')

    def remove_files(self):
        self.stop()
        if not keep_files():
            shutil.rmtree(self.base, ignore_errors=True)

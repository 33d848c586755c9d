// lab/demo_command.cpp: `postern demo [--keep] [--json] [--peer postfix]` (DESIGN.md §4).
//
// Two organisations exchanging mail over enforced, verified TLS, on loopback, in a
// temporary directory (removed unless --keep):
//   1. a lab CA (tls/lab_ca) and two key rings made with the operations behind
//      `postern keyring` (request, sign, trust, install): org A = mx.a.demo.test,
//      org B = mx.b.demo.test, each trusting the lab root;
//   2. org A is a `postern serve` child process of this same binary. It takes mail from
//      local clients only over STARTTLS and relays b.demo.test to B through a send connector
//      with require_tls, tls_auth_level = domain_validation, tls_domain = mx.b.demo.test,
//      presenting its own certificate. Org B is
//      - with `--peer postern` (the default): a second `postern serve` that requires TLS and
//        mutual TLS with A as a partner, and keeps what it accepts in its queue (its mailbox
//        next hop is a bound, closed port);
//      - with `--peer postfix`: a private Postfix instance (app/postfix_instance, started with
//        `postfix -c DIR start`, stopped with `postfix -c DIR stop`) using B's certificate and
//        key exported from B's key ring (as `postern keyring export --with-key`, 0600). It
//        requires TLS, requires and verifies A's client certificate against the lab root,
//        writes the TLS facts into the Received header and delivers into bob's Maildir; for
//        a.demo.test it sends to A's partner connector "from-org-b" (mutual TLS, partner
//        mx.b.demo.test) with smtp_tls_security_level = secure, matching mx.a.demo.test and
//        presenting B's certificate;
//   3. a plaintext attempt on A (refused, 530 5.7.0; with Postfix, on B too), then a message
//      over verified STARTTLS with the client of `postern send`;
//   4. bounded waits until the hop A -> B is proven: A's send protocol log shows the verdict
//      and the message acknowledged, and B's receive protocol log shows it (Postern), or
//      Postfix's maillog shows the Trusted TLS session and the delivery and the message is in
//      bob's Maildir (Postfix). With Postfix, bob answers with Postfix's sendmail and the
//      demo waits until Postfix logs a Verified TLS connection and the delivery, and A's
//      receive protocol log shows B as a partner;
//   5. SIGTERM to the Postern servers and `postfix stop` (bounded waits), and the story: each
//      hop, its TLS version and cipher, which root and which name were verified, the verdicts.
// Exit 0 only when every step held. Polls are of a condition, bounded; never a bare sleep.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "lab/commands.hpp"
#include "lab/postfix_instance.hpp"
#include "lab/send_client.hpp"
#include "config/schema.hpp"
#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/keyring_operations.hpp"
#include "tls/keyring/request_log.hpp"
#include "tls/keyring/stash.hpp"
#include "tls/lab_ca/lab_ca.hpp"

namespace postern::lab {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

constexpr auto ready_limit = std::chrono::seconds(30);
constexpr auto delivery_limit = std::chrono::seconds(60);
constexpr auto stop_limit = std::chrono::seconds(20);
constexpr auto poll_interval = std::chrono::milliseconds(50);

struct demo_args {
    bool keep = false;
    bool json = false;
    std::string peer = "postern";
};

struct demo_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// --- organisations, key rings ----------------------------------------------------------

struct organisation {
    std::string tag;          // "A"
    std::string label;        // "org A"
    std::string host;         // "mx.a.demo.test"
    std::string domain;       // "a.demo.test"
    fs::path dir, data, config, ready, server_log;
    json certificate;         // what the key ring holds for its server certificate
    pid_t pid = -1;
    std::uint16_t port = 0;
    std::optional<int> exit_status;   // set once reaped
    std::string stop_text;
};

/// A key ring made the way `postern keyring create | request | trust | install` make it,
/// with the CSR signed by the lab CA in between (as `postern ca sign`).
void make_keyring(organisation& org, const tls::lab_ca& ca, const fs::path& ca_pem) {
    fs::create_directories(org.data);
    ::chmod(org.data.c_str(), 0700);
    const fs::path keyring_file = org.data / "keyring.p12";
    const fs::path stash_file = org.data / "keyring.sth";

    // create
    tls::secret password = tls::generate_password();
    tls::write_stash(stash_file, password);
    tls::keyring ring;
    tls::request_log log;

    // request
    tls::request_options request;
    request.subject = "CN=" + org.host + ",O=Postern Demo " + org.label;
    request.names = {"DNS:" + org.host};
    request.label = "mx";
    auto requested = tls::add_request(ring, log, request);
    tls::write_file_atomically(org.dir / "mx.csr", requested.csr_pem, 0644);

    // the lab CA signs it
    auto csr = tls::request_from_text(requested.csr_pem, (org.dir / "mx.csr").string());
    auto cert = ca.sign(csr.get(), 90);
    tls::write_file_atomically(org.dir / "mx.pem", tls::to_pem(cert.get()), 0644);

    // trust the root, install the certificate onto its request
    std::vector<tls::x509_ptr> roots;
    roots.push_back(tls::up_ref(const_cast<X509*>(ca.certificate())));
    tls::trust_certificates(ring, std::move(roots), false, "", ca_pem.string());
    std::vector<tls::x509_ptr> leaf;
    leaf.push_back(std::move(cert));
    const std::string label = tls::install_certificate(ring, log, std::move(leaf), (org.dir / "mx.pem").string());
    ring.write(keyring_file, password.view());
    log.save(keyring_file);

    const auto* entry = ring.find(label);
    org.certificate = tls::describe(ring, log, *entry);
    json entries = json::array();
    for (const auto& e : ring.entries())
        entries.push_back({{"label", e.label}, {"role", std::string(tls::to_string(e.role))},
                           {"subject", e.certificate ? tls::subject_text(e.certificate.get()) : std::string()}});
    org.certificate["keyring_entries"] = entries;
}

// --- configurations --------------------------------------------------------------------

std::string quoted(const std::string& s) {
    return json(s).dump();   // a TOML basic string is JSON-compatible for these values
}

std::string config_for_b(const organisation& b, const organisation& a, std::uint16_t mailbox_port) {
    std::ostringstream t;
    t << "# Org B: takes mail for " << b.domain << " from its partner " << a.host << " only, over TLS\n"
      << "# with a client certificate (mutual TLS).\n"
      << "[server]\nhostname = " << quoted(b.host) << "\ndata_dir = " << quoted(b.data.string())
      << "\naccepted_domains = [" << quoted(b.domain) << "]\nshutdown_timeout = \"5s\"\n\n"
      << "[queue]\nmin_free = \"1MB\"\n\n"
      << "[[receive_connector]]\nname = \"from-org-a\"\nbind = [\"127.0.0.1:0\"]\ntls = \"starttls\"\n"
      << "require_tls = true\nauth_mechanisms = [\"mutual_tls\"]\npartner_names = [" << quoted(a.host)
      << "]\npermission_groups = [\"partners\"]\n\n"
      << "# B's own mailboxes are out of this demo: its next hop is a port that is bound and never\n"
      << "# listens, so what B accepts stays in its queue.\n"
      << "[[send_connector]]\nname = \"mailboxes\"\naddress_spaces = [" << quoted(b.domain)
      << "]\nsmart_hosts = [\"127.0.0.1:" << mailbox_port << "\"]\n";
    return t.str();
}

std::string config_for_a(const organisation& a, const organisation& b) {
    std::ostringstream t;
    t << "# Org A: takes mail from local clients over STARTTLS and relays " << b.domain << " to B\n"
      << "# over TLS that must reach domain_validation for " << b.host << ".\n"
      << "[server]\nhostname = " << quoted(a.host) << "\ndata_dir = " << quoted(a.data.string())
      << "\naccepted_domains = [" << quoted(a.domain) << "]\nshutdown_timeout = \"5s\"\n\n"
      << "[queue]\nmin_free = \"1MB\"\nretry = [\"2s\", \"10s\", \"1m\"]\n\n"
      << "[[receive_connector]]\nname = \"from-clients\"\nbind = [\"127.0.0.1:0\"]\n"
      << "remote_ip_ranges = [\"127.0.0.1/32\"]\ntls = \"starttls\"\nrequire_tls = true\n"
      << "accept_any_recipient = true\n\n"
      << "[[send_connector]]\nname = \"to-org-b\"\naddress_spaces = [" << quoted(b.domain) << "]\n"
      << "smart_hosts = [\"127.0.0.1:" << b.port << "\"]\nrequire_tls = true\n"
      << "tls_auth_level = \"domain_validation\"\ntls_domain = " << quoted(b.host) << "\n"
      << "client_certificate = \"mx\"\n";
    return t.str();
}

/// A's configuration when org B is Postfix: the same, plus a partner connector for B's mail
/// (its own port: Postfix and the local clients both come from 127.0.0.1) and a next hop for
/// A's own domain that keeps what arrives in A's queue.
std::string config_for_a_with_postfix(const organisation& a, const organisation& b, std::uint16_t partner_port,
                                      std::uint16_t mailbox_port) {
    std::ostringstream t;
    t << config_for_a(a, b) << "\n"
      << "# B (Postfix) sends " << a.domain << " here, over TLS with its client certificate.\n"
      << "[[receive_connector]]\nname = \"from-org-b\"\nbind = [\"127.0.0.1:" << partner_port << "\"]\n"
      << "tls = \"starttls\"\nrequire_tls = true\nauth_mechanisms = [\"mutual_tls\"]\npartner_names = ["
      << quoted(b.host) << "]\npermission_groups = [\"partners\"]\n\n"
      << "# A's own mailboxes are out of this demo: its next hop is a port that is bound and never\n"
      << "# listens, so what A accepts for " << a.domain << " stays in its queue.\n"
      << "[[send_connector]]\nname = \"mailboxes\"\naddress_spaces = [" << quoted(a.domain)
      << "]\nsmart_hosts = [\"127.0.0.1:" << mailbox_port << "\"]\n";
    return t.str();
}

void write_config(organisation& org, const std::string& text) {
    tls::write_file_atomically(org.config, text, 0600);
    auto loaded = config::load_file(org.config);
    if (!loaded.ok()) throw demo_failure(org.label + " configuration refused: " + loaded.errors.front().to_string());
}

// --- child processes -------------------------------------------------------------------

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
    return "status " + std::to_string(status);
}

void start_server(organisation& org) {
    std::error_code ec;
    fs::remove(org.ready, ec);
    const pid_t pid = ::fork();
    if (pid < 0) throw demo_failure(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
        int fd = ::open(org.server_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        int null = ::open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            ::dup2(fd, STDOUT_FILENO);
            ::dup2(fd, STDERR_FILENO);
        }
        if (null >= 0) ::dup2(null, STDIN_FILENO);
        ::execl("/proc/self/exe", "postern", "serve", "-c", org.config.c_str(), "--ready-file", org.ready.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    org.pid = pid;
    const auto deadline = clock_type::now() + ready_limit;
    for (;;) {
        if (fs::exists(org.ready, ec)) {
            std::ifstream in(org.ready);
            json ready = json::parse(in, nullptr, false);
            if (!ready.is_discarded() && !ready["listeners"].empty()) {
                org.port = ready["listeners"][0]["port"].get<std::uint16_t>();
                return;
            }
        }
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            org.exit_status = status;
            org.pid = -1;
            throw demo_failure(org.label + " server exited before it was ready (" + describe_status(status) +
                               "); its log: " + org.server_log.string());
        }
        if (clock_type::now() >= deadline)
            throw demo_failure(org.label + " server wrote no ready-file within " +
                               std::to_string(ready_limit.count()) + "s; its log: " + org.server_log.string());
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
}

/// SIGTERM, then a bounded wait; SIGKILL only when the bound passes.
void stop_server(organisation& org) {
    if (org.pid <= 0) return;
    ::kill(org.pid, SIGTERM);
    const auto deadline = clock_type::now() + stop_limit;
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(org.pid, &status, WNOHANG);
        if (r == org.pid) {
            org.exit_status = status;
            org.stop_text = describe_status(status);
            break;
        }
        if (r < 0) {
            org.stop_text = std::string("cannot wait: ") + std::strerror(errno);
            break;
        }
        if (clock_type::now() >= deadline) {
            ::kill(org.pid, SIGKILL);
            ::waitpid(org.pid, &status, 0);
            org.exit_status = status;
            org.stop_text = "did not stop within " + std::to_string(stop_limit.count()) + "s of SIGTERM; killed";
            break;
        }
        std::this_thread::sleep_for(poll_interval);
    }
    org.pid = -1;
}

/// Stops whatever is still running when the demo ends early.
struct servers_guard {
    std::vector<organisation*> orgs;
    ~servers_guard() {
        for (auto* o : orgs) stop_server(*o);
    }
};

/// Runs this binary with `args`, stdout captured (bounded by the server's own limits).
std::pair<int, std::string> run_self(const std::vector<std::string>& args) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return {-1, ""};
    const pid_t pid = ::fork();
    if (pid < 0) return {-1, ""};
    if (pid == 0) {
        ::dup2(pipe_fds[1], STDOUT_FILENO);
        int null = ::open("/dev/null", O_RDWR);
        if (null >= 0) {
            ::dup2(null, STDERR_FILENO);
            ::dup2(null, STDIN_FILENO);
        }
        std::vector<char*> argv{const_cast<char*>("postern")};
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv("/proc/self/exe", argv.data());
        ::_exit(127);
    }
    ::close(pipe_fds[1]);
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
        if (n > 0) out.append(buf, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR) break;
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// --- protocol logs ---------------------------------------------------------------------

struct log_row {
    std::string connector, session, event, data;
    int sequence = 0;
    std::string remote;
};

std::vector<std::string> csv_fields(const std::string& line) {
    std::vector<std::string> out;
    std::string field;
    bool quoted_field = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (quoted_field) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                field += '"';
                ++i;
            } else if (c == '"') {
                quoted_field = false;
            } else {
                field += c;
            }
        } else if (c == '"') {
            quoted_field = true;
        } else if (c == ',') {
            out.push_back(std::move(field));
            field.clear();
        } else if (c != '\r') {
            field += c;
        }
    }
    out.push_back(std::move(field));
    return out;
}

/// session-id -> rows in sequence order, from every file of a protocol log directory.
std::map<std::string, std::vector<log_row>> read_sessions(const fs::path& dir) {
    std::map<std::string, std::vector<log_row>> sessions;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return sessions;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".log") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        std::ifstream in(f);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            auto fields = csv_fields(line);
            if (fields.size() < 8) continue;
            log_row r;
            r.connector = fields[1];
            r.session = fields[2];
            try {
                r.sequence = std::stoi(fields[3]);
            } catch (const std::exception&) {
            }
            r.remote = fields[5];
            r.event = fields[6];
            r.data = fields[7];
            sessions[r.session].push_back(std::move(r));
        }
    }
    for (auto& [id, rows] : sessions)
        std::stable_sort(rows.begin(), rows.end(), [](const log_row& x, const log_row& y) { return x.sequence < y.sequence; });
    return sessions;
}

bool starts_with(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

/// The reply to the end of DATA: the first reply of `reply_event` after a 354.
std::string data_acknowledgement(const std::vector<log_row>& rows, const std::string& reply_event) {
    bool in_data = false;
    for (const auto& r : rows) {
        if (r.event != reply_event) continue;
        if (starts_with(r.data, "354")) in_data = true;
        else if (in_data) return r.data;
    }
    return {};
}

std::string field_after(const std::string& text, const std::string& key) {
    auto at = text.find(key + "=");
    if (at == std::string::npos) return {};
    at += key.size() + 1;
    if (at < text.size() && text[at] == '"') {
        auto end = text.find('"', at + 1);
        return text.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
    }
    auto end = text.find_first_of(" ;", at);
    return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

/// Hop 2 as A's send log tells it: the session whose DATA was acknowledged (on `connector`
/// when one is named).
std::optional<json> hop_from_send_log(const fs::path& dir, const std::string& connector = "") {
    for (const auto& [id, rows] : read_sessions(dir)) {
        if (!connector.empty() && (rows.empty() || rows.front().connector != connector)) continue;
        const std::string ack = data_acknowledgement(rows, "<");
        if (!starts_with(ack, "250")) continue;
        json hop{{"session", id}, {"reply", ack}};
        for (const auto& r : rows) {
            if (r.event == "+" || hop.contains("remote") == false) hop["remote"] = r.remote;
            if (r.event == "*" && starts_with(r.data, "TLS protocol=")) {
                hop["verdict_line"] = r.data;
                hop["protocol"] = field_after(r.data, "protocol");
                hop["cipher"] = field_after(r.data, "cipher");
                hop["subject"] = field_after(r.data, "subject");
                hop["issuer"] = field_after(r.data, "issuer");
                hop["sha256"] = field_after(r.data, "sha256");
                hop["achieved"] = field_after(r.data, "achieved");
                hop["required"] = field_after(r.data, "required");
                hop["verdict"] = field_after(r.data, "verdict");
            }
        }
        return hop;
    }
    return std::nullopt;
}

/// A hop as the receiving side's log tells it: a session that got 250 after DATA (on
/// `connector` when one is named).
std::optional<json> hop_from_receive_log(const fs::path& dir, const std::string& connector = "") {
    for (const auto& [id, rows] : read_sessions(dir)) {
        if (!connector.empty() && (rows.empty() || rows.front().connector != connector)) continue;
        const std::string ack = data_acknowledgement(rows, ">");
        if (!starts_with(ack, "250")) continue;
        json hop{{"session", id}, {"reply", ack}};
        for (const auto& r : rows) {
            if (r.event == "+") hop["remote"] = r.remote;
            if (r.event != "*") continue;
            if (starts_with(r.data, "TLS protocol=")) {
                hop["protocol"] = field_after(r.data, "protocol");
                hop["cipher"] = field_after(r.data, "cipher");
            } else if (starts_with(r.data, "client certificate")) {
                hop["client_certificate"] = r.data;
                hop["client_certificate_verified"] = field_after(r.data, "verified") == "yes";
            } else if (starts_with(r.data, "verdict:")) {
                hop["verdict"] = r.data;
                hop["partner"] = r.data.find("partner (mutual_tls satisfied)") != std::string::npos;
            }
        }
        return hop;
    }
    return std::nullopt;
}

bool aead(const std::string& cipher) {
    return cipher.find("GCM") != std::string::npos || cipher.find("CHACHA20") != std::string::npos ||
           cipher.find("CCM") != std::string::npos;
}

bool tls12_or_later(const std::string& protocol) { return protocol == "TLSv1.2" || protocol == "TLSv1.3"; }

// --- the demo --------------------------------------------------------------------------

/// What every step shares: the story (JSON), the failures, the two organisations.
struct demo_run {
    const demo_args& args;
    fs::path work;
    json story;
    json failures = json::array();
    organisation a, b;
    fs::path ca_pem;
    std::string root_subject;
    int mailbox_fd = -1;           // a bound port that never listens: "mailboxes" next hop
    std::uint16_t mailbox_port = 0;

    demo_run(const demo_args& options, fs::path dir) : args(options), work(std::move(dir)) {}

    void say(const std::string& text) const {
        if (!args.json) std::cout << text << std::endl;
    }
    bool check(bool ok, const std::string& what) {
        if (!ok) failures.push_back(what);
        return ok;
    }
};

/// Step 1: the lab CA and both key rings.
void make_pki(demo_run& d) {
    const fs::path ca_dir = d.work / "ca";
    tls::lab_ca ca = tls::lab_ca::init(ca_dir, "CN=Postern Demo Root CA,O=Postern Demo", 30);
    d.ca_pem = ca_dir / "ca.pem";
    d.root_subject = tls::subject_text(ca.certificate());
    make_keyring(d.a, ca, d.ca_pem);
    make_keyring(d.b, ca, d.ca_pem);
    d.story["pki"] = {{"root", d.root_subject},
                      {"root_file", d.ca_pem.string()},
                      {"root_sha256", tls::sha256_fingerprint(ca.certificate())},
                      {"org_a", d.a.certificate},
                      {"org_b", d.b.certificate}};
    d.say("\n1. PKI: lab root \"" + d.root_subject + "\" (postern ca)");
    for (auto* o : {&d.a, &d.b})
        d.say("   " + o->label + " key ring " + (o->data / "keyring.p12").string() + ": \"mx\" = " +
              o->certificate.value("subject", "") + ", issued by the lab root; the root is trusted");
}

/// A port bound on loopback that never listens: the next hop of mail an organisation keeps.
void hold_mailbox_port(demo_run& d) {
    d.mailbox_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in hold{};
    hold.sin_family = AF_INET;
    hold.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t hold_len = sizeof hold;
    if (d.mailbox_fd < 0 || ::bind(d.mailbox_fd, reinterpret_cast<sockaddr*>(&hold), sizeof hold) != 0 ||
        ::getsockname(d.mailbox_fd, reinterpret_cast<sockaddr*>(&hold), &hold_len) != 0)
        throw demo_failure(std::string("cannot bind a loopback port: ") + std::strerror(errno));
    d.mailbox_port = ntohs(hold.sin_port);
}

struct plaintext_outcome {
    bool refused = false;     // 530 to MAIL FROM before STARTTLS
    std::string reply;        // the server's reply ("" when there was none)
    std::string shown;        // the reply, or why there was none
};

/// MAIL FROM before STARTTLS on `port`.
plaintext_outcome plaintext_attempt(const demo_run& d, std::uint16_t port) {
    send_request plain;
    plain.host = "127.0.0.1";
    plain.port = port;
    plain.helo = "client.a.demo.test";
    plain.from = "alice@" + d.a.domain;
    plain.to = "bob@" + d.b.domain;
    plain.subject = "Postern demo (plaintext attempt)";
    plain.timeout_seconds = 15;
    auto r = run_send(plain);
    return {!r.delivered && starts_with(r.final_reply, "530"), r.final_reply,
            r.final_reply.empty() ? r.failure : r.final_reply};
}

/// Step 3: a plaintext MAIL FROM on A is refused.
void plaintext_on_a(demo_run& d) {
    const auto p = plaintext_attempt(d, d.a.port);
    d.check(p.refused, "a plaintext MAIL FROM on A was not refused with 530 (got: " + p.shown + ")");
    d.story["plaintext"] = {{"server", "org A"}, {"refused", p.refused}, {"reply", p.reply}};
    d.say("\n3. Plaintext: MAIL FROM before STARTTLS on A -> " + p.shown +
          (p.refused ? "  (refused, as required)" : "  (NOT refused!)"));
}

/// Step 4: the client of `postern send` to A over verified STARTTLS.
std::pair<send_report, json> hop_client_to_a(demo_run& d) {
    send_request msg;
    msg.host = "127.0.0.1";
    msg.port = d.a.port;
    msg.helo = "client.a.demo.test";
    msg.from = "alice@" + d.a.domain;
    msg.to = "bob@" + d.b.domain;
    msg.timeout_seconds = 15;
    msg.tls = send_request::tls_use::starttls;
    msg.ca_file = d.ca_pem.string();
    msg.tls_domain = d.a.host;
    msg.level = delivery::auth_level::domain_validation;
    msg.subject = "Postern demo: from org A to org B over verified TLS";
    msg.body = "Carried from a.demo.test to b.demo.test over enforced, verified TLS.\r\n";
    auto sent = run_send(msg);
    const auto& v1 = sent.verdict;
    json hop1{{"from", "demo client"},
              {"to", "org A " + d.a.host + " (127.0.0.1:" + std::to_string(d.a.port) + ")"},
              {"delivered", sent.delivered},
              {"reply", sent.final_reply},
              {"message_id", sent.message_id},
              {"protocol", v1.protocol},
              {"cipher", v1.cipher},
              {"subject", v1.subject},
              {"issuer", v1.issuer},
              {"verified_against", sent.trust_anchors},
              {"name", sent.name_checked},
              {"achieved", delivery::to_string(sent.achieved)},
              {"required", "domain_validation"},
              {"verdict_line", v1.log_line()}};
    if (!sent.delivered) hop1["failure"] = sent.failure;
    d.check(sent.delivered, "hop 1 (client -> A) not accepted: " + sent.failure);
    d.check(tls12_or_later(v1.protocol) && aead(v1.cipher),
            "hop 1 TLS is not 1.2+ with an AEAD cipher: " + v1.protocol + " " + v1.cipher);
    d.check(sent.achieved == delivery::auth_level::domain_validation, "hop 1 did not reach domain_validation");
    d.say("\n4. Hop 1, client -> A (" + d.a.host + "), STARTTLS with `postern send`'s client:");
    d.say("   TLS " + v1.protocol + ", " + v1.cipher);
    d.say("   certificate " + v1.subject + ", issued by " + v1.issuer);
    d.say("   verified against the root \"" + d.root_subject + "\" and the name " + sent.name_checked + ": " +
          delivery::to_string(sent.achieved));
    d.say("   A answered: " + (sent.delivered ? sent.final_reply : "NOT accepted: " + sent.failure));
    return {std::move(sent), std::move(hop1)};
}

/// A's send protocol log on hop 2 into `hop`, with the checks on its verdict line.
void hop2_from_a(demo_run& d, const std::optional<json>& from_a, json& hop2) {
    if (!from_a) return;
    hop2["send_log"] = *from_a;
    const std::string protocol = from_a->value("protocol", ""), cipher = from_a->value("cipher", "");
    hop2["protocol"] = protocol;
    hop2["cipher"] = cipher;
    hop2["achieved"] = from_a->value("achieved", "");
    hop2["required"] = from_a->value("required", "");
    hop2["verdict"] = from_a->value("verdict", "");
    d.check(tls12_or_later(protocol) && aead(cipher),
            "hop 2 TLS is not 1.2+ with an AEAD cipher: " + protocol + " " + cipher);
    d.check(hop2["achieved"] == "domain_validation" && hop2["verdict"] == "pass",
            "hop 2 verdict in A's send log is not domain_validation/pass: " + from_a->value("verdict_line", ""));
}

void say_hop2_from_a(const demo_run& d, const json& hop2) {
    if (!hop2.contains("send_log")) return;
    const json& from_a = hop2["send_log"];
    d.say("   TLS " + hop2.value("protocol", "") + ", " + hop2.value("cipher", ""));
    d.say("   certificate " + from_a.value("subject", "") + ", issued by " + from_a.value("issuer", ""));
    d.say("   verified against the root \"" + d.root_subject + "\" (A's key ring) and the name " + d.b.host);
    d.say("   A's send protocol log: achieved=" + hop2.value("achieved", "") + " required=" +
          hop2.value("required", "") + " verdict=" + hop2.value("verdict", ""));
}

void stop_and_report_a(demo_run& d) {
    stop_server(d.a);
    const bool clean = d.a.exit_status && WIFEXITED(*d.a.exit_status) && WEXITSTATUS(*d.a.exit_status) == 0;
    d.check(clean, d.a.label + " server: " + d.a.stop_text);
}

// --- org B: Postern ----------------------------------------------------------------------

void exchange_with_postern(demo_run& d) {
    organisation& a = d.a;
    organisation& b = d.b;
    servers_guard guard{{&a, &b}};

    // 2. servers: B first, A relays to B's port
    hold_mailbox_port(d);
    write_config(b, config_for_b(b, a, d.mailbox_port));
    start_server(b);
    write_config(a, config_for_a(a, b));
    start_server(a);
    d.story["servers"] = {
        {"org_a", {{"host", a.host}, {"listen", "127.0.0.1:" + std::to_string(a.port)}, {"pid", a.pid},
                   {"config", a.config.string()},
                   {"relays", b.domain + " -> 127.0.0.1:" + std::to_string(b.port) +
                                  " (require_tls, domain_validation, tls_domain " + b.host +
                                  ", client certificate \"mx\")"}}},
        {"org_b", {{"host", b.host}, {"listen", "127.0.0.1:" + std::to_string(b.port)}, {"pid", b.pid},
                   {"config", b.config.string()},
                   {"accepts", "require_tls, mutual_tls, partner " + a.host}}}};
    d.say("\n2. Servers (postern serve, child processes):");
    d.say("   A " + a.host + " on 127.0.0.1:" + std::to_string(a.port) + " (pid " + std::to_string(a.pid) +
          "): STARTTLS required; relays " + b.domain + " to B with require_tls, tls_auth_level = "
          "domain_validation, tls_domain = " + b.host + ", client certificate \"mx\"");
    d.say("   B " + b.host + " on 127.0.0.1:" + std::to_string(b.port) + " (pid " + std::to_string(b.pid) +
          "): STARTTLS required; mutual TLS, partner " + a.host);

    // 3, 4
    plaintext_on_a(d);
    auto [sent, hop1] = hop_client_to_a(d);

    // 5. hop 2: wait (bounded) until B's receive log shows A's message acknowledged
    std::optional<json> at_b, from_a;
    const auto deadline = clock_type::now() + delivery_limit;
    while (sent.delivered) {
        at_b = hop_from_receive_log(b.data / "log" / "smtp-receive");
        from_a = hop_from_send_log(a.data / "log" / "smtp-send");
        if (at_b && from_a) break;
        if (clock_type::now() >= deadline) break;
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
    json hop2{{"from", "org A " + a.host}, {"to", "org B " + b.host + " (127.0.0.1:" + std::to_string(b.port) + ")"}};
    hop2["delivered"] = at_b.has_value() && from_a.has_value();
    if (at_b) hop2["receive_log"] = *at_b;
    hop2["verified_against"] = json::array({d.root_subject});
    hop2["name"] = b.host;
    if (sent.delivered && !(at_b && from_a)) {
        std::string detail = "no acknowledged session yet in ";
        detail += !at_b ? "B's receive protocol log" : "A's send protocol log";
        d.check(false, "hop 2 (A -> B) not seen within " + std::to_string(delivery_limit.count()) + "s: " + detail +
                           " (see " + (a.data / "log" / "smtp-send").string() + ")");
    }
    hop2_from_a(d, from_a, hop2);
    if (at_b) {
        hop2["partner"] = at_b->value("partner", false);
        d.check(at_b->value("partner", false), "B did not recognise A as a partner: " + at_b->value("verdict", ""));
    }
    // B's queue, when `postern queue` is there to ask.
    auto [queue_rc, queue_out] = run_self({"queue", "-c", b.config.string(), "list", "--json"});
    if (queue_rc == 0) {
        json q = json::parse(queue_out, nullptr, false);
        if (!q.is_discarded()) hop2["b_queue"] = q;
    }
    d.say("\n5. Hop 2, A -> B (" + b.host + "), A's send connector \"to-org-b\":");
    say_hop2_from_a(d, hop2);
    if (at_b) {
        d.say("   B's receive protocol log: " + at_b->value("client_certificate", std::string("no client certificate line")));
        d.say("   B: " + at_b->value("verdict", std::string("-")));
        d.say("   B answered A: " + at_b->value("reply", ""));
    }
    if (hop2.contains("b_queue") && hop2["b_queue"].contains("messages")) {
        for (const auto& m : hop2["b_queue"]["messages"]) {
            std::string rcpts;
            if (m.contains("recipients"))
                for (const auto& r : m["recipients"]) rcpts += (rcpts.empty() ? "" : ", ") + r.value("address", "");
            d.say("   B's queue (postern queue list): " + m.value("id", "") + " from " + m.value("sender", "") +
                  " to " + rcpts + ", " + m.value("status", "") +
                  " (B's own mailbox delivery is not part of this demo)");
        }
    } else if (at_b) {
        d.say("   (the message waits in B's queue; B's receive protocol log is the evidence here)");
    }
    if (!(at_b && from_a)) d.say("   NOT delivered to B: " + d.failures.back().get<std::string>());

    d.story["hops"] = json::array({hop1, hop2});

    // 6. stop both
    stop_and_report_a(d);
    stop_server(b);
    const bool clean = b.exit_status && WIFEXITED(*b.exit_status) && WEXITSTATUS(*b.exit_status) == 0;
    d.check(clean, b.label + " server: " + b.stop_text);
    d.story["stopped"] = {{"org_a", a.stop_text}, {"org_b", b.stop_text}};
    d.say("\n6. Stopped with SIGTERM: A " + a.stop_text + ", B " + b.stop_text);
}

// --- org B: Postfix ----------------------------------------------------------------------

/// A maillog line without its date and host: "postfix/smtpd[123]: ...".
std::string maillog_entry(const std::string& line) {
    const auto at = line.find("postfix/");
    return at == std::string::npos ? line : line.substr(at);
}

/// The first Received header with TLS facts, as Postfix folded it, indented for the story.
std::string received_header_lines(const std::string& message, const std::string& indent) {
    std::istringstream in(message);
    std::string line;
    std::vector<std::vector<std::string>> fields;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) break;   // end of the header section
        if ((line[0] == ' ' || line[0] == '\t') && !fields.empty()) fields.back().push_back(line);
        else fields.push_back({line});
    }
    for (const auto& field : fields) {
        if (::strncasecmp(field[0].c_str(), "Received:", 9) != 0) continue;
        std::string joined;
        for (const auto& l : field) joined += l;
        if (joined.find("(using ") == std::string::npos) continue;
        std::string out;
        for (std::size_t i = 0; i < field.size(); ++i) {
            // continuation lines start with a tab (and sometimes a space after it): keep the shape
            out += (out.empty() ? "" : "\n") + indent + (i ? "  " + field[i].substr(1) : field[i]);
        }
        return out;
    }
    return {};
}

/// 1b. B's certificate and key for Postfix, as `postern keyring export mx --format pem
/// --with-key`; returns the file.
fs::path export_certificate_for_postfix(demo_run& d) {
    organisation& b = d.b;
    const fs::path postfix_base = b.dir / "postfix";
    fs::create_directories(postfix_base / "etc");
    ::chmod(postfix_base.c_str(), 0755);
    const fs::path exported = postfix_base / "etc" / (b.host + ".pem");
    {
        const fs::path keyring_file = b.data / "keyring.p12";
        tls::secret password = tls::read_stash(b.data / "keyring.sth");
        tls::keyring ring = tls::keyring::read(keyring_file, password.view());
        std::string pem = tls::export_pem(ring, "mx", true);
        tls::write_file_atomically(exported, pem, 0600);
        OPENSSL_cleanse(pem.data(), pem.size());
    }
    d.story["pki"]["org_b_export"] = {{"file", exported.string()}, {"mode", "0600"},
                                      {"content", "certificate, chain to the lab root, private key (PEM)"},
                                      {"as", "postern keyring export mx --format pem --with-key"}};
    d.say("   org B's certificate, chain and key exported for Postfix (as `postern keyring export mx --format pem "
          "--with-key`): " + exported.string() + " (mode 0600)");
    return exported;
}

postfix_settings postfix_settings_for(const demo_run& d, const fs::path& certificate, std::uint16_t smtpd_port,
                                      std::uint16_t partner_port) {
    postfix_settings ps;
    ps.base = d.b.dir / "postfix";
    ps.hostname = d.b.host;
    ps.domain = d.b.domain;
    ps.mailboxes = {"bob"};
    ps.smtpd_port = smtpd_port;
    ps.certificate = certificate;
    ps.ca_file = d.ca_pem;
    ps.relay_domain = d.a.domain;
    ps.relay_address = "127.0.0.1";
    ps.relay_port = partner_port;
    ps.relay_name = d.a.host;
    return ps;
}

/// 2. What runs where: the story's "servers" and the lines a person reads.
void describe_servers_with_postfix(demo_run& d, const postfix_instance& pf, std::uint16_t partner_port,
                                   const std::string& postfix_name) {
    organisation& a = d.a;
    organisation& b = d.b;
    d.story["servers"] = {
        {"org_a",
         {{"host", a.host}, {"software", "Postern"}, {"listen", "127.0.0.1:" + std::to_string(a.port)},
          {"partner_listen", "127.0.0.1:" + std::to_string(partner_port)}, {"pid", a.pid},
          {"config", a.config.string()},
          {"relays", b.domain + " -> 127.0.0.1:" + std::to_string(b.port) +
                         " (require_tls, domain_validation, tls_domain " + b.host + ", client certificate \"mx\")"},
          {"accepts_from_b", "connector from-org-b: require_tls, mutual_tls, partner " + b.host}}},
        {"org_b",
         {{"host", b.host}, {"software", postfix_name}, {"listen", "127.0.0.1:" + std::to_string(b.port)},
          {"master_pid", pf.master_pid()}, {"config_dir", pf.config_dir().string()},
          {"maillog", pf.maillog_file().string()}, {"mailboxes", pf.mail_dir().string()},
          {"accepts", "smtpd_tls_security_level = encrypt, smtpd_tls_req_ccert = yes (verified against the lab root), "
                      "virtual Maildir for bob@" + b.domain},
          {"relays", a.domain + " -> [127.0.0.1]:" + std::to_string(partner_port) +
                         " (smtp_tls_security_level = secure, smtp_tls_secure_cert_match = " + a.host +
                         ", client certificate = B's)"}}}};
    d.say("\n2. Servers: org A is Postern (postern serve, child process), org B is " + postfix_name +
          " (postfix -c " + pf.config_dir().string() + "):");
    d.say("   A " + a.host + " on 127.0.0.1:" + std::to_string(a.port) + " (pid " + std::to_string(a.pid) +
          "): STARTTLS required; relays " + b.domain + " to B with require_tls, tls_auth_level = "
          "domain_validation, tls_domain = " + b.host + ", client certificate \"mx\"");
    d.say("   A " + a.host + " on 127.0.0.1:" + std::to_string(partner_port) +
          " (connector \"from-org-b\"): STARTTLS required; mutual TLS, partner " + b.host);
    d.say("   B " + b.host + " on 127.0.0.1:" + std::to_string(b.port) + " (master pid " +
          std::to_string(pf.master_pid()) + "): smtpd_tls_security_level = encrypt, client certificate required "
          "and verified against the lab root; Maildir for bob@" + b.domain);
    d.say("   B sends " + a.domain + " to [127.0.0.1]:" + std::to_string(partner_port) +
          " with smtp_tls_security_level = secure, matching " + a.host + ", presenting B's certificate");
}

/// 3, the Postfix half: a plaintext MAIL FROM on B is refused.
void plaintext_on_postfix(demo_run& d) {
    const auto pb = plaintext_attempt(d, d.b.port);
    d.check(pb.refused, "a plaintext MAIL FROM on B (Postfix) was not refused with 530 (got: " + pb.shown + ")");
    d.story["plaintext_b"] = {{"server", "org B (Postfix)"}, {"refused", pb.refused}, {"reply", pb.reply}};
    d.say("   Plaintext: MAIL FROM before STARTTLS on B (Postfix) -> " + pb.shown +
          (pb.refused ? "  (refused, as required)" : "  (NOT refused!)"));
}

/// What hop 2 left behind: A's send log, Postfix's maillog, bob's Maildir.
struct hop2_traces {
    std::optional<json> from_a;
    std::optional<postfix_delivery> at_b;
    std::optional<std::pair<fs::path, std::string>> in_mailbox;
};

hop2_traces wait_for_hop2(demo_run& d, postfix_instance& pf, const send_report& sent) {
    hop2_traces h;
    const std::string bob = "bob@" + d.b.domain;
    const auto deadline = clock_type::now() + delivery_limit;
    while (sent.delivered) {
        h.from_a = hop_from_send_log(d.a.data / "log" / "smtp-send", "to-org-b");
        h.at_b = find_delivery(pf.maillog(), bob);
        h.in_mailbox = find_in_maildir(pf.maildir("bob"), sent.message_id);
        if (h.from_a && h.in_mailbox && h.at_b && h.at_b->status == "sent") break;
        if (clock_type::now() >= deadline) break;
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
    return h;
}

/// Postfix's side of hop 2: it verified A's client certificate (Trusted), TLS 1.2+ AEAD.
json postfix_side_of_hop2(demo_run& d, const postfix_delivery& at_b) {
    json side;
    side["queue_id"] = at_b.queue_id;
    side["status"] = at_b.status;
    side["delivery_line"] = at_b.text;
    if (at_b.tls_in) {
        side["tls_line"] = at_b.tls_in->text;
        side["trust"] = at_b.tls_in->trust;
        side["protocol"] = at_b.tls_in->protocol;
        side["cipher"] = at_b.tls_in->cipher;
    }
    // "Trusted": Postfix verified A's client certificate against smtpd_tls_CAfile.
    side["client_certificate_verified"] = at_b.tls_in && at_b.tls_in->trust == "Trusted";
    d.check(at_b.tls_in.has_value() && at_b.tls_in->trust == "Trusted",
            "Postfix did not log a Trusted TLS connection from A (client certificate verified): " +
                (at_b.tls_in ? at_b.tls_in->text : std::string("no TLS line for ") + at_b.queue_id));
    if (at_b.tls_in)
        d.check(tls12_or_later(at_b.tls_in->protocol) && aead(at_b.tls_in->cipher),
                "hop 2 TLS as Postfix logs it is not 1.2+ with an AEAD cipher: " + at_b.tls_in->text);
    return side;
}

/// bob's Maildir: the Received header Postfix wrote names A's verified certificate.
json mailbox_side_of_hop2(demo_run& d, const std::pair<fs::path, std::string>& in_mailbox) {
    json mailbox{{"file", in_mailbox.first.string()}};
    auto received = parse_received_tls(in_mailbox.second);
    if (received) {
        mailbox["received"] = received->header;
        mailbox["protocol"] = received->protocol;
        mailbox["cipher"] = received->cipher;
        mailbox["client_cn"] = received->client_cn;
        mailbox["client_issuer"] = received->client_issuer;
        mailbox["client_verified"] = received->client_verified;
    }
    d.check(received && received->client_cn == d.a.host && received->client_verified,
            "the Received header Postfix wrote does not say A's certificate (" + d.a.host + ") was verified: " +
                (received ? received->header : std::string("no Received header with TLS facts")));
    return mailbox;
}

void say_hop2_at_postfix(demo_run& d, const hop2_traces& h, const json& hop2, const std::string& postfix_name) {
    d.say("\n5. Hop 2, A -> B (" + d.b.host + ", " + postfix_name + "), A's send connector \"to-org-b\":");
    say_hop2_from_a(d, hop2);
    if (h.at_b) {
        if (h.at_b->tls_in) {
            d.say("   B's maillog: " + maillog_entry(h.at_b->tls_in->text));
            if (h.at_b->tls_in->trust == "Trusted")
                d.say("   (Trusted: A's client certificate, required by smtpd_tls_req_ccert = yes, chains to the lab "
                      "root in smtpd_tls_CAfile)");
        }
        d.say("   B's maillog: " + maillog_entry(h.at_b->text));
    }
    if (h.in_mailbox) {
        d.say("   bob's Maildir: " + h.in_mailbox->first.string() + ", with the Received header Postfix wrote:");
        d.say(received_header_lines(h.in_mailbox->second, "     "));
    }
    if (!hop2["delivered"].get<bool>()) d.say("   NOT delivered to B: " + d.failures.back().get<std::string>());
}

/// 5. Hop 2, A -> Postfix, seen from both ends and in bob's Maildir.
json hop_a_to_postfix(demo_run& d, postfix_instance& pf, const send_report& sent, const std::string& postfix_name) {
    organisation& a = d.a;
    organisation& b = d.b;
    const auto h = wait_for_hop2(d, pf, sent);
    json hop2{{"from", "org A " + a.host},
              {"to", "org B " + b.host + " (" + postfix_name + ", 127.0.0.1:" + std::to_string(b.port) + ")"}};
    hop2["delivered"] = h.from_a.has_value() && h.in_mailbox.has_value();
    hop2["verified_against"] = json::array({d.root_subject});
    hop2["name"] = b.host;
    if (sent.delivered && !hop2["delivered"].get<bool>()) {
        std::string detail = !h.from_a ? "no acknowledged session in A's send protocol log (" +
                                             (a.data / "log" / "smtp-send").string() + ")"
                                       : "the message is not in " + pf.maildir("bob").string() + "/new";
        if (h.at_b && h.at_b->status != "sent") detail += "; Postfix: " + maillog_entry(h.at_b->text);
        d.check(false, "hop 2 (A -> B) not seen within " + std::to_string(delivery_limit.count()) + "s: " + detail);
    }
    hop2_from_a(d, h.from_a, hop2);
    hop2["postfix"] = h.at_b ? postfix_side_of_hop2(d, *h.at_b) : json::object();
    if (h.in_mailbox) hop2["mailbox"] = mailbox_side_of_hop2(d, *h.in_mailbox);
    say_hop2_at_postfix(d, h, hop2, postfix_name);
    return hop2;
}

/// What hop 3 left behind: A's receive log and Postfix's maillog.
struct hop3_traces {
    std::optional<json> at_a;
    std::optional<postfix_delivery> from_b;
};

/// bob answers with Postfix's sendmail; waits (bounded) for Postfix's smtp client to hand
/// it to A's partner connector.
hop3_traces post_reply_through_postfix(demo_run& d, postfix_instance& pf, const send_report& sent, json& hop3) {
    organisation& a = d.a;
    organisation& b = d.b;
    const std::string bob = "bob@" + b.domain;
    hop3_traces h;
    auto& at_a = h.at_a;
    auto& from_b = h.from_b;
    const std::string alice = "alice@" + a.domain;
    const std::string reply_id = "reply." + sent.message_id;
    std::ostringstream reply;
    reply << "From: <" << bob << ">\nTo: <" << alice << ">\nSubject: Re: Postern demo, from org B (Postfix) to org A\n"
          << "Message-ID: <" << reply_id << ">\n\nCarried from " << b.domain << " to " << a.domain
          << " by Postfix over TLS it verified (secure).\n";
    try {
        pf.sendmail(bob, alice, reply.str());
        hop3["posted"] = "sendmail -C " + pf.config_dir().string() + " -f " + bob + " -- " + alice;
        const auto deadline = clock_type::now() + delivery_limit;
        for (;;) {
            at_a = hop_from_receive_log(a.data / "log" / "smtp-receive", "from-org-b");
            from_b = find_delivery(pf.maillog(), alice);
            if (at_a && from_b && from_b->status == "sent") break;
            // Postfix's first attempt failed: its next one is minutes away, so this is the outcome.
            if (from_b && from_b->status != "sent") break;
            if (clock_type::now() >= deadline) break;
            std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
        }
    } catch (const std::exception& e) {
        d.check(false, std::string("hop 3 (B -> A): ") + e.what());
    }
    return h;
}

/// Both ends' account of hop 3: Postfix verified A (secure), A saw a partner.
void record_hop3(demo_run& d, const postfix_instance& pf, const hop3_traces& h, json& hop3) {
    const auto& at_a = h.at_a;
    const auto& from_b = h.from_b;
    const std::string alice = "alice@" + d.a.domain;
    hop3["delivered"] = at_a.has_value() && from_b.has_value() && from_b->status == "sent";
    if (hop3.contains("posted") && !hop3["delivered"].get<bool>()) {
        if (from_b && from_b->status != "sent")
            d.check(false, "hop 3 (B -> A): Postfix did not deliver: " + maillog_entry(from_b->text));
        else
            d.check(false, "hop 3 (B -> A) not seen within " + std::to_string(delivery_limit.count()) + "s: " +
                               (from_b ? "Postfix: " + maillog_entry(from_b->text)
                                       : "no delivery line for " + alice + " in " + pf.maillog_file().string()));
    }
    if (from_b) {
        json postfix_side3{{"queue_id", from_b->queue_id}, {"status", from_b->status}, {"delivery_line", from_b->text}};
        if (from_b->tls_out) {
            postfix_side3["tls_line"] = from_b->tls_out->text;
            postfix_side3["trust"] = from_b->tls_out->trust;
            hop3["protocol"] = from_b->tls_out->protocol;
            hop3["cipher"] = from_b->tls_out->cipher;
        }
        // "Verified": the chain reached smtp_tls_CAfile and the name matched (secure).
        hop3["verified"] = from_b->tls_out && from_b->tls_out->trust == "Verified";
        hop3["postfix"] = postfix_side3;
        if (from_b->status == "sent") {
            d.check(hop3["verified"].get<bool>(), "Postfix did not log a Verified TLS connection to A: " +
                                                      (from_b->tls_out ? from_b->tls_out->text : from_b->text));
            if (from_b->tls_out)
                d.check(tls12_or_later(from_b->tls_out->protocol) && aead(from_b->tls_out->cipher),
                        "hop 3 TLS is not 1.2+ with an AEAD cipher: " + from_b->tls_out->text);
        }
    }
    if (at_a) {
        hop3["receive_log"] = *at_a;
        hop3["partner"] = at_a->value("partner", false);
        d.check(at_a->value("partner", false), "A did not recognise B as a partner: " + at_a->value("verdict", ""));
    }
    auto [queue_rc, queue_out] = run_self({"queue", "-c", d.a.config.string(), "list", "--json"});
    if (queue_rc == 0) {
        json q = json::parse(queue_out, nullptr, false);
        if (!q.is_discarded()) hop3["a_queue"] = q;
    }
}

void say_hop3(demo_run& d, const hop3_traces& h, const json& hop3) {
    organisation& a = d.a;
    const auto& at_a = h.at_a;
    const auto& from_b = h.from_b;
    const std::string bob = "bob@" + d.b.domain;
    d.say("\n6. Hop 3, B -> A (" + a.host + "), bob answers with Postfix's sendmail; Postfix's smtp client:");
    if (from_b) {
        if (from_b->tls_out) {
            d.say("   TLS " + from_b->tls_out->protocol + ", " + from_b->tls_out->cipher);
            d.say("   B's maillog: " + maillog_entry(from_b->tls_out->text));
            if (from_b->tls_out->trust == "Verified")
                d.say("   (Verified: A's certificate chains to the root \"" + d.root_subject + "\" and matches " +
                      a.host + "; smtp_tls_security_level = secure)");
        }
        d.say("   B's maillog: " + maillog_entry(from_b->text));
    }
    if (at_a) {
        d.say("   A's receive protocol log: " +
              at_a->value("client_certificate", std::string("no client certificate line")));
        d.say("   A: " + at_a->value("verdict", std::string("-")));
        d.say("   A answered B: " + at_a->value("reply", ""));
    }
    if (hop3.contains("a_queue") && hop3["a_queue"].contains("messages")) {
        for (const auto& m : hop3["a_queue"]["messages"]) {
            if (m.value("sender", "") != bob) continue;
            d.say("   A's queue (postern queue list): " + m.value("id", "") + " from " + m.value("sender", "") + ", " +
                  m.value("status", "") + " (A's own mailbox delivery is not part of this demo)");
        }
    }
    if (!hop3["delivered"].get<bool>() && !d.failures.empty())
        d.say("   NOT delivered to A: " + d.failures.back().get<std::string>());
}

/// 6. Hop 3, Postfix -> A's partner connector.
json hop_postfix_to_a(demo_run& d, postfix_instance& pf, const send_report& sent, const std::string& postfix_name,
                      std::uint16_t partner_port) {
    organisation& a = d.a;
    organisation& b = d.b;
    json hop3{{"from", "org B " + b.host + " (" + postfix_name + ")"},
              {"to", "org A " + a.host + " (connector from-org-b, 127.0.0.1:" + std::to_string(partner_port) + ")"},
              {"verified_against", json::array({d.root_subject})},
              {"name", a.host}};
    const auto h = post_reply_through_postfix(d, pf, sent, hop3);
    record_hop3(d, pf, h, hop3);
    say_hop3(d, h, hop3);
    return hop3;
}

void exchange_with_postfix(demo_run& d) {
    organisation& a = d.a;
    organisation& b = d.b;
    servers_guard guard{{&a}};
    const fs::path exported = export_certificate_for_postfix(d);

    // 2. servers: Postfix first (A relays to it), then A, which also takes B's mail on a
    // partner connector of its own.
    hold_mailbox_port(d);
    int held_postfix = -1, held_partner = -1;
    const std::uint16_t postfix_port = free_loopback_port(held_postfix);
    const std::uint16_t partner_port = free_loopback_port(held_partner);
    ::close(held_postfix);
    ::close(held_partner);
    postfix_instance pf(postfix_settings_for(d, exported, postfix_port, partner_port));
    struct postfix_guard {
        postfix_instance& pf;
        organisation& b;
        ~postfix_guard() {
            if (pf.running()) b.stop_text = pf.stop(stop_limit);
        }
    } stop_postfix{pf, b};
    pf.create();
    pf.start(ready_limit);
    b.port = postfix_port;
    write_config(a, config_for_a_with_postfix(a, b, partner_port, d.mailbox_port));
    start_server(a);
    const std::string postfix_name = "Postfix" + (pf.version().empty() ? std::string() : " " + pf.version());
    describe_servers_with_postfix(d, pf, partner_port, postfix_name);

    // 3. plaintext refused, by A and by Postfix; 4-6. the three hops
    plaintext_on_a(d);
    plaintext_on_postfix(d);
    auto [sent, hop1] = hop_client_to_a(d);
    json hop2 = hop_a_to_postfix(d, pf, sent, postfix_name);
    json hop3 = hop_postfix_to_a(d, pf, sent, postfix_name, partner_port);
    d.story["hops"] = json::array({hop1, hop2, hop3});

    // 7. stop both
    stop_and_report_a(d);
    b.stop_text = pf.stop(stop_limit);
    d.check(pf.stopped(), b.label + " (Postfix): " + b.stop_text);
    d.story["stopped"] = {{"org_a", a.stop_text}, {"org_b", b.stop_text}};
    d.say("\n7. Stopped: A with SIGTERM (" + a.stop_text + "); B with `postfix stop` (" + b.stop_text + ")");
}

int run_demo(const demo_args& args) {
    if (args.peer != "postern" && args.peer != "postfix") {
        std::cerr << "postern demo: --peer " << args.peer << ": unknown peer (postern, postfix)\n";
        return 2;
    }
    const bool with_postfix = args.peer == "postfix";
    if (with_postfix) {
        const std::string why = postfix_unavailable();
        if (!why.empty()) {
            std::cerr << "postern demo: --peer postfix: " << why << "\n";
            return 1;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);

    char templ[] = "/tmp/postern-demo.XXXXXX";
    if (!::mkdtemp(templ)) {
        std::cerr << "postern demo: cannot create a temporary directory: " << std::strerror(errno) << "\n";
        return 1;
    }
    demo_run d{args, templ};
    ::chmod(d.work.c_str(), 0755);
    d.story = {{"work_dir", d.work.string()}, {"kept", args.keep}, {"peer", args.peer}};

    organisation& a = d.a;
    organisation& b = d.b;
    a.tag = "A", a.label = "org A", a.host = "mx.a.demo.test", a.domain = "a.demo.test";
    b.tag = "B", b.label = "org B", b.host = "mx.b.demo.test", b.domain = "b.demo.test";
    for (auto* o : {&a, &b}) {
        o->dir = d.work / (o->tag == "A" ? "a" : "b");
        o->data = o->dir / "data";
        o->config = o->dir / "postern.toml";
        o->ready = o->dir / "ready.json";
        o->server_log = o->dir / "server.log";
    }

    try {
        if (with_postfix)
            d.say("Postern demo: org A (Postern) and org B (Postfix) exchanging mail over enforced, verified TLS");
        else
            d.say("Postern demo: two organisations exchanging mail over enforced, verified TLS");
        d.say("  work directory: " + d.work.string() +
              (args.keep ? " (kept)" : " (removed at the end; --keep keeps it)"));
        make_pki(d);
        if (with_postfix) exchange_with_postfix(d);
        else exchange_with_postern(d);
    } catch (const std::exception& e) {
        d.failures.push_back(e.what());
        d.story["stopped"] = {{"org_a", a.stop_text}, {"org_b", b.stop_text}};
    }
    if (d.mailbox_fd >= 0) ::close(d.mailbox_fd);

    const bool ok = d.failures.empty();
    d.story["ok"] = ok;
    d.story["failures"] = d.failures;
    if (args.json) {
        std::cout << d.story.dump(2) << "\n";
    } else if (ok && with_postfix) {
        std::cout << "\nResult: PASS. Mail went from org A (Postern) to org B (Postfix) and back over TLS 1.2+ with\n"
                     "AEAD ciphers: A verified Postfix's certificate against the lab root and mx.b.demo.test\n"
                     "(domain_validation, verdict=pass), Postfix verified A's client certificate (Trusted) and\n"
                     "delivered into bob's Maildir; Postfix verified A's certificate and name (secure) and A took\n"
                     "B as a mutual-TLS partner; plaintext was refused on both sides.\n";
    } else if (ok) {
        std::cout << "\nResult: PASS. Mail went from org A to org B over TLS 1.2+ with AEAD ciphers on both hops,\n"
                     "each certificate verified against the lab root and the expected name (domain_validation),\n"
                     "A proved itself to B with its client certificate, and plaintext was refused.\n";
    } else {
        std::cout << "\nResult: FAIL\n";
        for (const auto& f : d.failures) std::cout << "  - " << f.get<std::string>() << "\n";
    }
    if (!ok) {
        std::cerr << "postern demo: " << d.failures.front().get<std::string>() << "\n";
        if (!args.keep) std::cerr << "postern demo: run with --keep to look at the logs and configurations\n";
    }
    if (args.keep) {
        if (!args.json)
            std::cout << "kept: " << d.work.string()
                      << (with_postfix ? " (A's server log: a/server.log; Postfix: b/postfix/etc, b/postfix/maillog, "
                                         "b/postfix/mail)\n"
                                       : " (server logs: a/server.log, b/server.log)\n");
    } else {
        std::error_code ec;
        fs::remove_all(d.work, ec);
    }
    return ok ? 0 : 1;
}

}  // namespace

void add_demo_command(CLI::App& app, int& exit_code) {
    auto a = std::make_shared<demo_args>();
    auto* cmd = app.add_subcommand("demo", "Two organisations exchanging mail over enforced, verified TLS, on loopback");
    cmd->add_flag("--keep", a->keep, "keep the temporary directory (PKI, configurations, logs)");
    cmd->add_flag("--json", a->json, "print the story as JSON");
    cmd->add_option("--peer", a->peer, "org B: postern (default) | postfix")->default_str("postern");
    cmd->callback([a, &exit_code] {
        try {
            exit_code = run_demo(*a);
        } catch (const std::exception& e) {
            std::cerr << "postern demo: " << e.what() << "\n";
            exit_code = 1;
        }
    });
}

}  // namespace postern::lab

// lab/probe_command.cpp: `postern probe HOST[:PORT] [--tls-domain D] [--ca FILE]
// [--level L] [--json]` (DESIGN.md §1, §4).
//
// Connects, reads the greeting and the EHLO reply, and tries STARTTLS exactly as a send
// connector would (delivery/tls_policy: TLS 1.2+, AEAD ciphers, the same verify callback
// and verdict). Reports protocol, cipher, the certificate chain, whether the chain
// verifies against --ca (or the system store), whether the name matches (RFC 6125, no
// partial wildcards, no CN fallback when a DNS SAN exists), and the level achieved.
// Exit 0 only when that level is at least --level (default domain_validation).
//
// When the TLS 1.2+ handshake fails, a second connection tries again with TLS 1.0 allowed
// at OpenSSL security level 0, only to diagnose: a peer that answers there (Domino 8.5,
// unpatched Exchange 2010) is told plainly that Postern cannot use TLS with it.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <nlohmann/json.hpp>

#include "lab/commands.hpp"
#include "lab/send_client.hpp"
#include "config/schema.hpp"
#include "smtp/client_fsm.hpp"
#include "delivery/client_tls.hpp"
#include "delivery/tls_policy.hpp"
#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/openssl_ptr.hpp"

namespace postern::lab {

namespace {

using nlohmann::json;

constexpr const char* old_tls_message = "this server only offers TLS 1.0 / TLS 1.1; Postern requires TLS 1.2 or later";

struct probe_args {
    std::string target, tls_domain, ca, level = "domain_validation";
    std::string client_certificate, config_file, keyring, stash;
    bool json = false;
    unsigned timeout = 15;
};

struct probe_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One blocking TCP connection with send/receive time limits. The dialogue is the send
/// side's own (smtp::client_fsm, STARTTLS if offered): this class only moves its bytes.
class probe_connection {
public:
    probe_connection(const std::string& host, std::uint16_t port, unsigned timeout) : fsm_(settings()) {
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        const std::string service = std::to_string(port);
        if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
            throw probe_error(host + ": cannot resolve: " + ::gai_strerror(rc));
        std::string last = "no address";
        for (addrinfo* a = found; a; a = a->ai_next) {
            int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) continue;
            timeval tv{static_cast<time_t>(timeout), 0};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);   // bounds connect() too
            if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                char text[NI_MAXHOST] = {};
                ::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
                remote_ = std::string(text) + ":" + service;
                fd_ = fd;
                break;
            }
            last = std::string(std::strerror(errno));
            ::close(fd);
        }
        ::freeaddrinfo(found);
        if (fd_ < 0) throw probe_error("connect to " + host + ":" + service + " failed: " + last);
    }
    ~probe_connection() {
        ssl_.reset();
        if (fd_ >= 0) ::close(fd_);
    }
    probe_connection(const probe_connection&) = delete;
    probe_connection& operator=(const probe_connection&) = delete;

    int fd() const { return fd_; }
    const std::string& remote() const { return remote_; }
    SSL* ssl() const { return ssl_.get(); }
    void adopt(tls::ssl_ptr ssl) { ssl_ = std::move(ssl); }
    const smtp::client_fsm& dialogue() const { return fsm_; }

    /// Resumes the dialogue with `ev` and carries it on until it wants a TLS handshake, is
    /// idle, or has ended (its last words, QUIT, written when it has any).
    smtp::client_action run(smtp::client_event ev) {
        auto act = fsm_.resume(std::move(ev));
        for (;;) {
            record(act.log);
            if (act.what == smtp::client_action::kind::close) {
                try {
                    write(act.out);
                } catch (const probe_error&) {
                }
                return act;
            }
            if (act.what != smtp::client_action::kind::read) return act;
            write(act.out);
            act = fsm_.resume(fsm_.input_pending() ? smtp::client_event::bytes({}) : read_event());
        }
    }

    /// "C: EHLO x" and "S: 250 ..." lines, in the order they crossed the wire.
    std::vector<std::string> transcript;

    /// The server's lines answering the first command that starts with `verb`, or the
    /// greeting when `verb` is empty.
    std::vector<std::string> answer_to(std::string_view verb) const {
        std::vector<std::string> lines;
        bool in_answer = verb.empty();
        for (const auto& l : transcript) {
            if (l.rfind("C: ", 0) == 0) {
                if (in_answer) break;
                in_answer = std::string_view(l).substr(3).rfind(verb, 0) == 0;
            } else if (in_answer) {
                lines.push_back(l.substr(3));
            }
        }
        return lines;
    }

private:
    static smtp::client_settings settings() {
        smtp::client_settings s;
        s.helo_name = local_host_name();
        s.starttls = smtp::client_settings::starttls_use::if_offered;
        return s;
    }

    void record(const std::vector<smtp::transcript_line>& log) {
        for (const auto& l : log) {
            if (l.what == smtp::transcript_line::kind::sent) transcript.push_back("C: " + l.text);
            else if (l.what == smtp::transcript_line::kind::received) transcript.push_back("S: " + l.text);
        }
    }

    void write(const std::string& out) {
        if (out.empty()) return;
        if (ssl_) {
            if (SSL_write(ssl_.get(), out.data(), static_cast<int>(out.size())) <= 0)
                throw probe_error("write failed: " + tls::openssl_errors());
        } else if (::send(fd_, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
            throw probe_error(std::string("write failed: ") + std::strerror(errno));
        }
    }

    smtp::client_event read_event() {
        char buf[8192];
        const long n = ssl_ ? SSL_read(ssl_.get(), buf, sizeof buf) : ::recv(fd_, buf, sizeof buf, 0);
        if (n > 0) return smtp::client_event::bytes(std::string_view(buf, static_cast<std::size_t>(n)));
        if (n == 0) return smtp::client_event::closed("the server closed the connection");
        if (!ssl_ && (errno == EAGAIN || errno == EWOULDBLOCK)) return smtp::client_event::timed_out();
        return smtp::client_event::closed("read failed: " +
                                          (ssl_ ? tls::openssl_errors() : std::string(std::strerror(errno))));
    }

    int fd_ = -1;
    std::string remote_;
    tls::ssl_ptr ssl_;
    smtp::client_fsm fsm_;
};

/// Greeting, EHLO, STARTTLS: what the server offered, and whether STARTTLS got its 220.
struct smtp_preamble {
    std::string greeting;
    smtp::capabilities caps;
    std::vector<std::string> ehlo_lines;
    std::optional<std::string> starttls_refused;   // the reply when it was not 220
};

smtp_preamble greet_and_starttls(probe_connection& c) {
    smtp_preamble p;
    const auto act = c.run(smtp::client_event::connected());
    const auto greeting = c.answer_to("");
    p.greeting = greeting.empty() ? std::string() : greeting.front();
    p.ehlo_lines = c.answer_to("EHLO ");
    p.caps = c.dialogue().offered();
    if (act.what != smtp::client_action::kind::close) return p;   // STARTTLS accepted, or not offered
    const auto& f = *act.failure;
    const std::string said = f.remote && !f.remote->lines().empty() ? f.remote->lines().front() : f.reason;
    if (f.stage == "STARTTLS" && f.remote) {
        p.caps.starttls = true;
        p.starttls_refused = said;
        return p;
    }
    if (f.stage == "greeting") throw probe_error("greeting refused: " + said);
    if (f.stage == "EHLO" || f.stage == "HELO") throw probe_error(f.stage + " refused: " + said);
    throw probe_error(f.reason);
}

std::string ssl_failure(SSL* ssl, int rc) {
    std::string text = tls::openssl_errors();
    if (text.empty()) {
        const int err = SSL_get_error(ssl, rc);
        text = err == SSL_ERROR_SYSCALL ? std::string("connection closed during the handshake")
                                        : "SSL error " + std::to_string(err);
    }
    return text;
}

json certificate_json(const X509* cert) {
    return {{"subject", tls::subject_text(cert)},
            {"issuer", tls::issuer_text(cert)},
            {"not_before", tls::time_text(X509_get0_notBefore(cert))},
            {"not_after", tls::time_text(X509_get0_notAfter(cert))},
            {"subject_alt_names", tls::subject_alt_names(cert)},
            {"sha256", tls::sha256_fingerprint(cert)}};
}

/// The diagnostic handshake: TLS 1.0+ at security level 0, nothing verified.
struct old_tls_result {
    bool handshake = false;
    std::string protocol, cipher, error;
};

old_tls_result diagnose_old_tls(const std::string& host, std::uint16_t port, unsigned timeout, const std::string& sni) {
    old_tls_result out;
    try {
        probe_connection c(host, port, timeout);
        auto p = greet_and_starttls(c);
        if (!p.caps.starttls || p.starttls_refused) {
            out.error = "STARTTLS not available on the second connection";
            return out;
        }
        tls::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
        if (!ctx) throw probe_error("cannot create a TLS context");
        SSL_CTX_set_security_level(ctx.get(), 0);
        SSL_CTX_set_min_proto_version(ctx.get(), TLS1_VERSION);
        SSL_CTX_set_max_proto_version(ctx.get(), 0);
        SSL_CTX_set_cipher_list(ctx.get(), "ALL:@SECLEVEL=0");
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
        tls::ssl_ptr ssl(SSL_new(ctx.get()));
        if (!sni.empty()) SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
        SSL_set_fd(ssl.get(), c.fd());
        ERR_clear_error();
        const int rc = SSL_connect(ssl.get());
        if (rc != 1) {
            out.error = ssl_failure(ssl.get(), rc);
            return out;
        }
        out.handshake = true;
        out.protocol = SSL_get_version(ssl.get());
        out.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl.get()));
        SSL_shutdown(ssl.get());
    } catch (const std::exception& e) {
        out.error = e.what();
    }
    return out;
}

/// What one probe looks for: where, which name, which level, trusting what.
struct probe_plan {
    std::string host;
    std::uint16_t port = 25;
    std::string name;                       // the name the certificate must carry
    bool ip_name = false;
    delivery::auth_level required = delivery::auth_level::domain_validation;
    std::vector<std::string> anchors;       // subjects of the trusted roots, for the report
    std::string client_certificate;         // "LABEL (subject)" when one is presented
    std::shared_ptr<SSL_CTX> ctx;           // the send side's own TLS client context
    delivery::peer_expectation want;
};

/// What the probe found: the JSON document (also the source of the text report).
struct probe_findings {
    json doc;
    std::vector<std::string> notes;         // what a person reads, in order
    delivery::auth_level achieved = delivery::auth_level::none;
    std::string why;                        // why `required` was not reached
};

/// The send side's own TLS client (TLS 1.2+, AEAD, the same verify callback) and what it
/// must prove. Throws std::invalid_argument for a bad target or level.
probe_plan plan_probe(const probe_args& a) {
    probe_plan p;
    std::tie(p.host, p.port) = split_host_port(a.target, 25);
    p.required = parse_auth_level(a.level);
    p.name = a.tls_domain.empty() ? p.host : a.tls_domain;
    for (auto& ch : p.name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    p.ip_name = is_ip_literal(p.name);

    p.ctx = lab_client_context("postern-probe", true, a.ca, p.anchors,
                               client_certificate_from(a.client_certificate, a.config_file, a.keyring, a.stash),
                               &p.client_certificate);
    p.want.require_tls = true;
    p.want.required = p.required;
    if (!p.ip_name) {
        p.want.names.push_back(p.name);
        p.want.sni = p.name;
    }
    return p;
}

/// A TLS 1.2+ handshake that failed: why, and whether an old-TLS-only server explains it.
void explain_failed_handshake(const probe_plan& p, const probe_args& a, const std::string& reason, probe_findings& f) {
    f.doc["tls"] = {{"handshake", false}, {"error", reason}};
    f.why = "TLS 1.2+ handshake failed: " + reason;
    auto old = diagnose_old_tls(p.host, p.port, a.timeout, p.want.sni);
    f.doc["diagnostic_handshake"] = {{"handshake", old.handshake}, {"protocol", old.protocol},
                                     {"cipher", old.cipher}, {"error", old.error}};
    if (old.handshake && (old.protocol == "TLSv1" || old.protocol == "TLSv1.1")) {
        f.why = old_tls_message;
        f.doc["old_tls_only"] = true;
        f.notes.push_back("a diagnostic handshake with TLS 1.0 allowed (security level 0) got " + old.protocol + " " +
                          old.cipher);
    } else if (old.handshake) {
        f.why = "the server negotiates " + old.protocol + " only with " + old.cipher +
                ", a cipher Postern refuses (AEAD only); TLS 1.2+ handshake failed: " + reason;
    }
}

/// A completed handshake: the chain, the name, the level reached (delivery::evaluate, as
/// a send connector would judge it).
void inspect_session(SSL* ssl, const probe_plan& p, const delivery::verify_record& record, probe_findings& f) {
    const auto verdict = delivery::evaluate(ssl, p.want, record);
    f.achieved = verdict.achieved;
    const long chain_error =
        record.first_chain_error != X509_V_OK ? record.first_chain_error : SSL_get_verify_result(ssl);
    const bool chain_ok = chain_error == X509_V_OK || chain_error == X509_V_ERR_HOSTNAME_MISMATCH;
    X509* leaf = SSL_get0_peer_certificate(ssl);
    bool name_ok = false;
    if (leaf && p.ip_name) name_ok = X509_check_ip_asc(leaf, p.name.c_str(), 0) == 1;
    else if (leaf) name_ok = !record.name_mismatch;
    if (p.ip_name && f.achieved == delivery::auth_level::certificate_validation && name_ok)
        f.achieved = delivery::auth_level::domain_validation;   // the IP SAN matches
    json chain = json::array();
    if (STACK_OF(X509)* sk = SSL_get_peer_cert_chain(ssl))
        for (int i = 0; i < sk_X509_num(sk); ++i) chain.push_back(certificate_json(sk_X509_value(sk, i)));
    std::string root;
    if (chain_ok && leaf)
        if (STACK_OF(X509)* vc = SSL_get0_verified_chain(ssl); vc && sk_X509_num(vc) > 0)
            root = tls::subject_text(sk_X509_value(vc, sk_X509_num(vc) - 1));
    f.doc["tls"] = {{"handshake", true},
                    {"protocol", verdict.protocol},
                    {"cipher", verdict.cipher},
                    {"chain", chain},
                    {"chain_verified", chain_ok && leaf != nullptr},
                    {"verified_root", root},
                    {"verify_error", chain_ok ? std::string() : X509_verify_cert_error_string(chain_error)},
                    {"name_matches", name_ok},
                    {"verdict", verdict.log_line()}};
    if (f.achieved >= p.required) return;
    if (!leaf) f.why = "no certificate presented";
    else if (!chain_ok) f.why = std::string("certificate not verified: ") + X509_verify_cert_error_string(chain_error);
    else if (!name_ok) f.why = "certificate does not match the name " + p.name;
}

/// STARTTLS and the handshake on `c`, after its greeting and EHLO.
void probe_tls(probe_connection& c, const smtp_preamble& pre, const probe_plan& p, const probe_args& a,
               probe_findings& f) {
    if (!pre.caps.starttls) {
        f.why = "the server does not offer STARTTLS";
        return;
    }
    if (pre.starttls_refused) {
        f.why = "STARTTLS refused: " + *pre.starttls_refused;
        return;
    }
    tls::ssl_ptr ssl(SSL_new(p.ctx.get()));
    delivery::verify_record record;
    std::string error;
    if (!ssl || !delivery::prepare_connection(ssl.get(), p.want, &record, &error))
        throw probe_error("cannot prepare the TLS session: " + error);
    SSL_set_fd(ssl.get(), c.fd());
    ERR_clear_error();
    const int rc = SSL_connect(ssl.get());
    if (rc != 1) return explain_failed_handshake(p, a, ssl_failure(ssl.get(), rc), f);
    c.adopt(std::move(ssl));
    inspect_session(c.ssl(), p, record, f);
    try {   // EHLO again inside TLS (RFC 3207 §4.2), then QUIT
        if (c.run(smtp::client_event::tls_established()).what == smtp::client_action::kind::idle)
            c.run(smtp::client_event::quit());
    } catch (const std::exception&) {
    }
    SSL_shutdown(c.ssl());
}

void print_certificates(const json& t) {
    int depth = 0;
    for (const auto& cert : t["chain"]) {
        std::string sans;
        for (const auto& s : cert["subject_alt_names"]) sans += (sans.empty() ? "" : ", ") + s.get<std::string>();
        std::cout << "Certificate " << depth++ << ": " << cert["subject"].get<std::string>() << "\n"
                  << "  issuer:     " << cert["issuer"].get<std::string>() << "\n"
                  << "  valid:      " << cert["not_before"].get<std::string>() << " to "
                  << cert["not_after"].get<std::string>() << "\n"
                  << "  names:      " << (sans.empty() ? "-" : sans) << "\n";
    }
}

void print_report(const probe_plan& p, const probe_findings& f, const std::string& remote, bool pass) {
    const auto& doc = f.doc;
    const std::string target = doc["target"].get<std::string>();
    std::cout << "Server:       " << target << (target == remote ? "" : " (" + remote + ")") << "\n"
              << "Greeting:     " << doc["greeting"].get<std::string>() << "\n"
              << "STARTTLS:     " << (doc["starttls_offered"].get<bool>() ? "offered" : "not offered") << "\n";
    if (doc.contains("tls") && doc["tls"]["handshake"].get<bool>()) {
        const auto& t = doc["tls"];
        std::cout << "Protocol:     " << t["protocol"].get<std::string>() << "\n"
                  << "Cipher:       " << t["cipher"].get<std::string>() << "\n";
        print_certificates(t);
        std::string anchor_text;
        for (const auto& s : p.anchors) anchor_text += (anchor_text.empty() ? "" : "; ") + s;
        std::cout << "Chain:        "
                  << (t["chain_verified"].get<bool>() ? "verified, root " + t["verified_root"].get<std::string>()
                                                      : "NOT verified (" + t["verify_error"].get<std::string>() + ")")
                  << " [trust: " << anchor_text << "]\n"
                  << "Name:         " << p.name << (t["name_matches"].get<bool>() ? " matches" : " does NOT match")
                  << "\n";
    } else if (doc.contains("tls")) {
        std::cout << "TLS:          handshake failed: " << doc["tls"]["error"].get<std::string>() << "\n";
    }
    if (!p.client_certificate.empty()) std::cout << "Client cert:  presented " << p.client_certificate << "\n";
    for (const auto& n : f.notes) std::cout << "Note:         " << n << "\n";
    std::cout << "Level:        " << delivery::to_string(f.achieved) << " (required " << delivery::to_string(p.required)
              << "): " << (pass ? "PASS" : "FAIL") << "\n";
    if (!pass) std::cout << "Reason:       " << f.why << "\n";
}

int probe_main(const probe_args& a) {
    probe_plan p;
    try {
        p = plan_probe(a);
    } catch (const std::invalid_argument& e) {
        std::cerr << "postern probe: " << e.what() << "\n";
        return 2;
    }
    probe_findings f;
    f.doc = {{"target", p.host + ":" + std::to_string(p.port)},
             {"name", p.name},
             {"required", delivery::to_string(p.required)},
             {"trust_anchors", p.anchors},
             {"client_certificate", p.client_certificate}};
    probe_connection c(p.host, p.port, a.timeout);
    f.doc["remote"] = c.remote();
    const auto pre = greet_and_starttls(c);
    f.doc["greeting"] = pre.greeting;
    f.doc["ehlo"] = pre.ehlo_lines;
    f.doc["starttls_offered"] = pre.caps.starttls;
    probe_tls(c, pre, p, a, f);

    const bool pass = f.achieved >= p.required;
    f.doc["achieved"] = delivery::to_string(f.achieved);
    f.doc["pass"] = pass;
    f.doc["reason"] = pass ? std::string() : f.why;
    f.doc["transcript"] = c.transcript;
    if (a.json) std::cout << f.doc.dump(2) << "\n";
    else print_report(p, f, c.remote(), pass);
    if (!pass) std::cerr << "postern probe: " << f.why << "\n";
    return pass ? 0 : 1;
}

}  // namespace

void add_probe_command(CLI::App& app, int& exit_code) {
    auto a = std::make_shared<probe_args>();
    auto* cmd = app.add_subcommand("probe", "Check what TLS an SMTP server offers and what it proves");
    cmd->add_option("target", a->target, "HOST[:PORT] (port default 25)")->required();
    cmd->add_option("--tls-domain", a->tls_domain, "name the certificate must carry (default: HOST)");
    cmd->add_option("--ca", a->ca, "trusted root certificates (PEM); default: the system CA store");
    cmd->add_option("--level", a->level,
                    "level that must be reached: none | encryption_only | certificate_validation | domain_validation")
        ->default_str("domain_validation");
    cmd->add_option("--client-certificate", a->client_certificate,
                    "present this key ring certificate (mutual TLS); the key ring comes from -c or --keyring/--stash");
    cmd->add_option("-c,--config", a->config_file, "configuration file whose [tls] keyring and stash to use");
    cmd->add_option("--keyring", a->keyring, "key ring (PKCS#12) for --client-certificate");
    cmd->add_option("--stash", a->stash, "stash file with the key ring's password");
    cmd->add_option("--timeout", a->timeout, "seconds allowed for each step")->default_str("15");
    cmd->add_flag("--json", a->json, "JSON output");
    cmd->callback([a, &exit_code] {
        try {
            exit_code = probe_main(*a);
        } catch (const std::exception& e) {
            std::cerr << "postern probe: " << e.what() << "\n";
            exit_code = 1;
        }
    });
}

}  // namespace postern::lab

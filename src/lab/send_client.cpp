// lab/send_client.cpp: one test message through the delivery side's SMTP client.
#include "lab/send_client.hpp"

#include <unistd.h>

#include <ctime>
#include <exception>
#include <stdexcept>

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include "config/schema.hpp"
#include "delivery/client_session.hpp"
#include "delivery/client_tls.hpp"
#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"

namespace postern::lab {

namespace asio = boost::asio;

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string rfc5322_date() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} +0000", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                       tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string random_hex(std::size_t bytes) {
    std::vector<unsigned char> b(bytes);
    if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) throw std::runtime_error("no random bytes");
    return tls::hex(b.data(), b.size());
}

/// Collects the transcript and passes each line on as it happens.
class collecting_sink : public delivery::transcript_sink {
public:
    collecting_sink(send_report& report, const std::function<void(const smtp::transcript_line&)>& on_line)
        : report_(report), on_line_(on_line) {}
    void connected(const std::string& local, const std::string& remote) override {
        line(smtp::transcript_line::kind::info, "connected " + local + " -> " + remote);
    }
    void line(smtp::transcript_line::kind what, std::string_view text) override {
        smtp::transcript_line l{what, std::string(text)};
        if (on_line_) on_line_(l);
        report_.transcript.push_back(std::move(l));
    }
    void disconnected() override { line(smtp::transcript_line::kind::info, "disconnected"); }

private:
    send_report& report_;
    const std::function<void(const smtp::transcript_line&)>& on_line_;
};

std::string reply_text(const smtp::reply& r) {
    auto lines = r.lines();
    return lines.empty() ? std::to_string(r.code) : lines.back();
}

}  // namespace

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

std::pair<std::string, std::uint16_t> split_host_port(const std::string& text, std::uint16_t default_port) {
    std::string host = text;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos) throw std::invalid_argument("\"" + text + "\": missing ']'");
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') throw std::invalid_argument("\"" + text + "\": expected ':' after ']'");
            port = text.substr(close + 2);
        }
    } else if (auto colon = text.rfind(':'); colon != std::string::npos && text.find(':') == colon) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    if (host.empty()) throw std::invalid_argument("\"" + text + "\": no host");
    if (port.empty()) return {host, default_port};
    unsigned long value = 0;
    try {
        std::size_t used = 0;
        value = std::stoul(port, &used);
        if (used != port.size()) throw std::invalid_argument("x");
    } catch (const std::exception&) {
        throw std::invalid_argument("\"" + text + "\": bad port");
    }
    if (value == 0 || value > 65535) throw std::invalid_argument("\"" + text + "\": port out of range");
    return {host, static_cast<std::uint16_t>(value)};
}

delivery::auth_level parse_auth_level(const std::string& text) {
    for (auto level : {delivery::auth_level::none, delivery::auth_level::encryption_only,
                       delivery::auth_level::certificate_validation, delivery::auth_level::domain_validation})
        if (text == delivery::to_string(level)) return level;
    throw std::invalid_argument("level \"" + text +
                                "\": one of none, encryption_only, certificate_validation, domain_validation");
}

std::string build_test_message(const send_request& req, const std::string& message_id) {
    const std::string body =
        req.body.empty() ? "This is a test message sent by `postern send` to check the path and its TLS.\r\n"
                         : req.body;
    std::string text = fmt::format(
        "From: <{}>\r\nTo: <{}>\r\nDate: {}\r\nMessage-ID: <{}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        req.from, req.to, rfc5322_date(), message_id, req.subject);
    text += body;
    if (text.size() < 2 || text.substr(text.size() - 2) != "\r\n") text += "\r\n";
    return text;
}

std::string local_host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
    return name;
}

client_certificate_choice client_certificate_from(const std::string& label, const std::string& config_file,
                                                  const std::string& keyring, const std::string& stash) {
    client_certificate_choice choice;
    choice.label = label;
    if (label.empty()) return choice;
    if (!keyring.empty() || !stash.empty()) {
        if (keyring.empty() || stash.empty())
            throw std::invalid_argument("--keyring and --stash go together");
        choice.keyring = keyring;
        choice.stash = stash;
        return choice;
    }
    if (config_file.empty())
        throw std::invalid_argument("--client-certificate needs the key ring: -c FILE, or --keyring and --stash");
    auto loaded = config::load_file(config_file);
    if (!loaded.ok()) throw std::runtime_error(loaded.errors.front().to_string());
    choice.keyring = loaded.config->tls.keyring;
    choice.stash = loaded.config->tls.stash;
    return choice;
}

std::shared_ptr<SSL_CTX> lab_client_context(const std::string& connector_name, bool require_tls,
                                            const std::string& ca_file, std::vector<std::string>& anchors,
                                            const client_certificate_choice& client_certificate,
                                            std::string* presented) {
    config::configuration cfg;
    config::send_connector connector;
    connector.name = connector_name;
    connector.require_tls = require_tls;
    connector.trust_system_store = ca_file.empty();
    auto material = std::make_shared<delivery::client_tls_material>();
    if (!client_certificate.label.empty()) {
        // The key ring as the send side reads it; only the identity asked for is taken.
        config::configuration ring_cfg;
        ring_cfg.tls.keyring = client_certificate.keyring;
        ring_cfg.tls.stash = client_certificate.stash;
        if (!std::filesystem::exists(client_certificate.keyring))
            throw std::runtime_error(client_certificate.keyring.string() + ": no such key ring");
        const auto ring = delivery::client_tls_material::load(ring_cfg);
        const auto* id = ring->find(client_certificate.label);
        if (!id)
            throw std::runtime_error(fmt::format("--client-certificate \"{}\" is not a certificate with a key in {}",
                                                 client_certificate.label, client_certificate.keyring.string()));
        delivery::client_tls_material::identity copy;
        copy.label = id->label;
        copy.certificate = tls::up_ref(id->certificate.get());
        copy.key = tls::up_ref(id->key.get());
        for (const auto& c : id->chain) copy.chain.push_back(tls::up_ref(c.get()));
        if (presented) *presented = fmt::format("\"{}\" ({})", id->label, tls::subject_text(id->certificate.get()));
        material->identities.push_back(std::move(copy));
        connector.client_certificate = client_certificate.label;
    }
    if (!ca_file.empty()) {
        for (auto& cert : tls::certificates_from_pem(tls::read_file(ca_file), ca_file)) {
            anchors.push_back(tls::subject_text(cert.get()));
            material->roots.push_back(std::move(cert));
        }
    } else {
        anchors.push_back("the system CA store");
    }
    return delivery::make_client_context(cfg, connector, material.get());
}

namespace {

/// Where and how to connect: the same TLS policy as a send connector with require_tls and
/// tls_domain = the name; the trust anchors and the name checked go to the report.
delivery::session_target target_for(const send_request& req, const std::string& name, send_report& report) {
    const bool ip_name = is_ip_literal(name);
    const bool use_tls = req.tls != send_request::tls_use::none;
    // Made (and the --ca file read) even without TLS: the report names the trust anchors.
    auto ctx = lab_client_context("postern-send", use_tls, req.ca_file, report.trust_anchors, req.client_certificate,
                                  &report.client_certificate);

    delivery::peer_expectation want;
    want.require_tls = use_tls;
    if (use_tls) {
        want.required = req.level;
        if (req.level == delivery::auth_level::domain_validation) {
            if (ip_name) {
                // An IP address is checked against the certificate's IP SANs by the chain
                // check itself (below); the verdict then speaks of certificate_validation.
                want.required = delivery::auth_level::certificate_validation;
                report.name_checked = "IP:" + name;
            } else {
                want.names.push_back(name);
                report.name_checked = name;
            }
        }
        if (!ip_name) want.sni = name;
    }

    delivery::session_target target;
    target.host = req.host;
    target.expectation = want;
    target.plan.starttls = req.tls == send_request::tls_use::starttls ? smtp::client_settings::starttls_use::required
                                                                      : smtp::client_settings::starttls_use::never;
    target.plan.implicit_tls = req.tls == send_request::tls_use::implicit;
    if (use_tls) {
        target.tls = std::move(ctx);
        if (ip_name && req.level == delivery::auth_level::domain_validation) {
            X509_VERIFY_PARAM* param = SSL_CTX_get0_param(target.tls.get());
            if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1)
                throw std::runtime_error("cannot check the IP address " + name);
        }
    }
    return target;
}

/// One session: open, one transaction, close; what happened goes to the report.
asio::awaitable<void> send_once(asio::io_context& io, const delivery::session_settings& settings,
                                delivery::transcript_sink& sink, const delivery::session_target& target,
                                smtp::transaction tx, send_report& report) {
    delivery::client_session session(io.get_executor(), settings, sink);
    auto opened = co_await session.open(target);
    report.connected = opened.connected;
    report.remote = opened.remote;
    report.verdict = opened.verdict;
    if (!opened.ready) {
        const auto& f = opened.failure;
        report.failure = f ? f->stage + ": " + f->reason : "session ended";
        if (f && f->remote) report.final_reply = reply_text(*f->remote);
        co_await session.close();
        co_return;
    }
    report.tls = opened.verdict.tls && opened.verdict.ok();
    auto results = co_await session.send(std::move(tx));
    co_await session.close();
    if (results.empty()) {
        report.failure = "no result for the recipient";
        co_return;
    }
    const auto& r = results.front();
    if (r.remote) report.final_reply = reply_text(*r.remote);
    if (r.what == smtp::verdict::delivered) report.delivered = true;
    else report.failure = r.describe();
}

}  // namespace

send_report run_send(const send_request& req, const std::function<void(const smtp::transcript_line&)>& on_line) {
    send_report report;
    const std::string helo = req.helo.empty() ? local_host_name() : req.helo;
    const std::string name = lower(req.tls_domain.empty() ? req.host : req.tls_domain);
    report.message_id = random_hex(12) + "@" + helo;
    auto target = target_for(req, name, report);

    asio::io_context io;
    {
        asio::ip::tcp::resolver resolver(io);
        boost::system::error_code ec;
        auto results = resolver.resolve(req.host, std::to_string(req.port), ec);
        if (ec || results.empty()) throw std::runtime_error(req.host + ": cannot resolve: " + ec.message());
        target.endpoint = results.begin()->endpoint();
    }

    delivery::session_settings settings;
    settings.helo_name = helo;
    const auto limit = std::chrono::seconds(req.timeout_seconds);
    settings.timeouts = {limit, limit, limit, limit, limit, limit, limit};
    settings.report_tls_handshake_errors = false;   // the verdict line says it

    collecting_sink sink(report, on_line);
    smtp::transaction tx;
    tx.mail_from = req.from;
    tx.recipients = {req.to};
    tx.body = build_test_message(req, report.message_id);

    std::exception_ptr failed;
    asio::co_spawn(io, send_once(io, settings, sink, target, std::move(tx), report),
                   [&](std::exception_ptr e) { failed = e; });
    io.run();
    if (failed) std::rethrow_exception(failed);

    report.achieved = report.verdict.achieved;
    if (req.tls != send_request::tls_use::none && is_ip_literal(name) &&
        req.level == delivery::auth_level::domain_validation &&
        report.verdict.achieved == delivery::auth_level::certificate_validation)
        report.achieved = delivery::auth_level::domain_validation;   // the chain check matched the IP SAN
    if (!report.delivered && report.failure.empty()) report.failure = "not delivered";
    if (req.tls == send_request::tls_use::implicit && report.connected && !report.verdict.tls) {
        const auto greeting = plaintext_greeting(req.host, req.port, std::chrono::seconds(5));
        if (!greeting.empty())
            report.failure += fmt::format("; this port speaks SMTP in plaintext first (it greets with \"{}\"): it "
                                          "wants STARTTLS, not implicit TLS; use --starttls",
                                          greeting);
    }
    return report;
}

std::string plaintext_greeting(const std::string& host, std::uint16_t port, std::chrono::seconds wait) {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    asio::steady_timer timer(io, wait);
    std::string line;
    asio::streambuf buffer;
    boost::system::error_code ec;
    asio::ip::tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return {};
    timer.async_wait([&](boost::system::error_code e) {
        if (!e) socket.close();
    });
    asio::async_connect(socket, endpoints, [&](boost::system::error_code e, const asio::ip::tcp::endpoint&) {
        if (e) {
            timer.cancel();
            return;
        }
        asio::async_read_until(socket, buffer, "\r\n", [&](boost::system::error_code r, std::size_t n) {
            timer.cancel();
            if (r) return;
            line.assign(asio::buffers_begin(buffer.data()), asio::buffers_begin(buffer.data()) + n - 2);
            socket.close();
        });
    });
    io.run();
    if (line.size() < 4 || line.compare(0, 3, "220") != 0 || (line[3] != ' ' && line[3] != '-')) return {};
    if (line.size() > 120) line = line.substr(0, 120) + "...";
    return line;
}

}  // namespace postern::lab

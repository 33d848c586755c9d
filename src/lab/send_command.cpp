// lab/send_command.cpp: `postern send --to ADDR [--from ADDR] [--server HOST:PORT]
// [--starttls|--tls] [--ca FILE] [--client-certificate LABEL]` (DESIGN.md §4): one test
// message, the dialogue, the TLS outcome and the server's final reply on stdout; exit 0
// on 250, 1 on anything else (a 4xx or 5xx included).
//
// Without --starttls or --tls the message goes in plaintext (and says so). With either,
// the server certificate must chain to --ca (or the system store) and carry the server's
// name (--tls-domain, default the host of --server; an IP address is matched against IP
// SANs); otherwise no MAIL is sent, exactly as a send connector with require_tls and
// tls_auth_level = domain_validation behaves.
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lab/commands.hpp"
#include "lab/send_client.hpp"

namespace postern::lab {

namespace {

struct send_args {
    std::string to, from, server = "localhost:25", ca, tls_domain, level = "domain_validation", helo, subject;
    std::string client_certificate, config_file, keyring, stash;
    bool starttls = false, implicit_tls = false, json = false;
    unsigned timeout = 30;
};

const char* prefix(smtp::transcript_line::kind k) {
    switch (k) {
    case smtp::transcript_line::kind::sent: return "C: ";
    case smtp::transcript_line::kind::received: return "S: ";
    case smtp::transcript_line::kind::info: return "*  ";
    }
    return "   ";
}

int send_main(const send_args& a) {
    send_request req;
    try {
        auto [host, port] = split_host_port(a.server, 25);
        req.host = host;
        req.port = port;
        req.level = parse_auth_level(a.level);
        req.client_certificate = client_certificate_from(a.client_certificate, a.config_file, a.keyring, a.stash);
    } catch (const std::invalid_argument& e) {
        std::cerr << "postern send: " << e.what() << "\n";
        return 2;
    }
    req.tls = a.implicit_tls ? send_request::tls_use::implicit
              : a.starttls   ? send_request::tls_use::starttls
                             : send_request::tls_use::none;
    req.ca_file = a.ca;
    req.tls_domain = a.tls_domain;
    req.helo = a.helo;
    req.to = a.to;
    req.from = a.from.empty() ? "postern-send@" + (req.helo.empty() ? std::string("localhost") : req.helo) : a.from;
    if (!a.subject.empty()) req.subject = a.subject;
    req.timeout_seconds = a.timeout;

    if (!a.json) {
        std::cout << "postern send: " << req.host << ":" << req.port << ", "
                  << (req.tls == send_request::tls_use::none       ? "plaintext (no --starttls or --tls)"
                      : req.tls == send_request::tls_use::starttls ? "STARTTLS required"
                                                                   : "implicit TLS")
                  << "\n";
    }
    auto report = run_send(req, [&](const smtp::transcript_line& l) {
        if (!a.json) std::cout << "  " << prefix(l.what) << l.text << "\n";
    });

    const auto& v = report.verdict;
    if (a.json) {
        nlohmann::json doc{{"server", req.host + ":" + std::to_string(req.port)},
                           {"remote", report.remote},
                           {"tls_mode", req.tls == send_request::tls_use::none       ? "none"
                                        : req.tls == send_request::tls_use::starttls ? "starttls"
                                                                                     : "implicit"},
                           {"message_id", report.message_id},
                           {"client_certificate", report.client_certificate},
                           {"delivered", report.delivered},
                           {"final_reply", report.final_reply},
                           {"failure", report.failure},
                           {"tls",
                            {{"used", v.tls},
                             {"protocol", v.protocol},
                             {"cipher", v.cipher},
                             {"subject", v.subject},
                             {"issuer", v.issuer},
                             {"sha256", v.sha256},
                             {"name_checked", report.name_checked},
                             {"trust_anchors", report.trust_anchors},
                             {"achieved", delivery::to_string(report.achieved)},
                             {"required", req.tls == send_request::tls_use::none ? "none"
                                                                                : delivery::to_string(req.level)},
                             {"verdict", v.log_line()}}}};
        nlohmann::json lines = nlohmann::json::array();
        for (const auto& l : report.transcript) lines.push_back(std::string(prefix(l.what)) + l.text);
        doc["transcript"] = lines;
        std::cout << doc.dump(2) << "\n";
    } else {
        if (v.tls) {
            std::cout << "TLS:      " << v.protocol << ", " << v.cipher << "\n"
                      << "server:   " << v.subject << " (issued by " << v.issuer << ")\n";
            std::string anchors;
            for (const auto& t : report.trust_anchors) anchors += (anchors.empty() ? "" : "; ") + t;
            std::cout << "verified: against " << anchors
                      << (report.name_checked.empty() ? "" : ", name " + report.name_checked) << ": achieved "
                      << delivery::to_string(report.achieved) << " (required " << delivery::to_string(req.level)
                      << ")" << (v.failure.empty() ? "" : "; " + v.failure) << "\n";
        } else if (req.tls != send_request::tls_use::none) {
            std::cout << "TLS:      not established" << (v.failure.empty() ? "" : ": " + v.failure) << "\n";
        } else {
            std::cout << "TLS:      not used (plaintext)\n";
        }
        if (!report.client_certificate.empty())
            std::cout << "client:   presented certificate " << report.client_certificate << "\n";
        // The server's last word, whatever it was: the reply to the final dot, or the
        // 4xx/5xx that stopped the transaction.
        if (!report.final_reply.empty()) std::cout << "reply:    " << report.final_reply << "\n";
        if (report.delivered)
            std::cout << "result:   delivered: " << report.final_reply << "\n";
        else
            std::cout << "result:   not delivered: " << report.failure << "\n";
    }
    if (!report.delivered && !a.json)
        std::cerr << "postern send: not delivered: "
                  << (report.final_reply.empty() || report.failure.find(report.final_reply) != std::string::npos
                          ? report.failure
                          : report.final_reply + " (" + report.failure + ")")
                  << "\n";
    return report.delivered ? 0 : 1;
}

}  // namespace

void add_send_command(CLI::App& app, int& exit_code) {
    auto a = std::make_shared<send_args>();
    auto* cmd = app.add_subcommand("send", "Send a test message and show the dialogue and the TLS outcome");
    cmd->add_option("--to", a->to, "recipient address")->required();
    cmd->add_option("--from", a->from, "sender address (default: postern-send@<helo name>)");
    cmd->add_option("--server", a->server, "HOST[:PORT] of the SMTP server")->default_str("localhost:25");
    auto* starttls = cmd->add_flag("--starttls", a->starttls, "require STARTTLS (RFC 3207)");
    auto* implicit = cmd->add_flag("--tls", a->implicit_tls, "implicit TLS from the first byte (RFC 8314)");
    starttls->excludes(implicit);
    cmd->add_option("--ca", a->ca, "trusted root certificates (PEM); default: the system CA store");
    cmd->add_option("--tls-domain", a->tls_domain, "name the certificate must carry (default: the server host)");
    cmd->add_option("--level", a->level,
                    "required TLS level: encryption_only | certificate_validation | domain_validation")
        ->default_str("domain_validation");
    cmd->add_option("--client-certificate", a->client_certificate,
                    "present this key ring certificate (mutual TLS); the key ring comes from -c or --keyring/--stash");
    cmd->add_option("-c,--config", a->config_file, "configuration file whose [tls] keyring and stash to use");
    cmd->add_option("--keyring", a->keyring, "key ring (PKCS#12) for --client-certificate");
    cmd->add_option("--stash", a->stash, "stash file with the key ring's password");
    cmd->add_option("--helo", a->helo, "EHLO name (default: this host's name)");
    cmd->add_option("--subject", a->subject, "Subject of the test message");
    cmd->add_option("--timeout", a->timeout, "seconds allowed for each step")->default_str("30");
    cmd->add_flag("--json", a->json, "JSON output");
    cmd->callback([a, &exit_code] {
        try {
            exit_code = send_main(*a);
        } catch (const std::exception& e) {
            std::cerr << "postern send: " << e.what() << "\n";
            exit_code = 1;
        }
    });
}

}  // namespace postern::lab

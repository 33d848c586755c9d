// admin/ca_command.cpp: `postern ca --dir DIR init | sign | show` (DESIGN.md §4), the lab CA.
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "admin/commands.hpp"
#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/lab_ca/lab_ca.hpp"

namespace postern::admin {

namespace {

template <class Body>
void guarded_ca(int& exit_code, const char* name, Body&& body) {
    try {
        body();
        exit_code = 0;
    } catch (const std::exception& e) {
        std::cerr << "postern " << name << ": " << e.what() << "\n";
        exit_code = 1;
    }
}

nlohmann::json describe_root(const X509* cert) {
    return {{"subject", tls::subject_text(cert)},
            {"not_before", tls::time_text(X509_get0_notBefore(cert))},
            {"not_after", tls::time_text(X509_get0_notAfter(cert))},
            {"days_left", tls::days_left(cert)},
            {"key_type", tls::key_type(X509_get0_pubkey(cert))},
            {"sha256", tls::sha256_fingerprint(cert)}};
}

}  // namespace

void add_ca_command(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("ca", "A small certificate authority for labs and tests");
    cmd->require_subcommand(1);
    auto dir = std::make_shared<std::string>();
    cmd->add_option("--dir", *dir, "CA directory (ca.pem, ca.key)")->required();

    struct init_args {
        std::string subject = tls::default_lab_ca_subject;
        int days = 3650;
    };
    auto i = std::make_shared<init_args>();
    auto* init = cmd->add_subcommand("init", "create the lab root: DIR/ca.pem and DIR/ca.key (0600)");
    init->fallthrough();
    init->add_option("--subject", i->subject, "root distinguished name")->default_str(tls::default_lab_ca_subject);
    init->add_option("--days", i->days, "validity in days")->default_str("3650");
    init->callback([dir, i, &exit_code] {
        guarded_ca(exit_code, "ca init", [&] {
            tls::lab_ca ca = tls::lab_ca::init(*dir, i->subject, i->days);
            std::cout << "created lab CA " << tls::subject_text(ca.certificate()) << " in " << *dir
                      << "; trust it with `postern keyring trust " << (std::filesystem::path(*dir) / "ca.pem").string()
                      << "`\n";
        });
    });

    struct sign_args {
        std::string csr, out;
        int days = 365;
    };
    auto s = std::make_shared<sign_args>();
    auto* sign = cmd->add_subcommand("sign", "issue a server/client certificate for a CSR");
    sign->fallthrough();
    sign->add_option("CSR", s->csr, "certificate signing request (PEM or DER)")->required();
    sign->add_option("--out", s->out, "certificate file to write (PEM)")->required();
    sign->add_option("--days", s->days, "validity in days (at most 825)")->default_str("365");
    sign->callback([dir, s, &exit_code] {
        guarded_ca(exit_code, "ca sign", [&] {
            tls::lab_ca ca = tls::lab_ca::open(*dir);
            auto request = tls::request_from_text(tls::read_file(s->csr), s->csr);
            auto cert = ca.sign(request.get(), s->days);
            tls::write_file_atomically(s->out, tls::to_pem(cert.get()), 0644);
            std::cout << "issued " << tls::subject_text(cert.get()) << " until "
                      << tls::time_text(X509_get0_notAfter(cert.get())) << " to " << s->out << "\n";
        });
    });

    auto show_json = std::make_shared<bool>(false);
    auto* show = cmd->add_subcommand("show", "show the lab root");
    show->fallthrough();
    show->add_flag("--json", *show_json, "JSON output");
    show->callback([dir, show_json, &exit_code] {
        guarded_ca(exit_code, "ca show", [&] {
            tls::lab_ca ca = tls::lab_ca::open(*dir);
            auto item = describe_root(ca.certificate());
            item["certificate"] = (std::filesystem::path(*dir) / "ca.pem").string();
            if (*show_json) {
                std::cout << item.dump(2) << "\n";
                return;
            }
            std::cout << "Subject:    " << item["subject"].get<std::string>() << "\n"
                      << "Not before: " << item["not_before"].get<std::string>() << "\n"
                      << "Not after:  " << item["not_after"].get<std::string>() << " ("
                      << item["days_left"].get<int>() << " days left)\n"
                      << "Key:        " << item["key_type"].get<std::string>() << "\n"
                      << "SHA-256:    " << item["sha256"].get<std::string>() << "\n"
                      << "File:       " << item["certificate"].get<std::string>() << "\n";
        });
    });
}

}  // namespace postern::admin

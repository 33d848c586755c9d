// admin/keyring_command.cpp: `postern keyring …` (DESIGN.md §4), a thin shell over tls/keyring.
//
// Passwords never come from the command line: the stash, --password-file, or a prompt on a
// terminal with echo off. Every change is written back atomically (key ring, then request
// log), and only after the operation succeeded, so a refusal leaves the files as they were.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "admin/commands.hpp"
#include "config/schema.hpp"
#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/keyring_operations.hpp"
#include "tls/keyring/request_log.hpp"
#include "tls/keyring/stash.hpp"

namespace postern::admin {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

/// Bad usage that CLI11 cannot see (exit status 2).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct keyring_options {
    std::string config_file;
    std::string keyring;
    std::string stash;
    std::string password_file;
};

struct keyring_location {
    fs::path keyring;
    fs::path stash;
};

keyring_location locate(const keyring_options& o) {
    if (!o.config_file.empty()) {
        config::load_result loaded = config::load_file(o.config_file);
        if (!loaded.ok()) throw tls::tls_error(loaded.errors.front().to_string());
        return {loaded.config->tls.keyring, loaded.config->tls.stash};
    }
    if (o.keyring.empty()) throw usage_error("give -c FILE, or --keyring P12 [--stash STH]");
    fs::path keyring = o.keyring;
    fs::path stash = o.stash.empty() ? fs::path(keyring).replace_extension(".sth") : fs::path(o.stash);
    return {keyring, stash};
}

tls::secret password_for(const keyring_options& o, const keyring_location& where) {
    if (!o.password_file.empty()) return tls::read_password_file(o.password_file);
    std::error_code ec;
    if (fs::exists(where.stash, ec)) return tls::read_stash(where.stash);
    tls::secret typed = tls::prompt_password("Key ring password: ", false);
    if (typed.empty())
        throw tls::tls_error("no password: the stash " + where.stash.string() +
                             " does not exist; give --password-file or run on a terminal");
    return typed;
}

/// An open key ring with its password and request log, written back by save().
struct open_keyring {
    keyring_location where;
    tls::secret password;
    tls::keyring ring;
    tls::request_log log;

    static open_keyring open(const keyring_options& o) {
        open_keyring k;
        k.where = locate(o);
        std::error_code ec;
        if (!fs::exists(k.where.keyring, ec))
            throw tls::tls_error(k.where.keyring.string() + ": no such key ring (create it with `postern keyring create`)");
        k.password = password_for(o, k.where);
        k.ring = tls::keyring::read(k.where.keyring, k.password.view());
        k.log = tls::request_log::load(k.where.keyring);
        return k;
    }
    void save() const {
        ring.write(where.keyring, password.view());
        log.save(where.keyring);
    }
};

/// Runs a command body and turns its outcome into the exit status of DESIGN.md §4.
template <class Body>
void guarded(int& exit_code, const char* name, Body&& body) {
    try {
        body();
        exit_code = 0;
    } catch (const usage_error& e) {
        std::cerr << "postern " << name << ": " << e.what() << "\n";
        exit_code = 2;
    } catch (const tls::keyring_refusal& e) {
        std::cerr << "postern " << name << ": refused: " << e.what() << "\n";
        exit_code = 1;
    } catch (const std::exception& e) {
        std::cerr << "postern " << name << ": " << e.what() << "\n";
        exit_code = 1;
    }
}

std::string text_or(const json& item, const char* key, const char* otherwise = "-") {
    if (!item.contains(key) || item[key].is_null()) return otherwise;
    if (item[key].is_string()) return item[key].get<std::string>();
    return item[key].dump();
}

std::string joined(const json& list) {
    std::string text;
    if (!list.is_array()) return "-";
    for (const auto& n : list) text += (text.empty() ? "" : ", ") + n.get<std::string>();
    return text.empty() ? "-" : text;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> widths;
    for (const auto& row : rows)
        for (std::size_t i = 0; i < row.size(); ++i) {
            if (widths.size() <= i) widths.push_back(0);
            widths[i] = std::max(widths[i], row[i].size());
        }
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
        }
        std::cout << line << "\n";
    }
}

void make_parent_directory(const fs::path& file) {
    fs::path dir = file.parent_path();
    std::error_code ec;
    if (dir.empty() || fs::exists(dir, ec)) return;
    fs::create_directories(dir, ec);
    if (ec) throw tls::tls_error(dir.string() + ": cannot create the directory: " + ec.message());
    ::chmod(dir.c_str(), 0700);
}

void create(const keyring_options& o) {
    keyring_location where = locate(o);
    std::error_code ec;
    if (fs::exists(where.keyring, ec))
        throw tls::tls_error(where.keyring.string() + ": a key ring already exists there");
    make_parent_directory(where.keyring);
    make_parent_directory(where.stash);
    tls::secret password;
    bool write_stash = true;
    if (!o.password_file.empty()) {
        password = tls::read_password_file(o.password_file);
    } else if (fs::exists(where.stash, ec)) {
        password = tls::read_stash(where.stash);   // a stash prepared beforehand is kept
        write_stash = false;
    } else {
        password = tls::prompt_password("New key ring password: ", true);
        if (password.empty()) password = tls::generate_password();   // no terminal: a random one
    }
    if (write_stash && fs::exists(where.stash, ec))
        throw tls::tls_error(where.stash.string() + ": a stash already exists there; remove it or omit --password-file");
    tls::keyring empty;
    if (write_stash) tls::write_stash(where.stash, password);
    empty.write(where.keyring, password.view());
    tls::request_log{}.save(where.keyring);
    std::cout << "created key ring " << where.keyring.string() << " (stash " << where.stash.string() << ")\n";
}

struct request_args {
    std::string subject, san, key{tls::default_key_type}, label, out;
};

void request(const keyring_options& o, const request_args& a) {
    bool known = false;
    for (auto t : tls::key_types) known = known || a.key == t;
    if (!known) throw usage_error("--key " + a.key + ": one of rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384");
    open_keyring k = open_keyring::open(o);
    tls::request_options options;
    options.subject = a.subject;
    options.names = tls::parse_subject_alt_names(a.san);
    options.key_type = a.key;
    options.label = a.label;
    tls::request_result result = tls::add_request(k.ring, k.log, options);
    tls::write_file_atomically(a.out, result.csr_pem, 0644);
    k.save();
    std::cout << "request \"" << result.label << "\" written to " << a.out
              << "; send it to your CA, then `postern keyring install` the certificate\n";
}

void requests(const keyring_options& o, bool as_json) {
    open_keyring k = open_keyring::open(o);
    json doc = k.log.to_json();
    if (as_json) {
        std::cout << doc.dump(2) << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows{{"LABEL", "STATE", "DATE", "KEY", "SUBJECT", "NAMES"}};
    for (const auto& r : doc["requests"])
        rows.push_back({text_or(r, "label"), text_or(r, "state"), text_or(r, "date"), text_or(r, "key_type"),
                        text_or(r, "subject"), joined(r["names"])});
    print_table(rows);
}

void trust(const keyring_options& o, const std::string& pem_file, bool pinned_peer, const std::string& label) {
    open_keyring k = open_keyring::open(o);
    auto certs = tls::certificates_from_pem(tls::read_file(pem_file), pem_file);
    auto added = tls::trust_certificates(k.ring, std::move(certs), pinned_peer, label, pem_file);
    k.save();
    for (const auto& line : added) std::cout << "trusted " << line << "\n";
}

void install(const keyring_options& o, const std::string& pem_file) {
    open_keyring k = open_keyring::open(o);
    auto certs = tls::certificates_from_pem(tls::read_file(pem_file), pem_file);
    std::string label = tls::install_certificate(k.ring, k.log, std::move(certs), pem_file);
    k.save();
    const auto* entry = k.ring.find(label);
    std::cout << "installed \"" << label << "\": " << tls::subject_text(entry->certificate.get()) << ", valid until "
              << tls::time_text(X509_get0_notAfter(entry->certificate.get())) << "\n";
}

/// Where the configuration names `label` (a key ring label), as "KEY (connector "NAME")"; empty when nowhere.
std::vector<std::string> references_to(const config::configuration& cfg, const std::string& label,
                                       const tls::keyring& ring) {
    std::vector<std::string> refs;
    if (cfg.tls.certificate == label) refs.push_back("[tls] certificate");
    bool serves_tls = false;
    for (const auto& rc : cfg.receive_connectors) serves_tls |= rc.tls != config::tls_mode::none;
    if (cfg.tls.certificate.empty() && serves_tls) {
        // "" means the only server certificate: removing it leaves nothing to serve.
        const auto servers = ring.with_role(tls::entry_role::server);
        if (servers.size() == 1 && servers.front()->label == label)
            refs.push_back("[tls] certificate (unset: the key ring's only server certificate)");
    }
    for (const auto& rc : cfg.receive_connectors)
        for (const auto& root : rc.trusted_roots)
            if (root == label) refs.push_back("receive connector \"" + rc.name + "\" trusted_roots");
    for (const auto& sc : cfg.send_connectors) {
        if (sc.client_certificate == label) refs.push_back("send connector \"" + sc.name + "\" client_certificate");
        for (const auto& root : sc.trusted_roots)
            if (root == label) refs.push_back("send connector \"" + sc.name + "\" trusted_roots");
    }
    return refs;
}

/// remove and label: a label the configuration uses is not taken away from under it.
void refuse_if_referenced(const keyring_options& o, const open_keyring& k, const std::string& label,
                          const char* what) {
    if (o.config_file.empty()) return;   // --keyring alone: no configuration to consult
    auto loaded = config::load_file(o.config_file);
    if (!loaded.ok()) return;            // a broken file is config check's to report
    const auto refs = references_to(*loaded.config, label, k.ring);
    if (refs.empty()) return;
    std::string list;
    for (const auto& r : refs) list += (list.empty() ? "" : "; ") + r;
    throw tls::keyring_refusal(fmt::format("cannot {} \"{}\": {} uses it ({}); change that first", what, label,
                                           o.config_file, list));
}

void renew(const keyring_options& o, const std::string& label, const std::string& key, const std::string& out) {
    if (!key.empty()) {
        bool known = false;
        for (auto t : tls::key_types) known = known || key == t;
        if (!known) throw usage_error("--key " + key + ": one of rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384");
    }
    open_keyring k = open_keyring::open(o);
    tls::request_result result = tls::renew_request(k.ring, k.log, label, key);
    tls::write_file_atomically(out, result.csr_pem, 0644);
    k.save();
    std::cout << "renewal of \"" << label << "\" requested as \"" << result.label << "\", CSR written to " << out
              << "; \"" << label << "\" keeps serving until `postern keyring install` of the signed certificate "
              << "replaces it (then `postern reload`)\n";
}

struct import_args {
    std::string file, key, label, import_password_file;
};

void import_file(const keyring_options& o, const import_args& a) {
    open_keyring k = open_keyring::open(o);
    tls::secret password;
    if (!a.import_password_file.empty()) password = tls::read_password_file(a.import_password_file);
    auto material = tls::read_import_file(a.file, a.key, password.view());
    const std::string wanted = a.label.empty() ? material.friendly_name : a.label;
    const std::string label = tls::import_certificate(k.ring, std::move(material.certificates),
                                                      std::move(material.key), wanted, a.file);
    k.save();
    const auto* entry = k.ring.find(label);
    std::cout << "imported \"" << label << "\": " << tls::subject_text(entry->certificate.get()) << ", valid until "
              << tls::time_text(X509_get0_notAfter(entry->certificate.get())) << "\n";
}

void list(const keyring_options& o, bool as_json) {
    open_keyring k = open_keyring::open(o);
    json entries = json::array();
    for (const auto& entry : k.ring.entries()) entries.push_back(tls::describe(k.ring, k.log, entry));
    if (as_json) {
        std::cout << json{{"keyring", k.where.keyring.string()}, {"entries", entries}}.dump(2) << "\n";
        return;
    }
    std::vector<std::vector<std::string>> rows{{"LABEL", "ROLE", "DEFAULT", "KEY", "NOT AFTER", "DAYS", "SUBJECT"}};
    auto role_text = [](const json& e) {
        std::string role = text_or(e, "role");
        if (e.contains("renewal_pending")) role += " (renewal pending: " + e["renewal_pending"].get<std::string>() + ")";
        if (e.contains("renews")) role += " (renews " + e["renews"].get<std::string>() + ")";
        return role;
    };
    for (const auto& e : entries)
        rows.push_back({text_or(e, "label"), role_text(e), e["default"].get<bool>() ? "*" : "",
                        text_or(e, "key_type"), text_or(e, "not_after"), text_or(e, "days_left"), text_or(e, "subject")});
    print_table(rows);
}

void show(const keyring_options& o, const std::string& label, bool as_json) {
    open_keyring k = open_keyring::open(o);
    const auto* entry = k.ring.find(label);
    if (!entry) throw tls::tls_error("no entry labelled \"" + label + "\"");
    json item = tls::describe(k.ring, k.log, *entry);
    if (as_json) {
        std::cout << item.dump(2) << "\n";
        return;
    }
    const std::pair<const char*, const char*> fields[] = {
        {"label", "Label"},          {"role", "Role"},          {"default", "Default"},
        {"subject", "Subject"},      {"names", "Names"},        {"issuer", "Issuer"},
        {"not_before", "Not before"}, {"not_after", "Not after"}, {"days_left", "Days left"},
        {"key_type", "Key"},         {"sha256", "SHA-256"},     {"sha1", "SHA-1"},
        {"public_key_sha256", "Public key SHA-256"}, {"requested", "Requested"}};
    for (auto [key, title] : fields) {
        if (!item.contains(key)) continue;
        std::string value = std::string(key) == "names" ? joined(item[key]) : text_or(item, key);
        std::printf("%-19s %s\n", (std::string(title) + ":").c_str(), value.c_str());
    }
}

struct export_args {
    std::string label, format, out, export_password_file;
    bool with_key = false;
    bool legacy = false;
};

void export_entry(const keyring_options& o, const export_args& a) {
    if (a.format != "pem" && a.format != "pkcs12") throw usage_error("--format must be pem or pkcs12");
    if (a.legacy && a.format != "pkcs12") throw usage_error("--legacy applies to --format pkcs12 only");
    open_keyring k = open_keyring::open(o);
    std::string bytes;
    if (a.format == "pem") {
        bytes = tls::export_pem(k.ring, a.label, a.with_key);
    } else {
        // The export is protected with its own password when one is given, else the ring's.
        tls::secret export_password;
        if (!a.export_password_file.empty()) export_password = tls::read_password_file(a.export_password_file);
        const tls::secret& password = export_password.empty() ? k.password : export_password;
        bytes = tls::export_pkcs12(k.ring, a.label, a.with_key, password.view(),
                                   a.legacy ? tls::pkcs12_protection::legacy : tls::pkcs12_protection::modern);
    }
    tls::write_file_atomically(a.out, bytes, a.with_key ? 0600 : 0644);
    if (a.with_key) OPENSSL_cleanse(bytes.data(), bytes.size());
    std::cout << "exported \"" << a.label << "\" to " << a.out << (a.with_key ? " (with its private key)" : "") << "\n";
}

/// A subcommand of `keyring`; -c/--keyring may also follow it.
CLI::App* keyring_leaf(CLI::App* keyring, const char* name, const char* description) {
    auto* sub = keyring->add_subcommand(name, description);
    sub->fallthrough();
    return sub;
}

/// create, request: a new key ring, a new key and its CSR.
void add_keyring_creation(CLI::App* cmd, const std::shared_ptr<keyring_options>& o, int& exit_code) {
    keyring_leaf(cmd, "create", "create an empty key ring and its stash")->callback([o, &exit_code] {
        guarded(exit_code, "keyring create", [&] { create(*o); });
    });

    auto r = std::make_shared<request_args>();
    auto* request_cmd = keyring_leaf(cmd, "request", "new key and certificate signing request (CSR)");
    request_cmd->add_option("--subject", r->subject, "distinguished name, e.g. CN=mx1.example.test,O=Example")->required();
    request_cmd->add_option("--san", r->san, "subjectAltName, e.g. DNS:mx1.example.test,IP:192.0.2.1 (default: DNS:<CN>)");
    request_cmd->add_option("--key", r->key, "rsa-2048 | rsa-3072 | rsa-4096 | ecdsa-p256 | ecdsa-p384")
        ->default_str(std::string(tls::default_key_type));
    request_cmd->add_option("--label", r->label, "label of the new entry (default: the CN)");
    request_cmd->add_option("--out", r->out, "file to write the CSR to (PEM)")->required();
    request_cmd->callback([o, r, &exit_code] { guarded(exit_code, "keyring request", [&] { request(*o, *r); }); });
}

/// requests, list, show: what the key ring holds.
void add_keyring_reading(CLI::App* cmd, const std::shared_ptr<keyring_options>& o, int& exit_code) {
    auto requests_json = std::make_shared<bool>(false);
    auto* requests_cmd = keyring_leaf(cmd, "requests", "list the certificate requests and their state");
    requests_cmd->add_flag("--json", *requests_json, "JSON output");
    requests_cmd->callback([o, requests_json, &exit_code] {
        guarded(exit_code, "keyring requests", [&] { requests(*o, *requests_json); });
    });

    auto list_json = std::make_shared<bool>(false);
    auto* list_cmd = keyring_leaf(cmd, "list", "list the key ring's entries");
    list_cmd->add_flag("--json", *list_json, "JSON output");
    list_cmd->callback([o, list_json, &exit_code] { guarded(exit_code, "keyring list", [&] { list(*o, *list_json); }); });

    struct show_args {
        std::string label;
        bool json = false;
    };
    auto s = std::make_shared<show_args>();
    auto* show_cmd = keyring_leaf(cmd, "show", "show one entry");
    show_cmd->add_option("LABEL", s->label)->required();
    show_cmd->add_flag("--json", s->json, "JSON output");
    show_cmd->callback([o, s, &exit_code] { guarded(exit_code, "keyring show", [&] { show(*o, s->label, s->json); }); });
}

/// trust, install, label, default, remove: changes to entries.
void add_keyring_entry_changes(CLI::App* cmd, const std::shared_ptr<keyring_options>& o, int& exit_code) {
    struct trust_args {
        std::string pem, label;
        bool pinned_peer = false;
    };
    auto t = std::make_shared<trust_args>();
    auto* trust_cmd = keyring_leaf(cmd, "trust", "add CA certificates (roots, intermediates) from a PEM file");
    trust_cmd->add_option("PEM", t->pem, "PEM file with one or more certificates")->required();
    trust_cmd->add_flag("--pinned-peer", t->pinned_peer, "trust a non-CA certificate as itself");
    trust_cmd->add_option("--label", t->label, "label (default: the certificate's CN)");
    trust_cmd->callback([o, t, &exit_code] {
        guarded(exit_code, "keyring trust", [&] { trust(*o, t->pem, t->pinned_peer, t->label); });
    });

    struct renew_args {
        std::string label, key, out;
    };
    auto rn = std::make_shared<renew_args>();
    auto* renew_cmd = keyring_leaf(cmd, "renew",
                                   "new key and CSR for a certificate's names; installing the signed one replaces it "
                                   "under the same label");
    renew_cmd->add_option("LABEL", rn->label, "the certificate to renew")->required();
    renew_cmd->add_option("--key", rn->key, "key type of the new key (default: the current key's)");
    renew_cmd->add_option("--out", rn->out, "file to write the CSR to (PEM)")->required();
    renew_cmd->callback([o, rn, &exit_code] {
        guarded(exit_code, "keyring renew", [&] { renew(*o, rn->label, rn->key, rn->out); });
    });

    auto im = std::make_shared<import_args>();
    auto* import_cmd = keyring_leaf(cmd, "import", "import a certificate with its key: PKCS#12 (.pfx/.p12) or PEM");
    import_cmd->add_option("FILE", im->file, "PKCS#12 file, or PEM with the certificate (and chain, and key)")->required();
    import_cmd->add_option("--key", im->key, "PEM private key, when FILE holds only certificates");
    import_cmd->add_option("--label", im->label, "label (default: the PKCS#12 friendlyName, else the CN)");
    import_cmd->add_option("--import-password-file", im->import_password_file,
                           "password of the PKCS#12 file or of an encrypted PEM key");
    import_cmd->callback([o, im, &exit_code] { guarded(exit_code, "keyring import", [&] { import_file(*o, *im); }); });

    auto install_pem = std::make_shared<std::string>();
    auto* install_cmd = keyring_leaf(cmd, "install", "install a signed certificate onto its pending request");
    install_cmd->add_option("PEM", *install_pem, "PEM file: the certificate, optionally with intermediates")->required();
    install_cmd->callback([o, install_pem, &exit_code] {
        guarded(exit_code, "keyring install", [&] { install(*o, *install_pem); });
    });

    auto names = std::make_shared<std::vector<std::string>>();
    auto* label_cmd = keyring_leaf(cmd, "label", "rename an entry");
    label_cmd->add_option("labels", *names, "OLD NEW: the current label and the new one")->required()->expected(2)->type_name("OLD NEW");
    label_cmd->callback([o, names, &exit_code] {
        guarded(exit_code, "keyring label", [&] {
            open_keyring k = open_keyring::open(*o);
            refuse_if_referenced(*o, k, (*names)[0], "rename");
            tls::rename_entry(k.ring, k.log, (*names)[0], (*names)[1]);
            k.save();
            std::cout << "renamed \"" << (*names)[0] << "\" to \"" << (*names)[1] << "\"\n";
        });
    });

    auto default_label = std::make_shared<std::string>();
    auto* default_cmd = keyring_leaf(cmd, "default", "make a server certificate the default");
    default_cmd->add_option("LABEL", *default_label)->required();
    default_cmd->callback([o, default_label, &exit_code] {
        guarded(exit_code, "keyring default", [&] {
            open_keyring k = open_keyring::open(*o);
            tls::set_default(k.ring, k.log, *default_label);
            k.save();
            std::cout << "\"" << *default_label << "\" is the default server certificate\n";
        });
    });

    auto remove_label = std::make_shared<std::string>();
    auto* remove_cmd = keyring_leaf(cmd, "remove", "remove an entry (a pending request is cancelled)");
    remove_cmd->add_option("LABEL", *remove_label)->required();
    remove_cmd->callback([o, remove_label, &exit_code] {
        guarded(exit_code, "keyring remove", [&] {
            open_keyring k = open_keyring::open(*o);
            refuse_if_referenced(*o, k, *remove_label, "remove");
            tls::remove_entry(k.ring, k.log, *remove_label);
            k.save();
            std::cout << "removed \"" << *remove_label << "\"\n";
        });
    });
}

/// export: a certificate, its chain and (with --with-key) its key.
void add_keyring_export(CLI::App* cmd, const std::shared_ptr<keyring_options>& o, int& exit_code) {
    auto e = std::make_shared<export_args>();
    auto* export_cmd = keyring_leaf(cmd, "export", "export a certificate and its chain (and with --with-key its key)");
    export_cmd->add_option("LABEL", e->label)->required();
    export_cmd->add_option("--format", e->format, "pem | pkcs12")->required();
    export_cmd->add_option("--out", e->out, "output file")->required();
    export_cmd->add_flag("--with-key", e->with_key, "include the private key (file mode 0600)");
    export_cmd->add_flag("--legacy", e->legacy, "PKCS#12 with PBE-SHA1-3DES, for old Windows");
    export_cmd->add_option("--export-password-file", e->export_password_file,
                           "protect the PKCS#12 export with this password (default: the key ring's)");
    export_cmd->callback([o, e, &exit_code] { guarded(exit_code, "keyring export", [&] { export_entry(*o, *e); }); });
}

}  // namespace

void add_keyring_command(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("keyring", "Create and edit the key ring (PKCS#12 + stash file)");
    cmd->require_subcommand(1);
    auto o = std::make_shared<keyring_options>();
    auto* config_opt = cmd->add_option("-c,--config", o->config_file, "configuration file ([tls] keyring and stash)");
    auto* keyring_opt = cmd->add_option("--keyring", o->keyring, "key ring file (PKCS#12)");
    auto* stash_opt = cmd->add_option("--stash", o->stash, "stash file (default: the key ring with .sth)");
    cmd->add_option("--password-file", o->password_file, "read the key ring password from this file (mode 0600)");
    config_opt->excludes(keyring_opt)->excludes(stash_opt);
    stash_opt->needs(keyring_opt);
    add_keyring_creation(cmd, o, exit_code);
    add_keyring_reading(cmd, o, exit_code);
    add_keyring_entry_changes(cmd, o, exit_code);
    add_keyring_export(cmd, o, exit_code);
}

}  // namespace postern::admin

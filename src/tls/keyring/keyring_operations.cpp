#include "tls/keyring/keyring_operations.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/keyring/certificate_request.hpp"

namespace postern::tls {

namespace {

const keyring_entry& existing(const keyring& ring, const std::string& label) {
    const keyring_entry* entry = ring.find(label);
    if (!entry) throw tls_error("no entry labelled \"" + label + "\"");
    return *entry;
}

bool contains_certificate(const keyring& ring, const X509* cert, std::string* label = nullptr) {
    for (const auto& entry : ring.entries())
        if (entry.certificate && X509_cmp(entry.certificate.get(), cert) == 0) {
            if (label) *label = entry.label;
            return true;
        }
    return false;
}

std::string label_for(const X509* cert) {
    std::string cn = common_name(X509_get_subject_name(cert));
    return cn.empty() ? subject_text(cert) : cn;
}

void check_label(const std::string& label) {
    if (label.empty()) throw tls_error("a label cannot be empty");
    for (unsigned char c : label)
        if (c < 0x20 || c == 0x7f) throw tls_error("a label cannot contain control characters");
}


/// The checks a certificate must pass to serve from the ring: its chain reaches a root the
/// ring already trusts (intermediates from the ring or from `certificates`, roots only from
/// the ring) and it has EKU serverAuth. Returns the intermediates it used that the ring
/// does not hold yet. Throws keyring_refusal.
std::vector<x509_ptr> check_leaf_chain(const keyring& ring, const std::vector<x509_ptr>& certificates,
                                       std::size_t leaf_index, const std::string& source) {
    X509* leaf = certificates[leaf_index].get();
    const std::string subject = subject_text(leaf);
    // The chain must reach a root the ring already trusts: intermediates may come from the
    // ring or from the same file, roots only from the ring (`keyring trust` first).
    x509_store_ptr store(X509_STORE_new());
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    for (const auto& entry : ring.entries()) {
        if (entry.role == entry_role::root) X509_STORE_add_cert(store.get(), entry.certificate.get());
        if (entry.role == entry_role::intermediate) sk_X509_push(untrusted, entry.certificate.get());
    }
    for (std::size_t i = 0; i < certificates.size(); ++i)
        if (i != leaf_index) sk_X509_push(untrusted, certificates[i].get());
    x509_store_ctx_ptr verify(X509_STORE_CTX_new());
    X509_STORE_CTX_init(verify.get(), store.get(), leaf, untrusted);
    bool chained = X509_verify_cert(verify.get()) == 1;
    std::vector<x509_ptr> used_intermediates;
    if (chained) {
        STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(verify.get());
        for (int i = 1; i < sk_X509_num(chain); ++i) {
            X509* link = sk_X509_value(chain, i);
            if (!is_self_signed(link) && !contains_certificate(ring, link)) used_intermediates.push_back(up_ref(link));
        }
    }
    std::string verify_error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get()));
    sk_X509_free(untrusted);
    ERR_clear_error();
    if (!chained)
        throw keyring_refusal(source + ": " + subject + " does not chain to a trusted root of the key ring (" +
                              verify_error + "; issuer " + issuer_text(leaf) +
                              "); add the root first with `postern keyring trust`");
    if (!has_server_auth(leaf))
        throw keyring_refusal(source + ": " + subject + " lacks extendedKeyUsage serverAuth, so it cannot serve TLS");

    return used_intermediates;
}

}  // namespace

request_result add_request(keyring& ring, request_log& log, const request_options& options) {
    x509_name_ptr subject = parse_distinguished_name(options.subject);
    std::vector<std::string> names = options.names;
    std::string cn = common_name(subject.get());
    if (names.empty()) {
        if (cn.empty()) throw tls_error("the request needs --san or a CN in --subject");
        names = parse_subject_alt_names("DNS:" + cn);
    }
    std::string label = options.label.empty() ? ring.unique_label(cn.empty() ? names.front().substr(names.front().find(':') + 1) : cn)
                                              : options.label;
    check_label(label);
    if (ring.find(label)) throw tls_error("the label \"" + label + "\" is already in use");

    evp_pkey_ptr key = generate_key(options.key_type);
    x509_req_ptr request = make_request(key.get(), subject.get(), names);

    request_record record;
    record.label = label;
    record.date = now_text();
    record.subject = name_text(subject.get());
    record.names = names;
    record.key_type = key_type(key.get());
    record.public_key_sha256 = public_key_sha256(key.get());
    log.requests.push_back(record);
    ring.add_pending_key(label, std::move(key));
    return {label, to_pem(request.get())};
}

request_result renew_request(keyring& ring, request_log& log, const std::string& label, const std::string& key_type_name) {
    const keyring_entry* current = ring.find(label);
    if (!current) throw tls_error("no entry labelled \"" + label + "\"");
    if (current->role != entry_role::server)
        throw keyring_refusal("\"" + label + "\" is a " + std::string(to_string(current->role)) +
                              ", not a certificate with its key: only those are renewed");
    for (const auto& r : log.requests)
        if (r.state == request_state::pending && r.renews == label && ring.find(r.label))
            throw keyring_refusal("a renewal of \"" + label + "\" is already pending as \"" + r.label +
                                  "\": install its certificate, or remove it to start again");
    const X509* cert = current->certificate.get();
    std::vector<std::string> names = subject_alt_names(cert);
    x509_name_ptr subject(X509_NAME_dup(X509_get_subject_name(cert)));
    const std::string type = key_type_name.empty() ? key_type(current->key.get()) : key_type_name;

    evp_pkey_ptr key = generate_key(type);
    x509_req_ptr request = make_request(key.get(), subject.get(), names);
    request_record record;
    record.label = ring.unique_label(label + "-renewal");
    record.date = now_text();
    record.subject = name_text(subject.get());
    record.names = names;
    record.key_type = key_type(key.get());
    record.public_key_sha256 = public_key_sha256(key.get());
    record.renews = label;
    log.requests.push_back(record);
    ring.add_pending_key(record.label, std::move(key));
    return {record.label, to_pem(request.get())};
}

std::string import_certificate(keyring& ring, std::vector<x509_ptr> certificates, evp_pkey_ptr key,
                               const std::string& label, const std::string& source) {
    if (!key) throw keyring_refusal(source + ": no private key");
    std::size_t leaf_index = certificates.size();
    for (std::size_t i = 0; i < certificates.size(); ++i)
        if (EVP_PKEY_eq(X509_get0_pubkey(certificates[i].get()), key.get()) == 1) {
            leaf_index = i;
            break;
        }
    if (leaf_index == certificates.size())
        throw keyring_refusal(source + ": no certificate in it matches the private key");
    X509* leaf = certificates[leaf_index].get();
    std::string already;
    if (contains_certificate(ring, leaf, &already))
        throw keyring_refusal(source + ": " + subject_text(leaf) + " is already in the key ring as \"" + already + "\"");
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        throw keyring_refusal(source + ": " + subject_text(leaf) + " is not valid before " +
                              time_text(X509_get0_notBefore(leaf)));
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        throw keyring_refusal(source + ": " + subject_text(leaf) + " expired on " + time_text(X509_get0_notAfter(leaf)));
    auto intermediates = check_leaf_chain(ring, certificates, leaf_index, source);
    const std::string name = label.empty() ? ring.unique_label(label_for(leaf)) : label;
    check_label(name);
    if (ring.find(name)) throw tls_error("the label \"" + name + "\" is already in use");
    keyring_entry entry;
    entry.label = name;
    entry.role = entry_role::server;
    entry.certificate = up_ref(leaf);
    entry.key = std::move(key);
    ring.entries().push_back(std::move(entry));
    for (auto& intermediate : intermediates) {
        std::string intermediate_label = ring.unique_label(label_for(intermediate.get()));
        ring.add_certificate(std::move(intermediate_label), std::move(intermediate));
    }
    return name;
}

namespace {

evp_pkey_ptr key_from_pem(const std::string& text, std::string_view password) {
    bio_ptr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    std::string pass(password);
    evp_pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, pass.empty() ? nullptr : pass.data()));
    OPENSSL_cleanse(pass.data(), pass.size());
    ERR_clear_error();
    return key;
}

}  // namespace

import_material read_import_file(const std::filesystem::path& file, const std::filesystem::path& key_file,
                                 std::string_view password) {
    load_providers();   // legacy .pfx files (RC2, 3DES) need OpenSSL's legacy provider
    import_material out;
    const std::string bytes = read_file(file);
    const std::string source = file.string();
    if (bytes.find("-----BEGIN") == std::string::npos) {
        // DER: PKCS#12.
        const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
        pkcs12_ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(bytes.size())));
        if (!p12) throw tls_error(source + ": neither PEM nor PKCS#12 (" + openssl_errors() + ")");
        std::string pass(password);
        EVP_PKEY* key = nullptr;
        X509* cert = nullptr;
        STACK_OF(X509)* extra = nullptr;
        const int ok = PKCS12_parse(p12.get(), pass.c_str(), &key, &cert, &extra);
        OPENSSL_cleanse(pass.data(), pass.size());
        if (!ok) throw tls_error(source + ": cannot open the PKCS#12 file: wrong password, or damaged (" +
                                 openssl_errors() + ")");
        out.key.reset(key);
        if (cert) {
            int length = 0;
            if (const unsigned char* alias = X509_alias_get0(cert, &length))
                out.friendly_name.assign(reinterpret_cast<const char*>(alias), static_cast<std::size_t>(length));
            out.certificates.emplace_back(cert);
        }
        for (int i = 0; extra && i < sk_X509_num(extra); ++i) out.certificates.emplace_back(sk_X509_value(extra, i));
        sk_X509_free(extra);   // the certificates now belong to out
        return out;
    }
    out.certificates = certificates_from_pem(bytes, source);
    const std::string key_text = key_file.empty() ? bytes : read_file(key_file);
    out.key = key_from_pem(key_text, password);
    if (!out.key)
        throw tls_error((key_file.empty() ? source : key_file.string()) +
                        ": no private key that can be read (for an encrypted one give --import-password-file)");
    return out;
}

std::vector<std::string> trust_certificates(keyring& ring, std::vector<x509_ptr> certificates, bool pinned_peer,
                                            const std::string& label, const std::string& source) {
    // Check everything before changing anything: one refused certificate refuses the file.
    for (const auto& cert : certificates) {
        if (!is_ca(cert.get()) && !pinned_peer)
            throw keyring_refusal(source + ": " + subject_text(cert.get()) +
                                  " is not a CA certificate (no basicConstraints CA:TRUE); "
                                  "use --pinned-peer to trust this one certificate as itself");
        if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0)
            throw keyring_refusal(source + ": " + subject_text(cert.get()) + " expired on " +
                                  time_text(X509_get0_notAfter(cert.get())));
    }
    if (!label.empty()) check_label(label);
    std::vector<std::string> added;
    for (auto& cert : certificates) {
        std::string already;
        if (contains_certificate(ring, cert.get(), &already)) {
            added.push_back(already + " (already in the key ring)");
            continue;
        }
        std::string wanted = label.empty() ? label_for(cert.get()) : label;
        if (!label.empty() && certificates.size() == 1 && ring.find(label))
            throw tls_error("the label \"" + label + "\" is already in use");
        keyring_entry& entry = ring.add_certificate(ring.unique_label(wanted), std::move(cert));
        added.push_back(entry.label + " (" + std::string(to_string(entry.role)) + ")");
    }
    return added;
}

std::string install_certificate(keyring& ring, request_log& log, std::vector<x509_ptr> certificates,
                                const std::string& source) {
    keyring_entry* pending = nullptr;
    std::size_t leaf_index = 0;
    for (std::size_t i = 0; i < certificates.size() && !pending; ++i)
        for (auto& entry : ring.entries())
            if (entry.role == entry_role::pending &&
                EVP_PKEY_eq(X509_get0_pubkey(certificates[i].get()), entry.key.get()) == 1) {
                pending = &entry;
                leaf_index = i;
                break;
            }
    if (!pending) {
        std::string already;
        for (const auto& cert : certificates)
            if (contains_certificate(ring, cert.get(), &already))
                throw keyring_refusal(source + ": " + subject_text(cert.get()) + " is already installed as \"" + already + "\"");
        std::string open;
        for (const auto* entry : ring.with_role(entry_role::pending)) open += (open.empty() ? "" : ", ") + entry->label;
        throw keyring_refusal(source + ": no pending request matches the public key of " +
                              subject_text(certificates.front().get()) +
                              (open.empty() ? std::string(" (there are no pending requests)")
                                            : " (pending requests: " + open + ")"));
    }
    X509* leaf = certificates[leaf_index].get();
    const std::string subject = subject_text(leaf);
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        throw keyring_refusal(source + ": " + subject + " is not valid before " + time_text(X509_get0_notBefore(leaf)));
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        throw keyring_refusal(source + ": " + subject + " expired on " + time_text(X509_get0_notAfter(leaf)));

    std::vector<x509_ptr> used_intermediates = check_leaf_chain(ring, certificates, leaf_index, source);

    const std::string fingerprint = public_key_sha256(pending->key.get());
    request_record* record = log.find_pending_by_key(fingerprint);
    std::string label = pending->label;
    keyring_entry* renewed = record && !record->renews.empty() ? ring.find(record->renews) : nullptr;
    if (renewed && renewed->role == entry_role::server) {
        // A renewal: the new key and certificate take the renewed label's place in one
        // write of the ring, so every reference to that label serves the new one after a
        // reload; the pending entry goes.
        renewed->certificate = up_ref(leaf);
        renewed->key = std::move(pending->key);
        label = renewed->label;
        const std::string pending_label = pending->label;
        auto& entries = ring.entries();
        entries.erase(std::find_if(entries.begin(), entries.end(),
                                   [&](const keyring_entry& e) { return e.label == pending_label; }));
    } else {
        pending->certificate = up_ref(leaf);
        pending->role = entry_role::server;
    }
    for (auto& intermediate : used_intermediates) {
        std::string intermediate_label = ring.unique_label(label_for(intermediate.get()));
        ring.add_certificate(std::move(intermediate_label), std::move(intermediate));
    }
    if (record) {
        record->state = request_state::installed;
        record->state_date = now_text();
    }
    return label;
}

void rename_entry(keyring& ring, request_log& log, const std::string& from, const std::string& to) {
    check_label(to);
    keyring_entry* entry = ring.find(from);
    if (!entry) throw tls_error("no entry labelled \"" + from + "\"");
    if (from == to) return;
    if (ring.find(to)) throw tls_error("the label \"" + to + "\" is already in use");
    entry->label = to;
    log.rename(from, to);
}

void set_default(keyring& ring, request_log& log, const std::string& label) {
    const keyring_entry& entry = existing(ring, label);
    if (entry.role != entry_role::server)
        throw tls_error("\"" + label + "\" is a " + std::string(to_string(entry.role)) +
                        " entry; only a key and certificate pair can be the default");
    log.default_label = label;
}

void remove_entry(keyring& ring, request_log& log, const std::string& label) {
    auto& entries = ring.entries();
    auto it = std::find_if(entries.begin(), entries.end(), [&](const keyring_entry& e) { return e.label == label; });
    if (it == entries.end()) throw tls_error("no entry labelled \"" + label + "\"");
    if (it->role == entry_role::pending) {
        if (request_record* record = log.find_pending_by_key(public_key_sha256(it->key.get()))) {
            record->state = request_state::cancelled;
            record->state_date = now_text();
        }
    }
    if (log.default_label == label) log.default_label.clear();
    entries.erase(it);
}

namespace {

struct export_content {
    const keyring_entry* entry;
    std::vector<const keyring_entry*> chain;   // intermediates, then the root
};

export_content content_for(const keyring& ring, const std::string& label, bool with_key) {
    const keyring_entry& entry = existing(ring, label);
    if (entry.role == entry_role::pending)
        throw tls_error("\"" + label + "\" is a pending request: it has no certificate yet");
    if (with_key && !entry.key) throw tls_error("\"" + label + "\" has no private key to export");
    export_content content{&entry, {}};
    if (entry.role == entry_role::root) return content;
    for (const X509* link : ring.chain_for(entry.certificate.get()))
        for (const auto& candidate : ring.entries())
            if (candidate.certificate.get() == link) content.chain.push_back(&candidate);
    if (const keyring_entry* root = ring.root_for(entry.certificate.get())) content.chain.push_back(root);
    return content;
}

}  // namespace

std::string export_pem(const keyring& ring, const std::string& label, bool with_key) {
    export_content content = content_for(ring, label, with_key);
    std::string pem = to_pem(content.entry->certificate.get());
    for (const auto* link : content.chain) pem += to_pem(link->certificate.get());
    if (with_key) pem += private_key_to_pem(content.entry->key.get());
    return pem;
}

std::string export_pkcs12(const keyring& ring, const std::string& label, bool with_key, std::string_view password,
                          pkcs12_protection protection) {
    export_content content = content_for(ring, label, with_key);
    keyring out;
    keyring_entry main;
    main.label = content.entry->label;
    main.certificate = up_ref(content.entry->certificate.get());
    if (with_key) main.key = up_ref(content.entry->key.get());
    main.role = with_key ? entry_role::server : classify_certificate(main.certificate.get());
    out.entries().push_back(std::move(main));
    for (const auto* link : content.chain) out.add_certificate(link->label, up_ref(link->certificate.get()));
    return out.serialize(password, protection);
}

nlohmann::json describe(const keyring& ring, const request_log& log, const keyring_entry& entry) {
    nlohmann::json item;
    item["label"] = entry.label;
    item["role"] = std::string(to_string(entry.role));
    item["default"] = entry.role == entry_role::server &&
                      (log.default_label == entry.label ||
                       (log.default_label.empty() && ring.with_role(entry_role::server).size() == 1));
    if (entry.certificate) {
        const X509* cert = entry.certificate.get();
        item["subject"] = subject_text(cert);
        item["names"] = subject_alt_names(cert);
        item["issuer"] = issuer_text(cert);
        item["not_before"] = time_text(X509_get0_notBefore(cert));
        item["not_after"] = time_text(X509_get0_notAfter(cert));
        item["days_left"] = days_left(cert);
        item["key_type"] = key_type(X509_get0_pubkey(cert));
        item["sha256"] = sha256_fingerprint(cert);
        item["sha1"] = sha1_fingerprint(cert);
        item["public_key_sha256"] = public_key_sha256(X509_get0_pubkey(cert));
    } else if (entry.key) {
        std::string fingerprint = public_key_sha256(entry.key.get());
        item["key_type"] = key_type(entry.key.get());
        item["public_key_sha256"] = fingerprint;
        for (const auto& record : log.requests)
            if (record.public_key_sha256 == fingerprint && record.state == request_state::pending) {
                item["subject"] = record.subject;
                item["names"] = record.names;
                item["requested"] = record.date;
                if (!record.renews.empty()) item["renews"] = record.renews;
            }
    }
    if (entry.role == entry_role::server)
        for (const auto& record : log.requests)
            if (record.state == request_state::pending && record.renews == entry.label && ring.find(record.label))
                item["renewal_pending"] = record.label;
    return item;
}

}  // namespace postern::tls

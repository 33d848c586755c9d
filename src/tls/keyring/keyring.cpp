#include "tls/keyring/keyring.hpp"

#include <algorithm>
#include <functional>

#include <openssl/err.h>
#include <openssl/pkcs7.h>

#include "tls/certificate_info.hpp"
#include "tls/keyring/atomic_file.hpp"

namespace postern::tls {

std::string_view to_string(entry_role role) {
    switch (role) {
    case entry_role::server: return "server";
    case entry_role::pending: return "pending";
    case entry_role::root: return "root";
    case entry_role::intermediate: return "intermediate";
    case entry_role::peer: return "peer";
    }
    return "unknown";
}

entry_role classify_certificate(const X509* cert) {
    if (is_ca(cert)) return is_self_signed(cert) ? entry_role::root : entry_role::intermediate;
    return entry_role::peer;
}

namespace {

/// NUL-terminated copy of the password for OpenSSL, wiped on the way out.
struct password_buffer {
    std::string text;
    explicit password_buffer(std::string_view p) : text(p) {}
    ~password_buffer() {
        if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
    }
    const char* c_str() const { return text.c_str(); }
    int size() const { return static_cast<int>(text.size()); }
};

struct safe_bags_deleter {
    void operator()(STACK_OF(PKCS12_SAFEBAG)* bags) const { sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free); }
};
using safe_bags_ptr = std::unique_ptr<STACK_OF(PKCS12_SAFEBAG), safe_bags_deleter>;
struct pkcs7_stack_deleter {
    void operator()(STACK_OF(PKCS7)* safes) const { sk_PKCS7_pop_free(safes, PKCS7_free); }
};
using pkcs7_stack_ptr = std::unique_ptr<STACK_OF(PKCS7), pkcs7_stack_deleter>;

struct bag_attributes {
    std::string label;        // friendlyName, "" when absent
    std::string local_key_id; // raw octets, "" when absent
};

bag_attributes attributes_of(PKCS12_SAFEBAG* bag) {
    bag_attributes attrs;
    if (char* name = PKCS12_get_friendlyname(bag)) {
        attrs.label = name;
        OPENSSL_free(name);
    }
    const ASN1_TYPE* id = PKCS12_SAFEBAG_get0_attr(bag, NID_localKeyID);
    if (id && id->type == V_ASN1_OCTET_STRING) {
        const ASN1_OCTET_STRING* octets = id->value.octet_string;
        attrs.local_key_id.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(octets)),
                                  static_cast<std::size_t>(ASN1_STRING_length(octets)));
    }
    return attrs;
}

struct found_key {
    bag_attributes attrs;
    evp_pkey_ptr key;
};
struct found_certificate {
    bag_attributes attrs;
    x509_ptr cert;
    bool paired = false;
};

class bag_walker {
public:
    bag_walker(const std::string& source, const char* password, int password_length)
        : source_(source), password_(password), password_length_(password_length) {}

    void walk(const STACK_OF(PKCS12_SAFEBAG)* bags) {
        for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); ++i) visit(sk_PKCS12_SAFEBAG_value(bags, i));
    }

    std::vector<found_key> keys;
    std::vector<found_certificate> certificates;

private:
    void visit(PKCS12_SAFEBAG* bag) {
        switch (PKCS12_SAFEBAG_get_nid(bag)) {
        case NID_keyBag: {
            evp_pkey_ptr key(EVP_PKCS82PKEY(PKCS12_SAFEBAG_get0_p8inf(bag)));
            if (!key) throw tls_error(source_ + ": unreadable private key: " + openssl_errors());
            keys.push_back({attributes_of(bag), std::move(key)});
            break;
        }
        case NID_pkcs8ShroudedKeyBag: {
            pkcs8_ptr p8(PKCS12_decrypt_skey_ex(bag, password_, password_length_, nullptr, nullptr));
            if (!p8)
                throw tls_error(source_ + ": cannot decrypt a private key (" + openssl_errors() + ")");
            evp_pkey_ptr key(EVP_PKCS82PKEY(p8.get()));
            if (!key) throw tls_error(source_ + ": unreadable private key: " + openssl_errors());
            keys.push_back({attributes_of(bag), std::move(key)});
            break;
        }
        case NID_certBag: {
            if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate) break;   // e.g. SDSI certificates
            x509_ptr cert(PKCS12_SAFEBAG_get1_cert(bag));
            if (!cert) throw tls_error(source_ + ": unreadable certificate: " + openssl_errors());
            certificates.push_back({attributes_of(bag), std::move(cert)});
            break;
        }
        case NID_safeContentsBag:
            walk(PKCS12_SAFEBAG_get0_safes(bag));
            break;
        default:   // CRL and secret bags carry nothing a key ring needs
            break;
        }
    }

    const std::string& source_;
    const char* password_;
    int password_length_;
};

/// localKeyID we write: SHA-1 of the DER public key, the same for a key and its certificate
/// whenever they are written, so pairing survives any rewrite.
std::string local_key_id_for(const EVP_PKEY* key) {
    unsigned char* der = nullptr;
    int size = i2d_PUBKEY(key, &der);
    if (size <= 0) throw tls_error("cannot encode a public key: " + openssl_errors());
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_size = 0;
    EVP_Digest(der, static_cast<std::size_t>(size), md, &md_size, EVP_sha1(), nullptr);
    OPENSSL_free(der);
    return std::string(reinterpret_cast<char*>(md), md_size);
}

std::string fallback_label(const X509* cert, const char* otherwise) {
    if (cert) {
        std::string cn = common_name(X509_get_subject_name(cert));
        if (!cn.empty()) return cn;
    }
    return otherwise;
}

}  // namespace

keyring keyring::read(const std::filesystem::path& file, std::string_view password) {
    std::string der = read_file(file);
    return parse(der, password, file.string());
}

keyring keyring::parse(std::string_view der, std::string_view password, const std::string& source) {
    load_providers();
    ERR_clear_error();
    auto* cursor = reinterpret_cast<const unsigned char*>(der.data());
    pkcs12_ptr p12(d2i_PKCS12(nullptr, &cursor, static_cast<long>(der.size())));
    if (!p12) throw tls_error(source + ": not a PKCS#12 file (" + openssl_errors() + ")");

    password_buffer pass(password);
    const char* pw = pass.c_str();
    int pw_length = pass.size();
    if (PKCS12_mac_present(p12.get())) {
        if (!PKCS12_verify_mac(p12.get(), pw, pw_length)) {
            // An empty password may have been encoded as "no password" (RFC 7292 leaves it open).
            if (password.empty() && PKCS12_verify_mac(p12.get(), nullptr, 0)) {
                pw = nullptr;
            } else {
                ERR_clear_error();
                throw tls_error(source + ": wrong password, or the file is damaged (the PKCS#12 MAC does not verify)");
            }
        }
    }

    pkcs7_stack_ptr safes(PKCS12_unpack_authsafes(p12.get()));
    if (!safes) throw tls_error(source + ": damaged PKCS#12 content: " + openssl_errors());
    bag_walker walker(source, pw, pw_length);
    for (int i = 0; i < sk_PKCS7_num(safes.get()); ++i) {
        PKCS7* safe = sk_PKCS7_value(safes.get(), i);
        safe_bags_ptr bags;
        switch (OBJ_obj2nid(safe->type)) {
        case NID_pkcs7_data:
            bags.reset(PKCS12_unpack_p7data(safe));
            break;
        case NID_pkcs7_encrypted:
            bags.reset(PKCS12_unpack_p7encdata(safe, pw, pw_length));
            if (!bags)
                throw tls_error(source + ": cannot decrypt the certificates (" + openssl_errors() +
                                "); legacy RC2/3DES files need OpenSSL's legacy provider");
            break;
        default:
            throw tls_error(source + ": public-key protected PKCS#12 content is not supported");
        }
        if (!bags) throw tls_error(source + ": damaged PKCS#12 content: " + openssl_errors());
        walker.walk(bags.get());
    }

    keyring ring;
    auto add = [&](std::string label, entry_role role, x509_ptr cert, evp_pkey_ptr key) {
        keyring_entry entry;
        entry.label = ring.unique_label(std::move(label));
        entry.role = role;
        entry.certificate = std::move(cert);
        entry.key = std::move(key);
        ring.entries_.push_back(std::move(entry));
    };

    // Pair keys with certificates: by localKeyID first (the layout), then, for files made
    // by tools that leave it out, by equal public keys.
    for (auto& key : walker.keys) {
        found_certificate* match = nullptr;
        if (!key.attrs.local_key_id.empty()) {
            for (auto& cert : walker.certificates)
                if (!cert.paired && cert.attrs.local_key_id == key.attrs.local_key_id) {
                    match = &cert;
                    break;
                }
        }
        if (!match && key.attrs.local_key_id.empty()) {
            // Only keys without localKeyID: a pending key of ours must stay pending even when
            // a certificate with its public key sits in the ring as a pinned peer.
            for (auto& cert : walker.certificates)
                if (!cert.paired && cert.attrs.local_key_id.empty() && EVP_PKEY_eq(X509_get0_pubkey(cert.cert.get()), key.key.get()) == 1) {
                    match = &cert;
                    break;
                }
        }
        if (match) {
            match->paired = true;
            std::string label = !key.attrs.label.empty() ? key.attrs.label
                              : !match->attrs.label.empty() ? match->attrs.label
                              : fallback_label(match->cert.get(), "server");
            add(std::move(label), entry_role::server, std::move(match->cert), std::move(key.key));
        } else {
            std::string label = key.attrs.label.empty() ? std::string("request") : key.attrs.label;
            add(std::move(label), entry_role::pending, nullptr, std::move(key.key));
        }
    }
    for (auto& cert : walker.certificates) {
        if (cert.paired) continue;
        entry_role role = classify_certificate(cert.cert.get());
        std::string label = !cert.attrs.label.empty() ? cert.attrs.label : fallback_label(cert.cert.get(), "certificate");
        add(std::move(label), role, std::move(cert.cert), nullptr);
    }
    ERR_clear_error();
    return ring;
}

std::string keyring::serialize(std::string_view password, pkcs12_protection protection) const {
    load_providers();
    ERR_clear_error();
    password_buffer pass(password);
    const bool legacy = protection == pkcs12_protection::legacy;
    // RFC 9579-style modern protection: PBES2 with PBKDF2 (HMAC-SHA256 in OpenSSL 3) and
    // AES-256-CBC; legacy is what Windows before Server 2019 can import.
    const int cipher_nid = legacy ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : NID_aes_256_cbc;
    const EVP_MD* mac_md = legacy ? EVP_sha1() : EVP_sha256();
    const int iterations = PKCS12_DEFAULT_ITER;

    safe_bags_ptr cert_bags_owner, key_bags_owner;
    STACK_OF(PKCS12_SAFEBAG)* cert_bags = nullptr;
    STACK_OF(PKCS12_SAFEBAG)* key_bags = nullptr;
    auto fail = [&](const std::string& what) -> tls_error {
        return tls_error("cannot write the key ring: " + what + ": " + openssl_errors());
    };
    for (const auto& entry : entries_) {
        std::string id;
        if (entry.key) id = local_key_id_for(entry.key.get());
        if (entry.certificate) {
            X509* cert = entry.certificate.get();
            // PKCS12_add_cert copies aux alias/keyid into the bag; ours come from the entry.
            X509_alias_set1(cert, nullptr, 0);
            X509_keyid_set1(cert, nullptr, 0);
            PKCS12_SAFEBAG* bag = PKCS12_add_cert(&cert_bags, cert);
            cert_bags_owner.release();
            cert_bags_owner.reset(cert_bags);
            if (!bag || !PKCS12_add_friendlyname_utf8(bag, entry.label.c_str(), static_cast<int>(entry.label.size())))
                throw fail("certificate " + entry.label);
            if (!id.empty() && !PKCS12_add_localkeyid(bag, reinterpret_cast<unsigned char*>(id.data()), static_cast<int>(id.size())))
                throw fail("certificate " + entry.label);
        }
        if (entry.key) {
            PKCS12_SAFEBAG* bag = PKCS12_add_key_ex(&key_bags, entry.key.get(), 0, iterations, cipher_nid,
                                                    pass.c_str(), nullptr, nullptr);
            key_bags_owner.release();
            key_bags_owner.reset(key_bags);
            if (!bag || !PKCS12_add_friendlyname_utf8(bag, entry.label.c_str(), static_cast<int>(entry.label.size())) ||
                !PKCS12_add_localkeyid(bag, reinterpret_cast<unsigned char*>(id.data()), static_cast<int>(id.size())))
                throw fail("key " + entry.label);
        }
    }

    STACK_OF(PKCS7)* safes = nullptr;
    pkcs7_stack_ptr safes_owner;
    if (cert_bags) {
        if (!PKCS12_add_safe_ex(&safes, cert_bags, cipher_nid, iterations, pass.c_str(), nullptr, nullptr))
            throw fail("certificates");
        safes_owner.release();
        safes_owner.reset(safes);
    }
    if (key_bags) {
        // The keys are already shrouded one by one; their safe needs no second layer.
        if (!PKCS12_add_safe_ex(&safes, key_bags, -1, 0, nullptr, nullptr, nullptr)) throw fail("keys");
        safes_owner.release();
        safes_owner.reset(safes);
    }
    if (!safes) {
        safes = sk_PKCS7_new_null();
        safes_owner.reset(safes);
    }
    pkcs12_ptr p12(PKCS12_add_safes_ex(safes, 0, nullptr, nullptr));
    if (!p12) throw fail("PKCS#12 structure");
    if (!PKCS12_set_mac(p12.get(), pass.c_str(), pass.size(), nullptr, 0, iterations, mac_md)) throw fail("MAC");
    unsigned char* der = nullptr;
    int size = i2d_PKCS12(p12.get(), &der);
    if (size <= 0) throw fail("encoding");
    std::string bytes(reinterpret_cast<char*>(der), static_cast<std::size_t>(size));
    OPENSSL_free(der);
    return bytes;
}

void keyring::write(const std::filesystem::path& file, std::string_view password, pkcs12_protection protection) const {
    write_file_atomically(file, serialize(password, protection), 0600);
}

keyring_entry* keyring::find(std::string_view label) {
    for (auto& entry : entries_)
        if (entry.label == label) return &entry;
    return nullptr;
}

const keyring_entry* keyring::find(std::string_view label) const {
    return const_cast<keyring*>(this)->find(label);
}

std::vector<const keyring_entry*> keyring::with_role(entry_role role) const {
    std::vector<const keyring_entry*> found;
    for (const auto& entry : entries_)
        if (entry.role == role) found.push_back(&entry);
    return found;
}

std::string keyring::unique_label(std::string base) const {
    if (base.empty()) base = "certificate";
    if (!find(base)) return base;
    for (int n = 2;; ++n) {
        std::string candidate = base + "-" + std::to_string(n);
        if (!find(candidate)) return candidate;
    }
}

keyring_entry& keyring::add_certificate(std::string label, x509_ptr cert) {
    keyring_entry entry;
    entry.label = std::move(label);
    entry.role = classify_certificate(cert.get());
    entry.certificate = std::move(cert);
    entries_.push_back(std::move(entry));
    return entries_.back();
}

keyring_entry& keyring::add_pending_key(std::string label, evp_pkey_ptr key) {
    keyring_entry entry;
    entry.label = std::move(label);
    entry.role = entry_role::pending;
    entry.key = std::move(key);
    entries_.push_back(std::move(entry));
    return entries_.back();
}

namespace {

const keyring_entry* issuer_in(const std::vector<keyring_entry>& entries, const X509* cert) {
    for (const auto& entry : entries) {
        if (entry.role != entry_role::root && entry.role != entry_role::intermediate) continue;
        if (entry.certificate.get() == cert) continue;
        if (X509_check_issued(entry.certificate.get(), const_cast<X509*>(cert)) == X509_V_OK) return &entry;
    }
    return nullptr;
}

}  // namespace

std::vector<const X509*> keyring::chain_for(const X509* leaf) const {
    std::vector<const X509*> chain;
    const X509* current = leaf;
    // A chain longer than the ring itself would be a loop.
    for (std::size_t step = 0; step < entries_.size(); ++step) {
        if (is_self_signed(current)) break;
        const keyring_entry* issuer = issuer_in(entries_, current);
        if (!issuer || issuer->role == entry_role::root) break;
        chain.push_back(issuer->certificate.get());
        current = issuer->certificate.get();
    }
    return chain;
}

const keyring_entry* keyring::root_for(const X509* leaf) const {
    const X509* current = leaf;
    for (std::size_t step = 0; step <= entries_.size(); ++step) {
        const keyring_entry* issuer = issuer_in(entries_, current);
        if (!issuer) return nullptr;
        if (issuer->role == entry_role::root) return issuer;
        current = issuer->certificate.get();
    }
    return nullptr;
}

const keyring_entry& select_server_entry(const keyring& ring, std::string_view label,
                                         std::string_view default_label,
                                         const std::filesystem::path& file) {
    auto servers = ring.with_role(entry_role::server);
    if (!label.empty()) {
        const keyring_entry* entry = ring.find(label);
        if (!entry)
            throw tls_error(file.string() + ": no entry labelled \"" + std::string(label) + "\"");
        if (entry->role != entry_role::server)
            throw tls_error(file.string() + ": \"" + std::string(label) + "\" is a " +
                            std::string(to_string(entry->role)) + " entry, not a key and certificate pair");
        return *entry;
    }
    if (!default_label.empty())
        for (const auto* entry : servers)
            if (entry->label == default_label) return *entry;
    if (servers.size() == 1) return *servers.front();
    if (servers.empty()) {
        std::string pending;
        for (const auto* entry : ring.with_role(entry_role::pending))
            pending += (pending.empty() ? "" : ", ") + entry->label;
        throw tls_error(file.string() + ": no key and certificate pair to serve with" +
                        (pending.empty() ? std::string() : " (pending requests: " + pending +
                                                               "; install the signed certificate)"));
    }
    std::string labels;
    for (const auto* entry : servers) labels += (labels.empty() ? "" : ", ") + entry->label;
    throw tls_error(file.string() + ": several server certificates (" + labels +
                    "): set [tls] certificate or run `postern keyring default LABEL`");
}

}  // namespace postern::tls

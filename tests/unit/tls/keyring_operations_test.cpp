#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tls/certificate_info.hpp"
#include "tls/expiry.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/keyring/keyring_operations.hpp"
#include "tls/lab_ca/lab_ca.hpp"
#include "unit/tls/test_pki.hpp"

namespace postern::tls {
namespace {

using test::lab_pki;
using test::temp_dir;

std::vector<x509_ptr> just(x509_ptr cert) {
    std::vector<x509_ptr> v;
    v.push_back(std::move(cert));
    return v;
}

/// A key ring with one pending request and the PKI that will sign it.
struct request_fixture {
    lab_pki pki;
    keyring ring;
    request_log log;
    request_result request;
    x509_req_ptr csr;

    request_fixture() {
        request = add_request(ring, log, {.subject = "CN=mx1.example.test,O=Example",
                                          .names = {"DNS:mx1.example.test", "IP:192.0.2.25"},
                                          .key_type = "ecdsa-p256"});
        csr = request_from_text(request.csr_pem, "csr");
    }
    /// A certificate for the request's key, signed by the lab root.
    x509_ptr signed_certificate(test::cert_options o) {
        o.cn = o.cn.empty() ? "mx1.example.test" : o.cn;
        return test::make_cert(o, X509_REQ_get0_pubkey(csr.get()), pki.ca.get(), pki.ca_key.get());
    }
};

TEST(distinguished_name, both_spellings_print_back_as_written) {
    EXPECT_EQ(name_text(parse_distinguished_name("CN=mx1.example.test, O=Example\\, Inc., C=DE").get()),
              "CN=mx1.example.test,O=Example\\, Inc.,C=DE");
    EXPECT_EQ(name_text(parse_distinguished_name("/C=DE/O=Example/CN=mx1").get()), "CN=mx1,O=Example,C=DE");
    EXPECT_THROW(parse_distinguished_name("CN"), tls_error);
    EXPECT_THROW(parse_distinguished_name("XYZ=1"), tls_error);
    EXPECT_THROW(parse_distinguished_name(""), tls_error);
}

TEST(subject_alt_names, dns_and_ip_only_and_checked) {
    EXPECT_EQ(parse_subject_alt_names("DNS:MX1.Example.test, ip:192.0.2.1,IP:2001:db8::1"),
              (std::vector<std::string>{"DNS:mx1.example.test", "IP:192.0.2.1", "IP:2001:db8::1"}));
    EXPECT_EQ(parse_subject_alt_names("DNS:*.example.test"), std::vector<std::string>{"DNS:*.example.test"});
    EXPECT_THROW(parse_subject_alt_names("DNS:bad name"), tls_error);
    EXPECT_THROW(parse_subject_alt_names("IP:300.1.1.1"), tls_error);
    EXPECT_THROW(parse_subject_alt_names("email:a@b"), tls_error);
    EXPECT_THROW(parse_subject_alt_names("DNS:a.*.example"), tls_error);
}

TEST(request, every_key_type_makes_a_verifiable_csr) {
    for (auto type : key_types) {
        keyring ring;
        request_log log;
        auto result = add_request(ring, log, {.subject = "CN=mx.example.test", .names = {}, .key_type = std::string(type)});
        auto csr = request_from_text(result.csr_pem, "csr");   // verifies the self-signature
        EXPECT_EQ(key_type(X509_REQ_get0_pubkey(csr.get())), type);
        EXPECT_EQ(requested_names(csr.get()), std::vector<std::string>{"DNS:mx.example.test"});
        ASSERT_EQ(log.requests.size(), 1u);
        EXPECT_EQ(log.requests[0].key_type, type);
        EXPECT_EQ(ring.find("mx.example.test")->role, entry_role::pending);
    }
    keyring ring;
    request_log log;
    EXPECT_THROW(add_request(ring, log, {.subject = "CN=x", .names = {}, .key_type = "dsa-1024"}), tls_error);
}

TEST(request, is_logged_with_its_public_key_fingerprint) {
    request_fixture f;
    ASSERT_EQ(f.log.requests.size(), 1u);
    const auto& record = f.log.requests[0];
    EXPECT_EQ(record.label, "mx1.example.test");
    EXPECT_EQ(record.subject, "CN=mx1.example.test,O=Example");
    EXPECT_EQ(record.names, (std::vector<std::string>{"DNS:mx1.example.test", "IP:192.0.2.25"}));
    EXPECT_EQ(record.public_key_sha256, public_key_sha256(f.ring.find("mx1.example.test")->key.get()));
    EXPECT_EQ(record.state, request_state::pending);
    // A second request with the same CN gets its own label.
    auto second = add_request(f.ring, f.log, {.subject = "CN=mx1.example.test"});
    EXPECT_EQ(second.label, "mx1.example.test-2");
}

TEST(install, refused_when_no_request_matches) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    try {
        install_certificate(f.ring, f.log, just(up_ref(f.pki.server.get())), "other.pem");
        FAIL();
    } catch (const keyring_refusal& e) {
        EXPECT_NE(std::string(e.what()).find("no pending request matches"), std::string::npos) << e.what();
    }
}

TEST(install, refused_when_expired_or_not_yet_valid) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    try {
        install_certificate(f.ring, f.log, just(f.signed_certificate({.not_before_offset = -86400 * 10, .not_after_offset = -86400})), "c.pem");
        FAIL();
    } catch (const keyring_refusal& e) {
        EXPECT_NE(std::string(e.what()).find("expired on"), std::string::npos) << e.what();
    }
    try {
        install_certificate(f.ring, f.log, just(f.signed_certificate({.not_before_offset = 86400})), "c.pem");
        FAIL();
    } catch (const keyring_refusal& e) {
        EXPECT_NE(std::string(e.what()).find("not valid before"), std::string::npos) << e.what();
    }
}

TEST(install, refused_until_the_root_is_trusted) {
    request_fixture f;
    auto cert = f.signed_certificate({});
    try {
        install_certificate(f.ring, f.log, just(up_ref(cert.get())), "c.pem");
        FAIL();
    } catch (const keyring_refusal& e) {
        EXPECT_NE(std::string(e.what()).find("does not chain to a trusted root"), std::string::npos) << e.what();
    }
    // A root inside the installed file does not count: only `trust` makes a root trusted.
    std::vector<x509_ptr> with_root;
    with_root.push_back(up_ref(cert.get()));
    with_root.push_back(up_ref(f.pki.ca.get()));
    EXPECT_THROW(install_certificate(f.ring, f.log, std::move(with_root), "c.pem"), keyring_refusal);
}

TEST(install, refused_without_server_auth) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    for (const char* eku : {"clientAuth", ""}) {
        try {
            install_certificate(f.ring, f.log, just(f.signed_certificate({.eku = eku})), "c.pem");
            FAIL() << "EKU \"" << eku << "\" was accepted";
        } catch (const keyring_refusal& e) {
            EXPECT_NE(std::string(e.what()).find("serverAuth"), std::string::npos) << e.what();
        }
    }
    EXPECT_EQ(f.ring.find("mx1.example.test")->role, entry_role::pending);
}

TEST(install, matches_by_public_key_and_adds_the_intermediate) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    auto issuing_key = test::make_ec_key();
    auto issuing = f.pki.issue({.cn = "Issuing CA", .ca = true}, issuing_key.get());
    auto leaf = test::make_cert({.cn = "mx1.example.test", .sans = {"DNS:mx1.example.test"}},
                                X509_REQ_get0_pubkey(f.csr.get()), issuing.get(), issuing_key.get());
    std::vector<x509_ptr> file;
    file.push_back(up_ref(issuing.get()));   // order in the file does not matter
    file.push_back(up_ref(leaf.get()));
    EXPECT_EQ(install_certificate(f.ring, f.log, std::move(file), "c.pem"), "mx1.example.test");
    EXPECT_EQ(f.ring.find("mx1.example.test")->role, entry_role::server);
    ASSERT_NE(f.ring.find("Issuing CA"), nullptr);
    EXPECT_EQ(f.ring.find("Issuing CA")->role, entry_role::intermediate);
    EXPECT_EQ(f.log.requests[0].state, request_state::installed);
    // Installing it again is refused with the reason.
    try {
        install_certificate(f.ring, f.log, just(up_ref(leaf.get())), "c.pem");
        FAIL();
    } catch (const keyring_refusal& e) {
        EXPECT_NE(std::string(e.what()).find("already installed"), std::string::npos) << e.what();
    }
    EXPECT_EQ(export_pem(f.ring, "mx1.example.test", false), to_pem(leaf.get()) + to_pem(issuing.get()) + to_pem(f.pki.ca.get()));
}

TEST(trust, refuses_a_non_ca_certificate_unless_pinned) {
    lab_pki pki;
    keyring ring;
    EXPECT_THROW(trust_certificates(ring, just(up_ref(pki.server.get())), false, "", "leaf.pem"), keyring_refusal);
    EXPECT_TRUE(ring.entries().empty());
    auto added = trust_certificates(ring, just(up_ref(pki.server.get())), true, "partner", "leaf.pem");
    EXPECT_EQ(added, std::vector<std::string>{"partner (peer)"});
    added = trust_certificates(ring, just(up_ref(pki.ca.get())), false, "", "ca.pem");
    EXPECT_EQ(added, std::vector<std::string>{"Test Root CA (root)"});
    added = trust_certificates(ring, just(up_ref(pki.ca.get())), false, "", "ca.pem");
    EXPECT_EQ(added, std::vector<std::string>{"Test Root CA (already in the key ring)"});
}

TEST(edit, label_default_remove_and_cancel) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    install_certificate(f.ring, f.log, just(f.signed_certificate({})), "c.pem");
    add_request(f.ring, f.log, {.subject = "CN=next.example.test"});

    EXPECT_THROW(set_default(f.ring, f.log, "next.example.test"), tls_error);   // pending
    EXPECT_THROW(set_default(f.ring, f.log, "Test Root CA"), tls_error);
    set_default(f.ring, f.log, "mx1.example.test");
    EXPECT_EQ(f.log.default_label, "mx1.example.test");

    rename_entry(f.ring, f.log, "mx1.example.test", "mx1");
    EXPECT_EQ(f.log.default_label, "mx1");
    EXPECT_EQ(f.log.requests[0].label, "mx1");
    EXPECT_THROW(rename_entry(f.ring, f.log, "mx1", "Test Root CA"), tls_error);
    EXPECT_THROW(rename_entry(f.ring, f.log, "nope", "x"), tls_error);

    remove_entry(f.ring, f.log, "next.example.test");
    EXPECT_EQ(f.log.requests[1].state, request_state::cancelled);
    remove_entry(f.ring, f.log, "mx1");
    EXPECT_EQ(f.log.default_label, "");
    EXPECT_EQ(f.ring.entries().size(), 1u);
}

TEST(export, pkcs12_with_and_without_key_in_both_protections) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    install_certificate(f.ring, f.log, just(f.signed_certificate({})), "c.pem");
    for (auto protection : {pkcs12_protection::modern, pkcs12_protection::legacy}) {
        keyring with_key = keyring::parse(export_pkcs12(f.ring, "mx1.example.test", true, "pw", protection), "pw", "x");
        EXPECT_EQ(with_key.find("mx1.example.test")->role, entry_role::server);
        EXPECT_EQ(with_key.find("Test Root CA")->role, entry_role::root);
        keyring without = keyring::parse(export_pkcs12(f.ring, "mx1.example.test", false, "pw", protection), "pw", "x");
        EXPECT_EQ(without.find("mx1.example.test")->key, nullptr);
    }
    temp_dir dir;
    test::write_text(dir / "legacy.p12", export_pkcs12(f.ring, "mx1.example.test", true, "pw", pkcs12_protection::legacy));
    EXPECT_TRUE(test::run("openssl pkcs12 -legacy -info -nokeys -passin pass:pw -in " + (dir / "legacy.p12").string() +
                          " 2>&1 | grep -q 'pbeWithSHA1And3-KeyTripleDES-CBC'"));
    std::string pem = export_pem(f.ring, "mx1.example.test", true);
    EXPECT_NE(pem.find("BEGIN PRIVATE KEY"), std::string::npos);
    EXPECT_THROW(export_pem(f.ring, "Test Root CA", true), tls_error);
    add_request(f.ring, f.log, {.subject = "CN=later.example.test"});
    EXPECT_THROW(export_pem(f.ring, "later.example.test", false), tls_error);
}

TEST(describe, lists_what_an_administrator_checks) {
    request_fixture f;
    trust_certificates(f.ring, just(up_ref(f.pki.ca.get())), false, "", "ca.pem");
    auto json_pending = describe(f.ring, f.log, *f.ring.find("mx1.example.test"));
    EXPECT_EQ(json_pending["role"], "pending");
    EXPECT_EQ(json_pending["subject"], "CN=mx1.example.test,O=Example");
    install_certificate(f.ring, f.log, just(f.signed_certificate({.sans = {"DNS:mx1.example.test"}})), "c.pem");
    auto item = describe(f.ring, f.log, *f.ring.find("mx1.example.test"));
    EXPECT_EQ(item["role"], "server");
    EXPECT_EQ(item["default"], true);
    EXPECT_EQ(item["issuer"], "CN=Test Root CA");
    EXPECT_EQ(item["key_type"], "ecdsa-p256");
    EXPECT_EQ(item["names"], nlohmann::json::array({"DNS:mx1.example.test"}));
    EXPECT_EQ(item["sha256"].get<std::string>().size(), 64u);
    EXPECT_EQ(item["sha1"].get<std::string>().size(), 40u);
    EXPECT_GE(item["days_left"].get<int>(), 364);
    EXPECT_EQ(describe(f.ring, f.log, *f.ring.find("Test Root CA"))["role"], "root");
}

TEST(lab_ca, root_and_leaf_follow_the_contract) {
    temp_dir dir;
    lab_ca ca = lab_ca::init(dir / "ca", "CN=Lab Root,O=Postern Tests");
    struct stat st {};
    ASSERT_EQ(::stat((dir / "ca" / "ca.key").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_THROW(lab_ca::init(dir / "ca", "CN=again"), tls_error);
    const X509* root = ca.certificate();
    EXPECT_TRUE(is_ca(root));
    EXPECT_TRUE(is_self_signed(root));
    int critical = 0;
    auto* constraints = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(root, NID_basic_constraints, &critical, nullptr));
    ASSERT_NE(constraints, nullptr);
    BASIC_CONSTRAINTS_free(constraints);
    EXPECT_EQ(critical, 1);
    EXPECT_TRUE(X509_get_key_usage(const_cast<X509*>(root)) & KU_KEY_CERT_SIGN);

    lab_ca reopened = lab_ca::open(dir / "ca");
    keyring ring;
    request_log log;
    auto request = add_request(ring, log, {.subject = "CN=mx1.example.test", .names = {"DNS:mx1.example.test", "IP:127.0.0.1"}, .key_type = "rsa-2048"});
    auto csr = request_from_text(request.csr_pem, "csr");
    x509_ptr leaf = reopened.sign(csr.get(), 30);
    EXPECT_EQ(subject_alt_names(leaf.get()), (std::vector<std::string>{"DNS:mx1.example.test", "IP:127.0.0.1"}));
    EXPECT_FALSE(is_ca(leaf.get()));
    EXPECT_TRUE(has_server_auth(leaf.get()));
    EXPECT_TRUE(X509_get_extended_key_usage(leaf.get()) & XKU_SSL_CLIENT);
    EXPECT_NE(X509_get0_subject_key_id(leaf.get()), nullptr);
    EXPECT_NE(X509_get0_authority_key_id(leaf.get()), nullptr);
    EXPECT_GE(days_left(leaf.get()), 29);
    EXPECT_EQ(X509_check_issued(const_cast<X509*>(root), leaf.get()), X509_V_OK);
    x509_ptr second = reopened.sign(csr.get(), 30);
    EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf.get()), X509_get0_serialNumber(second.get())), 0);

    // The whole lifecycle with the lab CA: trust, then install.
    trust_certificates(ring, just(up_ref(const_cast<X509*>(root))), false, "", "ca.pem");
    EXPECT_EQ(install_certificate(ring, log, just(std::move(leaf)), "mx1.pem"), "mx1.example.test");

    ::chmod((dir / "ca" / "ca.key").c_str(), 0640);
    EXPECT_THROW(lab_ca::open(dir / "ca"), tls_error);
}

TEST(lab_ca, refuses_a_request_without_names) {
    temp_dir dir;
    lab_ca ca = lab_ca::init(dir / "ca", default_lab_ca_subject);
    auto key = generate_key("ecdsa-p256");
    auto csr = make_request(key.get(), parse_distinguished_name("CN=x").get(), {});
    EXPECT_THROW(ca.sign(csr.get(), 30), tls_error);
    EXPECT_THROW(ca.sign(csr.get(), 0), tls_error);
}

TEST(expiry, warns_within_thirty_days_soonest_first) {
    lab_pki pki;
    keyring ring;
    ring.add_certificate("root", up_ref(pki.ca.get()));   // a year left: no warning
    auto k1 = test::make_ec_key();
    ring.entries().push_back({"soon", entry_role::server, pki.issue({.cn = "soon", .not_after_offset = 86400L * 10 + 60}, k1.get()), std::move(k1)});
    auto k2 = test::make_ec_key();
    ring.entries().push_back({"gone", entry_role::server, pki.issue({.cn = "gone", .not_before_offset = -86400L * 9, .not_after_offset = -86400L * 2 - 60}, k2.get()), std::move(k2)});
    auto warnings = expiring_certificates(ring);
    ASSERT_EQ(warnings.size(), 2u);
    EXPECT_EQ(warnings[0].label, "gone");
    EXPECT_EQ(warnings[0].days_left, -2);
    EXPECT_NE(warnings[0].to_string().find("expired 2 day(s) ago"), std::string::npos) << warnings[0].to_string();
    EXPECT_EQ(warnings[1].label, "soon");
    EXPECT_NE(warnings[1].to_string().find("expires in 10 day(s)"), std::string::npos) << warnings[1].to_string();

    temp_dir dir;
    ring.write(dir / "k.p12", "pw");
    test::write_text(dir / "k.sth", "pw\n");
    config::configuration cfg;
    cfg.tls.keyring = dir / "k.p12";
    cfg.tls.stash = dir / "k.sth";
    auto lines = expiry_warnings(cfg);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].rfind((dir / "k.p12").string() + ": ", 0), 0u) << lines[0];
}

TEST(request_log, saved_0600_and_read_back) {
    temp_dir dir;
    request_log log;
    log.default_label = "mx1";
    log.requests.push_back({"mx1", "2025-01-01T00:00:00Z", "CN=mx1", {"DNS:mx1"}, "rsa-2048", "ab", request_state::installed, "2025-01-02T00:00:00Z"});
    log.save(dir / "k.p12");
    struct stat st {};
    ASSERT_EQ(::stat((dir / "k.p12.requests.json").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    request_log back = request_log::load(dir / "k.p12");
    EXPECT_EQ(back.default_label, "mx1");
    ASSERT_EQ(back.requests.size(), 1u);
    EXPECT_EQ(back.requests[0].state, request_state::installed);
    EXPECT_EQ(back.requests[0].names, std::vector<std::string>{"DNS:mx1"});
    test::write_text(dir / "bad.p12.requests.json", "{not json");
    EXPECT_THROW(request_log::load(dir / "bad.p12"), tls_error);
}

}  // namespace
}  // namespace postern::tls

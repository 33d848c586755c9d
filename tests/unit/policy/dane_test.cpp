// DANE (policy/dane.hpp): what TLSA answers demand of a host, and OpenSSL's DANE verifier
// as Postern arms it, in handshakes over a BIO pair against lab-CA certificates.
#include <unistd.h>

#include <filesystem>
#include <memory>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "policy/dane.hpp"
#include "tls/error.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/lab_ca/lab_ca.hpp"

namespace postern::policy {
namespace {

namespace fs = std::filesystem;
using kind = dane_requirement::kind;
using route::tlsa_answer;
using route::tlsa_record;

tlsa_record record(std::uint8_t usage, std::uint8_t selector, std::uint8_t matching, std::size_t length) {
    return {usage, selector, matching, std::vector<std::uint8_t>(length, 0xab)};
}

tlsa_answer secure_records(std::vector<tlsa_record> records) {
    tlsa_answer a;
    a.what = tlsa_answer::kind::records;
    a.status = route::dnssec::secure;
    a.records = std::move(records);
    return a;
}

TEST(dane, usable_records_are_dane_ta_and_dane_ee_with_sound_parameters) {
    EXPECT_TRUE(usable_for_smtp(record(3, 1, 1, 32)));
    EXPECT_TRUE(usable_for_smtp(record(2, 0, 2, 64)));
    EXPECT_TRUE(usable_for_smtp(record(3, 0, 0, 300)));
    EXPECT_FALSE(usable_for_smtp(record(1, 1, 1, 32)));   // PKIX-EE: not for SMTP (RFC 7672 §3.1.3)
    EXPECT_FALSE(usable_for_smtp(record(0, 1, 1, 32)));   // PKIX-TA
    EXPECT_FALSE(usable_for_smtp(record(3, 2, 1, 32)));   // unknown selector
    EXPECT_FALSE(usable_for_smtp(record(3, 1, 3, 32)));   // unknown matching type
    EXPECT_FALSE(usable_for_smtp(record(3, 1, 1, 31)));   // SHA2-256 of the wrong length
    EXPECT_FALSE(usable_for_smtp(record(3, 1, 0, 0)));
}

TEST(dane, what_a_tlsa_answer_demands) {
    const auto opportunistic = config::dane_mode::opportunistic;
    auto usable = secure_records({record(1, 1, 1, 32), record(3, 1, 1, 32)});
    auto d = dane_for_host(opportunistic, true, true, usable);
    EXPECT_EQ(d.what, kind::authenticate);
    ASSERT_EQ(d.records.size(), 1u);   // only the usable one goes to OpenSSL
    EXPECT_EQ(d.records[0].usage, 3);

    EXPECT_EQ(dane_for_host(opportunistic, true, true, secure_records({record(1, 1, 1, 32)})).what,
              kind::tls_unauthenticated);

    tlsa_answer bogus;
    bogus.what = tlsa_answer::kind::bogus;
    bogus.status = route::dnssec::bogus;
    bogus.reason = "DNSSEC-bogus TLSA answer";
    EXPECT_EQ(dane_for_host(opportunistic, true, true, bogus).what, kind::host_unusable);
    tlsa_answer failed;
    failed.what = tlsa_answer::kind::failed;
    EXPECT_EQ(dane_for_host(opportunistic, true, true, failed).what, kind::host_unusable);

    tlsa_answer none;
    none.what = tlsa_answer::kind::none;
    none.status = route::dnssec::secure;
    EXPECT_EQ(dane_for_host(opportunistic, true, true, none).what, kind::not_applicable);

    // Insecure anywhere along the way: the records could be forged, so they do not count.
    EXPECT_EQ(dane_for_host(opportunistic, false, true, usable).what, kind::not_applicable);
    EXPECT_EQ(dane_for_host(opportunistic, true, false, usable).what, kind::not_applicable);
    auto insecure = usable;
    insecure.status = route::dnssec::insecure;
    EXPECT_EQ(dane_for_host(opportunistic, true, true, insecure).what, kind::not_applicable);

    EXPECT_EQ(dane_for_host(config::dane_mode::off, true, true, usable).what, kind::not_applicable);
    EXPECT_EQ(dane_for_host(config::dane_mode::off, true, true, bogus).what, kind::not_applicable);

    // required: anything but authentication leaves the host unusable, with the reason.
    const auto required = config::dane_mode::required;
    EXPECT_EQ(dane_for_host(required, true, true, usable).what, kind::authenticate);
    auto unmet = dane_for_host(required, false, true, usable);
    EXPECT_EQ(unmet.what, kind::host_unusable);
    EXPECT_NE(unmet.reason.find("MX answer is not DNSSEC-secure"), std::string::npos) << unmet.reason;
    EXPECT_EQ(dane_for_host(required, true, true, none).what, kind::host_unusable);
    EXPECT_EQ(dane_for_host(required, true, true, secure_records({record(1, 1, 1, 32)})).what, kind::host_unusable);
}

/// SHA2-256 of a certificate's public key (selector 1) or of the whole certificate (0).
std::vector<std::uint8_t> digest(X509* cert, std::uint8_t selector) {
    unsigned char* der = nullptr;
    const int length = selector == 1 ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : i2d_X509(cert, &der);
    std::vector<std::uint8_t> out(32);
    unsigned int size = 0;
    EVP_Digest(der, static_cast<std::size_t>(length), out.data(), &size, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    return out;
}

class dane_handshake : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("postern-dane-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        ca_ = std::make_unique<tls::lab_ca>(tls::lab_ca::init(dir_ / "ca", "CN=DANE Test Root"));
    }
    static void TearDownTestSuite() {
        ca_.reset();
        fs::remove_all(dir_);
    }

    struct leaf {
        tls::x509_ptr cert;
        tls::evp_pkey_ptr key;
    };
    static leaf issue(const std::string& name) {
        leaf l;
        l.key = tls::generate_key("ecdsa-p256");
        auto subject = tls::parse_distinguished_name("CN=" + name);
        auto req = tls::make_request(l.key.get(), subject.get(), {"DNS:" + name});
        l.cert = ca_->sign(req.get(), 30);
        return l;
    }

    /// A handshake whose client trusts no root at all: only DANE can authenticate.
    /// Returns the verdict word, "" when the handshake failed or nothing authenticated.
    std::string handshake(const leaf& server, const std::string& mx_host, const std::vector<tlsa_record>& records) {
        tls::ssl_ctx_ptr client_ctx(SSL_CTX_new(TLS_client_method()));
        EXPECT_TRUE(enable_dane(client_ctx.get()));
        tls::ssl_ctx_ptr server_ctx(SSL_CTX_new(TLS_server_method()));
        SSL_CTX_use_certificate(server_ctx.get(), server.cert.get());
        SSL_CTX_use_PrivateKey(server_ctx.get(), server.key.get());
        // DANE-TA(2) matches the issuer: the server sends it in its chain, as RFC 7672 §3.1.2 asks.
        SSL_CTX_add1_chain_cert(server_ctx.get(), const_cast<X509*>(ca_->certificate()));
        tls::ssl_ptr client(SSL_new(client_ctx.get()));
        tls::ssl_ptr srv(SSL_new(server_ctx.get()));
        BIO *client_bio = nullptr, *server_bio = nullptr;
        BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
        SSL_set_bio(client.get(), client_bio, client_bio);
        SSL_set_bio(srv.get(), server_bio, server_bio);
        SSL_set_connect_state(client.get());
        SSL_set_accept_state(srv.get());
        const auto error = arm_dane(client.get(), mx_host, {"partner.test"}, records);
        EXPECT_EQ(error, "");
        bool client_done = false, server_done = false, failed = false;
        for (int round = 0; round < 20 && !(client_done && server_done) && !failed; ++round) {
            if (!client_done) {
                const int rc = SSL_do_handshake(client.get());
                client_done = rc == 1;
                failed = rc <= 0 && SSL_get_error(client.get(), rc) == SSL_ERROR_SSL;
            }
            if (!server_done && !failed) server_done = SSL_do_handshake(srv.get()) == 1;
        }
        if (!client_done) return "";
        return dane_verdict(client.get());
    }

    static inline fs::path dir_;
    static inline std::unique_ptr<tls::lab_ca> ca_;
};

TEST_F(dane_handshake, dane_ee_authenticates_the_key_whatever_the_name) {
    auto server = issue("some-other-name.test");   // DANE-EE ignores names (RFC 7672 §3.1.1)
    EXPECT_EQ(handshake(server, "mx.partner.test", {{3, 1, 1, digest(server.cert.get(), 1)}}), "dane-ee");
    EXPECT_EQ(handshake(server, "mx.partner.test", {{3, 0, 1, digest(server.cert.get(), 0)}}), "dane-ee");
}

TEST_F(dane_handshake, dane_ee_with_another_key_fails_the_handshake) {
    auto server = issue("mx.partner.test");
    auto other = issue("mx.partner.test");
    EXPECT_EQ(handshake(server, "mx.partner.test", {{3, 1, 1, digest(other.cert.get(), 1)}}), "");
}

TEST_F(dane_handshake, dane_ta_needs_the_issuer_and_a_reference_name) {
    const auto ta = tlsa_record{2, 1, 1, digest(const_cast<X509*>(ca_->certificate()), 1)};
    EXPECT_EQ(handshake(issue("mx.partner.test"), "mx.partner.test", {ta}), "dane-ta");
    EXPECT_EQ(handshake(issue("partner.test"), "mx.partner.test", {ta}), "dane-ta");   // the next-hop domain
    EXPECT_EQ(handshake(issue("mx.elsewhere.test"), "mx.partner.test", {ta}), "");     // no reference name
}

}  // namespace
}  // namespace postern::policy

// [[ldap_source]] and the recipients_ldap keys that name it (DESIGN §3).
#include <gtest/gtest.h>

#include <string>

#include "config/schema.hpp"

namespace postern::config {
namespace {

std::string with(std::string_view source, std::string_view domain_extra = "recipients_ldap = \"corp\"\n") {
    return std::string(R"([server]
hostname = "mx.example.test"
data_dir = "/srv/postern"
user = "postern"

[[receive_connector]]
name = "in"
bind = ["127.0.0.1:2525"]

[[send_connector]]
name = "out"
address_spaces = ["*"]

[[accepted_domain]]
name = "corp.test"
type = "authoritative"
)") + std::string(domain_extra) + "\n[[ldap_source]]\n" + std::string(source);
}

constexpr std::string_view good = R"toml(name = "corp"
uri = "ldap://dc1.corp.test"
ca_file = "corp-root.pem"
bind_dn = "cn=postern,ou=services,dc=corp,dc=test"
bind_password_file = "ldap.secret"
base = "dc=corp,dc=test"
filter = "(|(mail=%s)(proxyAddresses=smtp:%s))"
attributes = ["mail", "proxyAddresses"]
positive_ttl = "5m"
)toml";

std::string errors_of(const load_result& r) {
    std::string out;
    for (const auto& d : r.errors) out += d.to_string() + "\n";
    return out;
}

TEST(ldap_source, values_defaults_and_paths_beside_the_configuration) {
    auto r = load_string(with(good), "/etc/postern/postern.toml");
    ASSERT_TRUE(r.ok()) << errors_of(r);
    const auto& l = r.config->ldap_sources.at(0);
    EXPECT_EQ(l.uri, "ldap://dc1.corp.test");
    EXPECT_EQ(l.ca_file, "/etc/postern/corp-root.pem");
    EXPECT_EQ(l.bind_password_file, "/etc/postern/ldap.secret");
    EXPECT_EQ(l.positive_ttl, std::chrono::minutes(5));
    EXPECT_EQ(l.negative_ttl, std::chrono::minutes(1));
    EXPECT_EQ(l.max_stale, std::chrono::hours(4));
    EXPECT_EQ(l.timeout, std::chrono::seconds(5));
    EXPECT_EQ(l.connections, 2u);
    EXPECT_EQ(r.config->accepted_domains.at(0).recipients_ldap, "corp");
    EXPECT_EQ(find_ldap_source(*r.config, "corp"), &l);
    EXPECT_EQ(find_ldap_source(*r.config, "other"), nullptr);
}

TEST(ldap_source, mistakes_are_refused_with_their_key) {
    struct bad_case {
        std::string from, to, key, words;
    };
    const bad_case cases[] = {
        {"ldap://dc1.corp.test", "http://dc1.corp.test", "ldap_source[0].uri", "StartTLS"},
        {"ldap://dc1.corp.test", "ldap:///", "ldap_source[0].uri", "no single host"},
        {"(|(mail=%s)(proxyAddresses=smtp:%s))", "(mail=alice)", "ldap_source[0].filter", "no %s, %u or %d"},
        {"(|(mail=%s)(proxyAddresses=smtp:%s))", "mail=%s", "ldap_source[0].filter", "in parentheses"},
        {"(|(mail=%s)(proxyAddresses=smtp:%s))", "(|(mail=%s)", "ldap_source[0].filter", "without its ')'"},
        {"(|(mail=%s)(proxyAddresses=smtp:%s))", "(mail=%x)", "ldap_source[0].filter", "not a placeholder"},
        {"attributes = [\"mail\", \"proxyAddresses\"]", "attributes = []", "ldap_source[0].attributes", "at least one"},
        {"bind_password_file = \"ldap.secret\"\n", "", "ldap_source[0].bind_password_file", "needs bind_password_file"},
    };
    for (const auto& c : cases) {
        auto text = with(good);
        text.replace(text.find(c.from), c.from.size(), c.to);
        auto r = load_string(text, "test.toml");
        bool found = false;
        for (const auto& d : r.errors) found |= d.key == c.key && d.message.find(c.words) != std::string::npos;
        EXPECT_TRUE(found) << c.to << ":\n" << errors_of(r);
        EXPECT_FALSE(r.config);
    }
}

TEST(ldap_source, references_must_name_a_source_and_one_kind_of_list) {
    auto r = load_string(with(good, "recipients_ldap = \"nowhere\"\n"), "test.toml");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(errors_of(r).find("no [[ldap_source]] is called \"nowhere\""), std::string::npos) << errors_of(r);

    r = load_string(with(good, "recipients_ldap = \"corp\"\nrecipients = \"users.txt\"\n"), "test.toml", false);
    EXPECT_NE(errors_of(r).find("not both"), std::string::npos) << errors_of(r);

    // A send connector routed by a directory alone needs no address_spaces.
    auto text = with(good);
    text.replace(text.find("address_spaces = [\"*\"]"), 22, "recipients_ldap = \"corp\"");
    r = load_string(text, "test.toml");
    EXPECT_TRUE(r.ok()) << errors_of(r);
    EXPECT_EQ(r.config->send_connectors.at(0).recipients_ldap, "corp");
}

TEST(ldap_source, same_settings_ignores_only_the_attached_lookup) {
    ldap_source a;
    a.name = "corp";
    a.uri = "ldaps://dc1";
    ldap_source b = a;
    EXPECT_TRUE(a.same_settings(b));
    b.filter = "(uid=%u)";
    EXPECT_FALSE(a.same_settings(b));
}

}  // namespace
}  // namespace postern::config

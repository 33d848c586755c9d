// The directory room without a directory server: filters, attribute matching, and what a
// source answers while its server cannot be reached (tests/integration/test_directory.py
// has the real slapd).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "directory/ldap_client.hpp"
#include "directory/ldap_directory.hpp"

namespace postern::directory {
namespace {

TEST(ldap_filter, the_address_is_escaped_so_it_cannot_widen_the_search) {
    EXPECT_EQ(build_filter("(mail=%s)", "alice@corp.test"), "(mail=alice@corp.test)");
    EXPECT_EQ(build_filter("(|(mail=%s)(proxyAddresses=smtp:%s))", "bob@corp.test"),
              "(|(mail=bob@corp.test)(proxyAddresses=smtp:bob@corp.test))");
    EXPECT_EQ(build_filter("(&(uid=%u)(dc=%d))", "carol@corp.test"), "(&(uid=carol)(dc=corp.test))");
    EXPECT_EQ(build_filter("(mail=%s)", "*@corp.test"), "(mail=\\2A@corp.test)");
    EXPECT_EQ(build_filter("(mail=%s)", "x)(mail=*@corp.test"), "(mail=x\\29\\28mail=\\2A@corp.test)");
    EXPECT_EQ(build_filter("(mail=%s)", "a\\b@corp.test"), "(mail=a\\5Cb@corp.test)");
    EXPECT_EQ(build_filter("(description=100%%)(mail=%s)", "d@x.test"), "(description=100%)(mail=d@x.test)");
}

TEST(ldap_filter, attribute_values_name_the_address_without_regard_to_case_or_smtp_prefix) {
    EXPECT_TRUE(value_names_address("alice@corp.test", "alice@corp.test"));
    EXPECT_TRUE(value_names_address("Alice@Corp.Test", "alice@corp.test"));
    EXPECT_TRUE(value_names_address("SMTP:bob@corp.test", "bob@corp.test"));
    EXPECT_TRUE(value_names_address("smtp:Robert@corp.test", "robert@CORP.test"));
    EXPECT_FALSE(value_names_address("X400:c=US;a= ;p=Corp;s=Bob", "bob@corp.test"));
    EXPECT_FALSE(value_names_address("sip:bob@corp.test", "bob@corp.test"));
    EXPECT_FALSE(value_names_address("alice@corp.test.evil", "alice@corp.test"));
}

config::ldap_source unreachable() {
    config::ldap_source s;
    s.name = "down";
    s.uri = "ldap://127.0.0.1:1";   // nothing listens on port 1 of the loopback
    s.base = "dc=corp,dc=test";
    s.timeout = std::chrono::seconds(2);
    s.connections = 1;
    return s;
}

TEST(ldap_directory, an_unreachable_directory_answers_unavailable_and_is_not_asked_again_at_once) {
    ldap_directory d(unreachable());
    const auto first = d.ask_and_wait("alice@corp.test");
    EXPECT_EQ(first.verdict, config::lookup_verdict::unavailable);
    EXPECT_NE(first.detail.find("directory down cannot answer"), std::string::npos) << first.detail;
    EXPECT_NE(first.detail.find("StartTLS failed"), std::string::npos) << first.detail;
    // Within retry_after the source counts as down: answers come at once, without a search.
    const auto second = d.answer_at_hand("bob@corp.test");
    ASSERT_TRUE(second);
    EXPECT_EQ(second->verdict, config::lookup_verdict::unavailable);
    EXPECT_EQ(d.ask_and_wait("carol@corp.test").verdict, config::lookup_verdict::unavailable);
    const auto c = d.snapshot();
    EXPECT_EQ(c.searches, 1u);
    EXPECT_EQ(c.failures, 1u);
    EXPECT_TRUE(c.down);
    EXPECT_EQ(c.cached, 0u);   // failures are never cached as answers
}

TEST(ldap_directory, check_says_why_a_source_cannot_be_reached) {
    config::configuration cfg;
    cfg.ldap_sources.push_back(unreachable());
    const auto problems = unreachable_sources(cfg);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0].first, "down");
    EXPECT_NE(problems[0].second.find("ldap://127.0.0.1:1"), std::string::npos) << problems[0].second;
}

TEST(ldap_directory, a_reload_keeps_a_source_whose_settings_did_not_change) {
    config::configuration before;
    before.ldap_sources.push_back(unreachable());
    attach_directories(before);
    config::configuration after = before;
    after.ldap_sources[0].lookup.reset();
    attach_directories(after, &before);
    EXPECT_EQ(after.ldap_sources[0].lookup, before.ldap_sources[0].lookup);
    config::configuration changed = before;
    changed.ldap_sources[0].lookup.reset();
    changed.ldap_sources[0].filter = "(uid=%u)";
    attach_directories(changed, &before);
    EXPECT_NE(changed.ldap_sources[0].lookup, before.ldap_sources[0].lookup);
    stop_directories(changed);
    stop_directories(before);
}

}  // namespace
}  // namespace postern::directory

// Send connector choice by address space (DESIGN.md §3): exact, then longest "*.suffix", then "*".
#include <gtest/gtest.h>

#include "route/address_space.hpp"
#include "route/resolver.hpp"

namespace postern::route {
namespace {

config::send_connector connector(std::string name, std::vector<std::string> spaces) {
    config::send_connector c;
    c.name = std::move(name);
    c.address_spaces = std::move(spaces);
    return c;
}

std::string chosen(const config::configuration& cfg, const std::string& domain) {
    const auto* c = choose_send_connector(cfg, domain);
    return c ? c->name : "(none)";
}

TEST(address_space, exact_name_matches_only_itself) {
    EXPECT_TRUE(address_space_rank("partner.test", "partner.test"));
    EXPECT_FALSE(address_space_rank("partner.test", "a.partner.test"));
    EXPECT_FALSE(address_space_rank("partner.test", "otherpartner.test"));
}

TEST(address_space, wildcard_matches_subdomains_but_not_the_domain_itself) {
    EXPECT_TRUE(address_space_rank("*.partner.test", "a.partner.test"));
    EXPECT_TRUE(address_space_rank("*.partner.test", "x.y.partner.test"));
    EXPECT_FALSE(address_space_rank("*.partner.test", "partner.test"));
    EXPECT_FALSE(address_space_rank("*.partner.test", "evilpartner.test"));
    EXPECT_FALSE(address_space_rank("*.partner.test", "partner.test.evil"));
}

TEST(address_space, star_matches_everything_and_ranks_lowest) {
    auto star = address_space_rank("*", "anything.test");
    auto wildcard = address_space_rank("*.test", "anything.test");
    auto exact = address_space_rank("anything.test", "anything.test");
    ASSERT_TRUE(star && wildcard && exact);
    EXPECT_LT(*star, *wildcard);
    EXPECT_LT(*wildcard, *exact);
}

TEST(address_space, case_and_trailing_dot_do_not_matter) {
    EXPECT_TRUE(address_space_rank("Partner.TEST", "partner.test."));
    EXPECT_TRUE(address_space_rank("*.PARTNER.test.", "Mail.Partner.Test"));
    EXPECT_TRUE(same_domain("MX1.Example.Test.", "mx1.example.test"));
    EXPECT_FALSE(same_domain("mx1.example.test", "mx2.example.test"));
}

TEST(address_space, empty_names_match_nothing) {
    EXPECT_FALSE(address_space_rank("*", ""));
    EXPECT_FALSE(address_space_rank("", "partner.test"));
    EXPECT_FALSE(address_space_rank("*", "."));
}

TEST(choose_send_connector, most_specific_wins_whatever_the_file_order) {
    config::configuration cfg;
    cfg.send_connectors = {
        connector("default", {"*"}),
        connector("test-wide", {"*.test"}),
        connector("partner-subdomains", {"*.partner.test"}),
        connector("partner", {"partner.test"}),
        connector("deep", {"*.eu.partner.test"}),
    };
    EXPECT_EQ(chosen(cfg, "partner.test"), "partner");
    EXPECT_EQ(chosen(cfg, "mail.partner.test"), "partner-subdomains");
    EXPECT_EQ(chosen(cfg, "mx.eu.partner.test"), "deep");
    EXPECT_EQ(chosen(cfg, "eu.partner.test"), "partner-subdomains");   // *.eu... needs a subdomain
    EXPECT_EQ(chosen(cfg, "other.test"), "test-wide");
    EXPECT_EQ(chosen(cfg, "example.org"), "default");
}

TEST(choose_send_connector, one_connector_may_list_several_spaces) {
    config::configuration cfg;
    cfg.send_connectors = {
        connector("to-partner", {"partner.test", "*.partner.test"}),
        connector("default", {"*"}),
    };
    EXPECT_EQ(chosen(cfg, "PARTNER.test."), "to-partner");
    EXPECT_EQ(chosen(cfg, "a.partner.test"), "to-partner");
    EXPECT_EQ(chosen(cfg, "elsewhere.test"), "default");
}

TEST(choose_send_connector, none_when_nothing_matches) {
    config::configuration cfg;
    cfg.send_connectors = {connector("partner", {"partner.test"})};
    EXPECT_EQ(choose_send_connector(cfg, "example.org"), nullptr);
    config::configuration empty;
    EXPECT_EQ(choose_send_connector(empty, "partner.test"), nullptr);
}

TEST(choose_send_connector, equal_specificity_keeps_the_first_in_file_order) {
    config::configuration cfg;
    cfg.send_connectors = {
        connector("first", {"*"}),
        connector("second", {"*"}),
    };
    EXPECT_EQ(chosen(cfg, "partner.test"), "first");
}

TEST(choose_send_connector, from_a_loaded_configuration_file) {
    auto loaded = config::load_string(R"(
[server]
hostname = "mx1.example.test"
data_dir = "/tmp/postern-route-test"

[[send_connector]]
name = "to-partner"
address_spaces = ["partner.test", "*.partner.test"]
smart_hosts = ["127.0.0.1:2526"]

[[send_connector]]
name = "internet"
address_spaces = ["*"]
)",
                                      "route-test.toml");
    ASSERT_TRUE(loaded.ok()) << (loaded.errors.empty() ? "" : loaded.errors.front().to_string());
    EXPECT_EQ(chosen(*loaded.config, "mx.partner.test"), "to-partner");
    EXPECT_EQ(chosen(*loaded.config, "example.org"), "internet");
}

}  // namespace
}  // namespace postern::route

namespace postern::route {
namespace {

TEST(choose_route, a_listed_address_comes_before_every_domain_match) {
    config::configuration cfg;
    config::send_connector everything, exact, wildcard, listed;
    everything.name = "internet";
    everything.address_spaces = {"*"};
    exact.name = "to-domino";
    exact.address_spaces = {"corp.test"};
    wildcard.name = "subdomains";
    wildcard.address_spaces = {"*.corp.test"};
    listed.name = "to-exchange";
    listed.recipients_file = "migrated.txt";
    listed.recipients = config::recipient_list::parse("alice@corp.test\n");
    cfg.send_connectors = {everything, exact, wildcard, listed};

    auto alice = choose_route(cfg, "Alice@Corp.Test");
    ASSERT_TRUE(alice.connector);
    EXPECT_EQ(alice.connector->name, "to-exchange");
    EXPECT_EQ(alice.why, "listed in migrated.txt");
    auto bob = choose_route(cfg, "bob@corp.test");
    EXPECT_EQ(bob.connector->name, "to-domino");
    EXPECT_EQ(bob.why, "address space \"corp.test\" (exact domain)");
    auto sub = choose_route(cfg, "carol@eu.corp.test");
    EXPECT_EQ(sub.connector->name, "subdomains");
    EXPECT_EQ(sub.why, "address space \"*.corp.test\" (wildcard domain)");
    auto other = choose_route(cfg, "dave@elsewhere.test");
    EXPECT_EQ(other.connector->name, "internet");
    EXPECT_EQ(other.why, "address space \"*\" (everything else)");

    cfg.send_connectors = {exact};
    auto none = choose_route(cfg, "x@nowhere.test");
    EXPECT_EQ(none.connector, nullptr);
    EXPECT_EQ(none.why, "no send connector's address_spaces cover nowhere.test");
}

}  // namespace
}  // namespace postern::route

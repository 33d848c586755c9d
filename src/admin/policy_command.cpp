// admin/policy_command.cpp: `postern policy show|forget|report` (DESIGN §4): the downgrade
// memory, asked of the running server, or read from data_dir/downgrade.json when none runs
// (so a forget takes effect either way; the server's own log records it).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "admin/commands.hpp"
#include "config/schema.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/policy_operations.hpp"
#include "policy/downgrade_memory.hpp"
#include "policy/tlsrpt_ledger.hpp"

namespace postern::admin {

namespace {

struct policy_options {
    std::string config_file = config::default_config_file;
    std::string domain;
    bool dry_run = false;
    bool json = false;
};

int run_policy(const std::string& action, const policy_options& opt) {
    auto loaded = config::load_file(opt.config_file, /*with_lists=*/false);
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern policy: %s\n", loaded.errors.front().to_string().c_str());
        return 1;
    }
    nlohmann::json request = {{"command", "policy"}, {"action", action}};
    if (!opt.domain.empty()) request["domain"] = opt.domain;
    if (opt.dry_run) request["dry_run"] = true;
    const auto& cfg = *loaded.config;
    auto reply = daemon::control_exchange(cfg.server.control_socket, request, std::chrono::seconds(30));
    if (reply.no_server) {
        // Nothing runs: the file as the next start will read it.
        policy::downgrade_memory memory(cfg.server.data_dir / "downgrade.json");
        auto r = daemon::handle_policy_request(memory, request, std::chrono::system_clock::now());
        reply = daemon::control_reply{r.ok, r.message, r.error};
        reply.data = r.data;
        reply.bad_request = r.bad_request;
        if (r.ok && action == "forget" && !opt.dry_run) spdlog::info("policy: {} (no server running)", r.message);
    }
    if (!reply.ok) {
        std::fprintf(stderr, "postern policy %s: %s\n", action.c_str(), reply.error.c_str());
        return reply.bad_request ? 2 : 1;
    }
    if (opt.json) std::cout << reply.data.dump(2) << "\n";
    else if (action == "forget") std::cout << reply.message << "\n";
    else std::cout << daemon::policy_text(action, reply.data);
    return 0;
}

int run_tlsrpt_show(const policy_options& opt) {
    auto loaded = config::load_file(opt.config_file, /*with_lists=*/false);
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern tlsrpt: %s\n", loaded.errors.front().to_string().c_str());
        return 1;
    }
    const auto& cfg = *loaded.config;
    nlohmann::json request = {{"command", "tlsrpt"}, {"action", "show"}};
    if (!opt.domain.empty()) request["domain"] = opt.domain;
    auto reply = daemon::control_exchange(cfg.server.control_socket, request, std::chrono::seconds(30));
    if (reply.no_server) {
        const auto now = std::chrono::system_clock::now();
        policy::tlsrpt_ledger ledger(cfg.server.data_dir / "tlsrpt.json", now);
        auto r = daemon::handle_tlsrpt_request(ledger, request, now, cfg.tls_rpt.organization_name);
        reply = daemon::control_reply{r.ok, r.message, r.error};
        reply.data = r.data;
    }
    if (!reply.ok) {
        std::fprintf(stderr, "postern tlsrpt show: %s\n", reply.error.c_str());
        return 1;
    }
    if (opt.json) std::cout << reply.data.dump(2) << "\n";
    else std::cout << daemon::tlsrpt_text(reply.data);
    return 0;
}

/// `postern tlsrpt send`: only the running server sends (it holds the counts and the queue).
int run_tlsrpt_send(const policy_options& opt) {
    auto loaded = config::load_file(opt.config_file, /*with_lists=*/false);
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern tlsrpt: %s\n", loaded.errors.front().to_string().c_str());
        return 1;
    }
    const nlohmann::json request = {{"command", "tlsrpt"}, {"action", "send"}};
    auto reply = daemon::control_exchange(loaded.config->server.control_socket, request, std::chrono::seconds(180));
    if (reply.no_server) {
        std::fprintf(stderr, "postern tlsrpt send: no server is running; reports are sent by postern serve\n");
        return 1;
    }
    if (!reply.ok) {
        std::fprintf(stderr, "postern tlsrpt send: %s\n", reply.error.c_str());
        return 1;
    }
    if (opt.json) std::cout << reply.data.dump(2) << "\n";
    else std::cout << daemon::tlsrpt_send_text(reply.data);
    return 0;
}

void add_action(CLI::App& parent, int& exit_code, const std::string& action, const std::string& description,
                bool takes_domain, bool dry_run) {
    auto opt = std::make_shared<policy_options>();
    auto* cmd = parent.add_subcommand(action, description);
    cmd->add_option("-c,--config", opt->config_file, "Configuration file (TOML)")->capture_default_str();
    if (takes_domain) cmd->add_option("DOMAIN", opt->domain, "a recipient domain")->required();
    if (dry_run) cmd->add_flag("--dry-run", opt->dry_run, "Say what would be forgotten; change nothing");
    cmd->add_flag("--json", opt->json, "JSON instead of text");
    cmd->callback([opt, action, &exit_code] {
        try {
            exit_code = run_policy(action, *opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern policy %s: %s\n", action.c_str(), e.what());
            exit_code = 1;
        }
    });
}

}  // namespace

void add_policy_command(CLI::App& app, int& exit_code) {
    auto* policy = app.add_subcommand("policy", "The downgrade memory: domains once reached with DANE or MTA-STS");
    policy->require_subcommand(1);
    add_action(*policy, exit_code, "show", "What is remembered for a domain", true, false);
    add_action(*policy, exit_code, "forget", "Forget a domain (logged), e.g. after it dropped DANE on purpose", true,
               true);
    add_action(*policy, exit_code, "report",
               "Domains that offered less than remembered: what enforce held, or would have held", false, false);

    auto opt = std::make_shared<policy_options>();
    auto* tlsrpt = app.add_subcommand("tlsrpt", "TLS-RPT (RFC 8460): outbound TLS results counted per policy domain");
    tlsrpt->require_subcommand(1);
    auto* show = tlsrpt->add_subcommand("show", "The open period's counts, as RFC 8460 reports");
    show->add_option("-c,--config", opt->config_file, "Configuration file (TOML)")->capture_default_str();
    show->add_option("DOMAIN", opt->domain, "only this policy domain");
    show->add_flag("--json", opt->json, "JSON instead of text");
    show->callback([opt, &exit_code] {
        try {
            exit_code = run_tlsrpt_show(*opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern tlsrpt show: %s\n", e.what());
            exit_code = 1;
        }
    });
    auto send_opt = std::make_shared<policy_options>();
    auto* send = tlsrpt->add_subcommand("send", "Close the period now and send its reports ([tls_rpt] enabled)");
    send->add_option("-c,--config", send_opt->config_file, "Configuration file (TOML)")->capture_default_str();
    send->add_flag("--json", send_opt->json, "JSON instead of text");
    send->callback([send_opt, &exit_code] {
        try {
            exit_code = run_tlsrpt_send(*send_opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern tlsrpt send: %s\n", e.what());
            exit_code = 1;
        }
    });
}

}  // namespace postern::admin

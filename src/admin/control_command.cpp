// admin/control_command.cpp: `postern reload -c FILE` and `postern stop -c FILE` (DESIGN.md §4).
//
// Both read the configuration only to find [server] control_socket, then ask the running
// server over it (daemon/control_socket.hpp). `reload` exits 0 once the server took the new
// configuration and key ring; 1 with the server's reason when it kept the old ones.
// `stop` exits 0 once the server has stopped (its sessions had shutdown_timeout to finish).
// `status` prints what the running server says about itself and exits 0; when no server
// answers it prints one line saying so and exits 3, as `systemctl status` does for a
// unit that is not running (DESIGN.md §4 records the exception to exit codes 0, 1, 2).
#include <chrono>
#include <iostream>
#include <cstdio>
#include <memory>
#include <string>

#include "admin/commands.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/route_query.hpp"
#include "directory/ldap_directory.hpp"
#include "daemon/server_status.hpp"
#include "config/schema.hpp"

namespace postern::admin {

using namespace postern::daemon;   // these commands are the daemon's clients

namespace {

struct control_options {
    std::string config_file;
};

int run_control(const std::string& command, const control_options& opt) {
    auto loaded = config::load_file(opt.config_file, /*with_lists=*/false);   // the server reads them itself
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern %s: %s\n", command.c_str(), loaded.errors.front().to_string().c_str());
        return 1;
    }
    const auto& cfg = *loaded.config;
    // reload reads the configuration and the key ring (PBKDF2); stop waits for the sessions.
    std::chrono::milliseconds timeout = command == "stop"
        ? std::chrono::duration_cast<std::chrono::milliseconds>(cfg.server.shutdown_timeout) + std::chrono::seconds(60)
        : std::chrono::milliseconds(std::chrono::minutes(2));
    control_reply reply = control_request(cfg.server.control_socket, command, timeout, command == "stop");
    if (!reply.ok) {
        std::fprintf(stderr, "postern %s: %s\n", command.c_str(), reply.error.c_str());
        return 1;
    }
    if (!reply.message.empty())
        std::printf("%s\n", reply.message.c_str());
    else if (command == "stop")
        std::printf("stopped\n");
    return 0;
}

constexpr int exit_not_running = 3;

int run_status(const std::string& config_file, bool json) {
    auto loaded = config::load_file(config_file, /*with_lists=*/false);
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern status: %s\n", loaded.errors.front().to_string().c_str());
        return 1;
    }
    const auto& socket = loaded.config->server.control_socket;
    control_reply reply = control_request(socket, "status", std::chrono::seconds(30));
    if (reply.no_server) {
        std::printf("postern is not running (nothing answers on %s)\n", socket.c_str());
        return exit_not_running;
    }
    if (!reply.ok) {
        std::fprintf(stderr, "postern status: %s\n", reply.error.c_str());
        return 1;
    }
    if (json) std::cout << reply.data.dump(2) << "\n";
    else std::cout << status_text(reply.data);
    return 0;
}

int run_route(const std::string& config_file, const std::string& address, bool json) {
    auto where = config::load_file(config_file, /*with_lists=*/false);   // to find the running server
    if (!where.ok()) {
        std::fprintf(stderr, "postern route: %s\n", where.errors.front().to_string().c_str());
        return 1;
    }
    const auto& socket = where.config->server.control_socket;
    control_reply reply = control_exchange(socket, {{"command", "route"}, {"address", address}}, std::chrono::seconds(30));
    nlohmann::json route;
    std::string source;
    if (reply.no_server) {
        // Nothing runs: the files as they are now, which the next start would use.
        auto loaded = config::load_file(config_file);
        if (!loaded.ok()) {
            std::fprintf(stderr, "postern route: %s\n", loaded.errors.front().to_string().c_str());
            return 1;
        }
        directory::attach_directories(*loaded.config);   // asked directly, as the server would
        route = describe_route(*loaded.config, address);
        directory::stop_directories(*loaded.config);
        source = "read from " + config_file + " (no server is running)";
    } else if (!reply.ok) {
        std::fprintf(stderr, "postern route: %s\n", reply.error.c_str());
        return 1;
    } else {
        route = reply.data;
        source = "answered by the running server";
    }
    route["source"] = source;
    if (json) std::cout << route.dump(2) << "\n";
    else std::cout << route_text(route) << "  (" << source << ")\n";
    return 0;
}

void add_one(CLI::App& app, int& exit_code, const std::string& command, const std::string& description) {
    auto opt = std::make_shared<control_options>();
    auto* cmd = app.add_subcommand(command, description);
    opt->config_file = config::default_config_file;
    cmd->add_option("-c,--config", opt->config_file, "Configuration file (TOML) of the running server")
        ->capture_default_str();
    cmd->callback([opt, command, &exit_code] {
        try {
            exit_code = run_control(command, *opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern %s: %s\n", command.c_str(), e.what());
            exit_code = 1;
        }
    });
}

}  // namespace

void add_control_commands(CLI::App& app, int& exit_code) {
    add_one(app, exit_code, "reload",
            "Make the running server read its configuration and key ring again (via the control socket)");
    add_one(app, exit_code, "stop",
            "Stop the running server gracefully and wait until it has stopped (via the control socket)");

    auto file = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    auto* status = app.add_subcommand(
        "status", "How the running server is doing: connectors, sessions, queue, certificates (exit 3: not running)");
    *file = config::default_config_file;
    status->add_option("-c,--config", *file, "Configuration file (TOML) of the running server")
        ->capture_default_str();
    status->add_flag("--json", *json, "JSON instead of text");
    auto route_file = std::make_shared<std::string>(config::default_config_file);
    auto address = std::make_shared<std::string>();
    auto route_json = std::make_shared<bool>(false);
    auto* route = app.add_subcommand("route", "Which send connector an address takes, and why (asks the running server)");
    route->add_option("-c,--config", *route_file, "Configuration file (TOML)")->capture_default_str();
    route->add_option("ADDRESS", *address, "a recipient address")->required();
    route->add_flag("--json", *route_json, "JSON instead of text");
    route->callback([route_file, address, route_json, &exit_code] {
        try {
            exit_code = run_route(*route_file, *address, *route_json);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern route: %s\n", e.what());
            exit_code = 1;
        }
    });

    status->callback([file, json, &exit_code] {
        try {
            exit_code = run_status(*file, *json);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern status: %s\n", e.what());
            exit_code = 1;
        }
    });
}

}  // namespace postern::admin

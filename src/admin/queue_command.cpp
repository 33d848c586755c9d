// admin/queue_command.cpp: `postern queue -c FILE list [--json] | show ID [--json] |
// retry [ID] | hold ID | release ID | delete ID` (DESIGN.md §4).
//
// The running server holds the queue store's lock, so the command asks it over the
// control socket (daemon/control_socket.hpp). Only when no server runs (no socket file, or
// nobody answers on it) does it open the store itself; a store locked by another process
// then is said plainly. Both ways run the same operations (daemon/queue_operations.hpp).
// Exit status: 0 done; 1 failure (no such message, store unavailable), one line on
// stderr; 2 bad usage (including an id that is not a queue id).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "admin/commands.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/privileges.hpp"
#include "daemon/queue_operations.hpp"
#include "config/schema.hpp"
#include "queue/queue_id.hpp"
#include "queue/store.hpp"

namespace postern::admin {

using namespace postern::daemon;   // these commands are the daemon's clients

namespace {

using nlohmann::json;

struct queue_options {
    std::string config_file;
    std::string id;
    bool json_output = false;
};

/// Answers the request with the store opened here (no server runs).
queue_result run_directly(const config::configuration& cfg, const json& request) {
    const auto dir = cfg.server.data_dir / "queue";
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
        // No store yet: an empty queue. Nothing is created for a look.
        const auto command = request.value("command", std::string());
        if (command == "queue-list") {
            queue_result r;
            r.ok = true;
            r.data = json{{"messages", json::array()}, {"count", 0}, {"total_size", 0}};
            return r;
        }
        if (command == "queue-retry" && !request.contains("id")) {
            queue_result r;
            r.ok = true;
            r.message = "0 recipient(s) of 0 message(s) due now";
            return r;
        }
        queue_result r;
        r.error = "no message " + request.value("id", std::string()) + " in the queue (no queue store at " +
                  dir.string() + ")";
        return r;
    }
    // Started as root for a service that runs as [server] user: work as that user, so any
    // file the store creates belongs to the service (the server must be able to open it).
    if (::geteuid() == 0 && !cfg.server.user.empty()) drop_privileges(find_service_account(cfg.server.user));

    std::unique_ptr<queue::store> store;
    try {
        store = queue::open_rocksdb_store({dir, cfg.queue.min_free});
    } catch (const std::exception& e) {
        const std::string what = e.what();
        queue_result r;
        if (what.find("lock") != std::string::npos || what.find("Resource temporarily unavailable") != std::string::npos)
            r.error = "the queue store " + dir.string() +
                      " is locked by another process (a postern serve whose control socket " +
                      cfg.server.control_socket.string() + " does not answer?): " + what;
        else
            r.error = what;
        return r;
    }
    queue_operations ops(*store);
    return handle_queue_request(ops, request, std::chrono::system_clock::now());
}

int run_queue(const std::string& action, const queue_options& opt) {
    // Ids are checked before anything is read or asked (DESIGN §4: 2 = bad usage).
    if (!opt.id.empty() && !queue::parse_queue_id(opt.id)) {
        std::fprintf(stderr, "postern queue %s: not a queue id: \"%s\" (%zu lowercase hex digits, as `postern queue list` shows them)\n",
                     action.c_str(), opt.id.c_str(), queue::queue_id_length);
        return 2;
    }
    auto loaded = config::load_file(opt.config_file, /*with_lists=*/false);   // lists are not the queue's business
    if (!loaded.ok()) {
        std::fprintf(stderr, "postern queue %s: %s\n", action.c_str(), loaded.errors.front().to_string().c_str());
        return 1;
    }
    const auto& cfg = *loaded.config;

    json request{{"command", "queue-" + action}};
    if (!opt.id.empty()) request["id"] = opt.id;

    queue_result result;
    control_reply reply = control_exchange(cfg.server.control_socket, request, std::chrono::seconds(120));
    if (reply.no_server) {
        result = run_directly(cfg, request);
    } else {
        result.ok = reply.ok;
        result.message = std::move(reply.message);
        result.error = std::move(reply.error);
        result.data = std::move(reply.data);
        result.bad_request = reply.bad_request;
    }
    if (!result.ok) {
        std::fprintf(stderr, "postern queue %s: %s\n", action.c_str(), result.error.c_str());
        return result.bad_request ? 2 : 1;
    }
    const auto now = std::chrono::system_clock::now();
    std::string out;
    if (action == "list" || action == "show") {
        if (opt.json_output)
            out = result.data.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
        else
            out = action == "list" ? format_queue_list(result.data, now) : format_queue_show(result.data, now);
    } else if (!result.message.empty()) {
        out = result.message + "\n";
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
}

/// What a queue subcommand takes besides -c.
enum class id_argument { none, optional, required };
enum class json_output { no, yes };

void add_action(CLI::App& queue_cmd, int& exit_code, const std::shared_ptr<queue_options>& opt,
                const std::string& action, const std::string& description, id_argument id_use, json_output json) {
    auto* cmd = queue_cmd.add_subcommand(action, description);
    cmd->fallthrough();   // `postern queue list -c FILE` works too
    if (id_use != id_argument::none) {
        auto* id = cmd->add_option("ID", opt->id, "Queue id (16 hex digits, from `postern queue list`)");
        if (id_use == id_argument::required) id->required();
    }
    if (json == json_output::yes) cmd->add_flag("--json", opt->json_output, "JSON output (for scripts)");
    cmd->callback([opt, action, &exit_code] {
        try {
            exit_code = run_queue(action, *opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern queue %s: %s\n", action.c_str(), e.what());
            exit_code = 1;
        }
    });
}

}  // namespace

void add_queue_command(CLI::App& app, int& exit_code) {
    auto opt = std::make_shared<queue_options>();
    auto* cmd = app.add_subcommand("queue", "Look at and act on the queue (via the running server, or directly when none runs)");
    opt->config_file = config::default_config_file;
    cmd->add_option("-c,--config", opt->config_file, "Configuration file (TOML)")->capture_default_str();
    cmd->require_subcommand(1);
    add_action(*cmd, exit_code, opt, "list", "Every queued message: id, size, arrival, sender, and per recipient "
               "state, attempts, next attempt and last reply", id_argument::none, json_output::yes);
    add_action(*cmd, exit_code, opt, "show", "One message's envelope in full and its headers (never the body)",
               id_argument::required, json_output::yes);
    add_action(*cmd, exit_code, opt, "retry", "Make the pending recipients of one message (all messages without ID) "
               "due now", id_argument::optional, json_output::no);
    add_action(*cmd, exit_code, opt, "hold", "Hold a message: it is not attempted until released", id_argument::required, json_output::no);
    add_action(*cmd, exit_code, opt, "release", "Release a held message", id_argument::required, json_output::no);
    add_action(*cmd, exit_code, opt, "delete", "Remove a message (envelope and body) from the queue", id_argument::required, json_output::no);
}

}  // namespace postern::admin

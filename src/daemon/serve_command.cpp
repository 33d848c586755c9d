// daemon/serve_command.cpp: `postern serve -c FILE [--ready-file PATH]`.
//
// Start-up order (DESIGN.md §3 [server] user):
//   1. load and validate the configuration (nothing starts on a bad file);
//   2. as root: prepare data_dir (0700, given to the service user), open the key ring;
//   3. open the queue store, the protocol logs and the delivery engine with the service
//      user's identity, so every file they create belongs to it;
//   4. bind every listener; write the ready-file; drop to the service user for good;
//   5. serve until SIGTERM/SIGINT (graceful: shutdown_timeout, then 421 4.3.2).
// SIGHUP reloads the configuration and the key ring; a bad new file or key ring leaves
// the running one in place. The control socket (`postern reload|stop`) does the same as
// SIGHUP and SIGTERM; one mutex keeps reloads and stops one at a time.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "daemon/commands.hpp"
#include "daemon/control_socket.hpp"
#include "daemon/mail_pipeline.hpp"
#include <systemd/sd-daemon.h>

#include "daemon/metrics_endpoint.hpp"
#include "daemon/preflight.hpp"
#include "daemon/privileges.hpp"
#include "daemon/route_query.hpp"
#include "directory/ldap_directory.hpp"
#include "daemon/server_status.hpp"
#include "log/metrics.hpp"
#include "daemon/ready_file.hpp"
#include "files/replace.hpp"
#include "config/schema.hpp"
#include "log/protocol_log.hpp"
#include "net/server.hpp"
#include "queue/store.hpp"
#include "tls/server_context.hpp"

namespace postern::daemon {

namespace {

struct serve_options {
    std::string config_file;
    std::string ready_file;
};

/// Runs `fn` with the effective uid/gid of `account` (when given), then returns to root.
/// glibc applies set*id to every thread of the process, so threads started inside `fn`
/// (RocksDB's, the protocol log's) follow the final drop as well.
template <class Fn>
auto as_account(const std::optional<service_account>& account, Fn&& fn) {
    if (!account) return fn();
    if (::setegid(account->gid) != 0 || ::seteuid(account->uid) != 0)
        throw std::runtime_error("cannot assume the identity of " + account->name);
    struct back_to_root {
        ~back_to_root() {
            if (::seteuid(0) != 0 || ::setegid(0) != 0) std::abort();   // cannot continue half-dropped
        }
    } restore;
    return fn();
}

std::optional<config::configuration> load_or_report(const std::string& file) {
    auto result = config::load_file(file);
    preflight(result);   // exactly what `config check` runs
    for (const auto& w : result.warnings) spdlog::warn("{}", w.to_string());
    for (const auto& e : result.errors) spdlog::error("{}", e.to_string());
    if (!result.ok()) return std::nullopt;
    return std::move(result.config);
}


// Every session and every outbound connection is a descriptor; so are the store's files,
// the logs, the listeners and the control socket. The soft limit (often 1024) goes up to
// the hard one; below what the configured limits need, the server still runs, but says so.
void raise_descriptor_limit(const config::configuration& cfg) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        // RLIM_INFINITY is not accepted for descriptors: the kernel's nr_open caps it.
        raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    constexpr rlim_t for_the_rest = 256;          // store, logs, listeners, control socket
    const rlim_t needed = rlim_t{cfg.server.max_inbound_connections} + cfg.server.max_outbound_connections + for_the_rest;
    if (limit.rlim_cur < needed)
        spdlog::warn("descriptor limit {} is below what the configured limits need ({}: max_inbound_connections {} + "
                     "max_outbound_connections {} + {}); raise it (LimitNOFILE= in systemd, ulimit -n) or lower the limits",
                     limit.rlim_cur, needed, cfg.server.max_inbound_connections, cfg.server.max_outbound_connections,
                     for_the_rest);
}

std::shared_ptr<tls::server_context> open_tls(const config::configuration& cfg) {
    bool needs_tls = false;
    for (const auto& rc : cfg.receive_connectors) needs_tls |= rc.tls != config::tls_mode::none;
    if (!needs_tls) return nullptr;
    auto ctx = tls::server_context::build(cfg);
    spdlog::info("tls: serving certificate \"{}\" ({}), {} days left", ctx->certificate_label(),
                 ctx->certificate_subject(), ctx->days_left());
    return ctx;
}

/// The key ring's certificates for the metrics and status; a key ring that cannot be read
/// here has already been reported by the preflight.
void publish_certificates(const config::configuration& cfg) {
    try {
        log::metrics::global().set_certificates(certificate_expiries(cfg));
    } catch (const std::exception& e) {
        spdlog::warn("metrics: cannot read the key ring's certificates: {}", e.what());
    }
}

/// SIGHUP or `postern reload`: new configuration and key ring for new sessions; sessions
/// in progress keep theirs, so no message is cut. The reply says what happened (the
/// control socket passes it on to `postern reload`).
/// On success `in_force` becomes the new configuration.
control_reply reload(const std::string& file, net::server& server, mail_pipeline& pipeline,
                     config::configuration& in_force) {
    spdlog::info("reload: reading {}", file);
    auto loaded = config::load_file(file);
    preflight(loaded);
    for (const auto& w : loaded.warnings) spdlog::warn("{}", w.to_string());
    for (const auto& e : loaded.errors) spdlog::error("{}", e.to_string());
    if (!loaded.ok()) {
        spdlog::error("reload: configuration refused; the running configuration and key ring stay in place");
        return {false, "", "configuration refused (" + loaded.errors.front().to_string() +
                               "); the running configuration and key ring stay in place"};
    }
    auto& cfg = *loaded.config;
    directory::attach_directories(cfg, &in_force);   // an unchanged source keeps its cache
    std::shared_ptr<tls::server_context> tls;
    try {
        tls = open_tls(cfg);
    } catch (const std::exception& e) {
        spdlog::error("reload: {}; the running key ring stays in place", e.what());
        return {false, "", std::string(e.what()) + "; the running configuration and key ring stay in place"};
    }
    try {
        pipeline.reload(cfg);    // send connectors, [queue], [debug], client key material
    } catch (const std::exception& e) {
        spdlog::error("reload: {}; the running configuration and key ring stay in place", e.what());
        return {false, "", std::string(e.what()) + "; the running configuration and key ring stay in place"};
    }
    if (tls) server.set_tls_context(tls);
    publish_certificates(cfg);
    std::string message = "reloaded";
    if (tls) message += "; serving certificate \"" + tls->certificate_label() + "\"";
    for (const auto& bind : server.update_configuration(cfg)) {
        spdlog::warn("reload: bind {} changed; it takes effect at the next restart", bind);
        message += "; bind " + bind + " changed: it takes effect at the next restart";
    }
    if (cfg.metrics.listen != in_force.metrics.listen) {
        spdlog::warn("reload: [metrics] listen changed; it takes effect at the next restart");
        message += "; [metrics] listen changed: it takes effect at the next restart";
    }
    in_force = std::move(cfg);
    spdlog::info("reload: done");
    return {true, message, ""};
}

/// Signals are taken by one thread with sigwait(); every thread started after this
/// inherits the blocked mask, so no signal interrupts a worker.
sigset_t block_signals() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) sigaddset(&signals, s);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    return signals;
}

/// The [server] user to drop to after binding; none when it is not set (or already us).
std::optional<service_account> service_account_for(const config::configuration& cfg) {
    if (cfg.server.user.empty()) {
        if (::geteuid() == 0) spdlog::warn("running as root: set [server] user so Postern drops privileges after binding");
        return std::nullopt;
    }
    if (::geteuid() == 0) return find_service_account(cfg.server.user);
    if (find_service_account(cfg.server.user).uid != ::geteuid())
        throw std::runtime_error("[server] user \"" + cfg.server.user +
                                 "\": switching users needs root; start as root or as that user");
    return std::nullopt;
}

/// The control socket. Before the queue store: a second server on the same files is
/// refused here, clearly. Owned by the service user, so it can remove the file when it stops.
control_socket_options control_socket_options_for(const config::configuration& cfg,
                                                  const std::optional<service_account>& account) {
    std::vector<uid_t> control_users{0};
    if (account)
        control_users.push_back(account->uid);
    else if (::geteuid() != 0)
        control_users.push_back(::geteuid());
    return {cfg.server.control_socket, control_users,
            account ? std::optional(std::pair{account->uid, account->gid}) : std::nullopt};
}

std::vector<net::bound_listener> start_listening(net::server& server) {
    auto listeners = server.start();
    for (const auto& l : listeners)
        spdlog::info("listening: {} on {}", fmt::join(l.connectors, ", "),
                     l.endpoint.address().to_string() + ":" + std::to_string(l.endpoint.port()));
    return listeners;
}

std::vector<ready_listener> ready_listeners(const std::vector<net::bound_listener>& bound) {
    std::vector<ready_listener> out;
    for (const auto& l : bound) out.push_back({l.connector, l.endpoint.address().to_string(), l.endpoint.port()});
    return out;
}

/// What the running server answers to reload, stop and queue requests (from a signal or
/// the control socket): one reload or stop at a time; the first stop starts the grace.
class running_server {
public:
    running_server(const serve_options& opt, const config::configuration& cfg, net::server& server,
                   mail_pipeline& pipeline, std::vector<net::bound_listener> listeners)
        : opt_(opt), grace_(cfg.server.shutdown_timeout), server_(server), pipeline_(pipeline),
          listeners_(std::move(listeners)), cfg_(cfg) {}

    control_reply reload_now() {
        std::lock_guard lock(mutex_);
        if (stopping_) return {false, "", "the server is stopping"};
        sd_notify(0, "RELOADING=1");
        auto reply = reload(opt_.config_file, server_, pipeline_, cfg_);
        sd_notify(0, reply.ok ? "READY=1\nSTATUS=reloaded" : "READY=1\nSTATUS=reload refused; the old configuration runs");
        return reply;
    }
    control_reply route_now(const nlohmann::json& request) {
        const auto address = request.value("address", std::string());
        if (address.empty()) {
            control_reply refused{false, "", "route needs \"address\""};
            refused.bad_request = true;
            return refused;
        }
        std::lock_guard lock(mutex_);
        control_reply reply{true, "", ""};
        reply.data = describe_route(cfg_, address);
        return reply;
    }
    control_reply status_now() {
        config::configuration cfg;
        {
            std::lock_guard lock(mutex_);
            cfg = cfg_;
        }
        control_reply reply{true, "", ""};
        reply.data = status_json(cfg, {listeners_, server_, pipeline_.receive_store(), started_});
        return reply;
    }
    control_reply stop_now() {
        std::lock_guard lock(mutex_);
        // A second stop cuts the grace period short.
        spdlog::info("stopping: sessions have {}s to finish", stopping_ ? 0 : grace_.count());
        sd_notify(0, "STOPPING=1");
        const auto this_grace = stopping_ ? std::chrono::seconds(0) : grace_;
        server_.stop(this_grace);
        stop_deadline_ = std::chrono::steady_clock::now() + this_grace;
        stopping_ = true;
        return {true, "", ""};
    }
    // Queue requests need no server-wide lock: the pipeline serialises envelope changes.
    control_reply queue_now(const nlohmann::json& request) {
        auto r = pipeline_.queue_request(request);
        control_reply reply{r.ok, std::move(r.message), std::move(r.error)};
        reply.data = std::move(r.data);
        reply.bad_request = r.bad_request;
        return reply;
    }
    control_handlers handlers() {
        control_handlers h{[this] { return reload_now(); }, [this] { return stop_now(); },
                           [this](const nlohmann::json& request) { return queue_now(request); }};
        h.status = [this] { return status_now(); };
        h.route = [this](const nlohmann::json& request) { return route_now(request); };
        h.tlsrpt = [this](const nlohmann::json& request) {
            std::string organization;
            {
                std::lock_guard lock(mutex_);
                organization = cfg_.tls_rpt.organization_name;
            }
            auto r = pipeline_.tlsrpt_request(request, organization);
            control_reply reply{r.ok, std::move(r.message), std::move(r.error)};
            reply.data = std::move(r.data);
            reply.bad_request = r.bad_request;
            return reply;
        };
        h.policy = [this](const nlohmann::json& request) {
            auto r = pipeline_.policy_request(request);
            control_reply reply{r.ok, std::move(r.message), std::move(r.error)};
            reply.data = std::move(r.data);
            reply.bad_request = r.bad_request;
            return reply;
        };
        return h;
    }
    const config::configuration& configuration_in_force() const { return cfg_; }
    /// Deliveries under way get what is left of the same grace period.
    void stop_delivery() {
        std::lock_guard lock(mutex_);
        const auto left =
            std::chrono::duration_cast<std::chrono::seconds>(stop_deadline_ - std::chrono::steady_clock::now());
        pipeline_.stop_delivery(std::max(left, std::chrono::seconds(0)));
    }

private:
    const serve_options& opt_;
    const std::chrono::seconds grace_;
    net::server& server_;
    mail_pipeline& pipeline_;
    const std::vector<net::bound_listener> listeners_;
    const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::mutex mutex_;
    config::configuration cfg_;   // as last loaded (start or reload), for status
    bool stopping_ = false;
    std::chrono::steady_clock::time_point stop_deadline_ = std::chrono::steady_clock::now();
};

int serve(const serve_options& opt) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("postern"));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    sigset_t signals = block_signals();

    auto cfg = load_or_report(opt.config_file);
    if (!cfg) {
        std::fprintf(stderr, "postern: %s: configuration refused\n", opt.config_file.c_str());
        return 1;
    }
    directory::attach_directories(*cfg);
    const auto account = service_account_for(*cfg);
    raise_descriptor_limit(*cfg);
    prepare_private_directory(cfg->server.data_dir, account);
    if (account) give_tree_to(cfg->server.data_dir, *account);   // queue, logs, key ring: the service's own
    control_socket control(control_socket_options_for(*cfg, account));
    auto tls = open_tls(*cfg);

    // Queue store, protocol logs, resolver and delivery engine, created as the service
    // user so every file they make belongs to it.
    std::unique_ptr<mail_pipeline> pipeline;
    as_account(account, [&] {
        pipeline = std::make_unique<mail_pipeline>(*cfg);
        return 0;
    });
    net::server_options server_options;
    server_options.delivery_behind = [p = pipeline.get()] { return p->delivery_behind(); };
    net::server server(*cfg, tls, pipeline->receive_store(), pipeline->receive_log(), server_options);
    const auto listeners = start_listening(server);
    publish_certificates(*cfg);

    // Bound now, as root (the port may be privileged); it answers once we have dropped.
    std::unique_ptr<metrics_endpoint> metrics;
    queue_counter queue_counts(pipeline->receive_store(), std::chrono::seconds(5));
    std::optional<ready_listener> metrics_listener;
    if (!cfg->metrics.listen.empty()) {
        metrics = std::make_unique<metrics_endpoint>(cfg->metrics.listen, [&queue_counts] {
            return log::metrics::global().prometheus_text(queue_counts.get());
        });
        const auto at = metrics->local_endpoint();
        metrics_listener = ready_listener{"metrics", at.address().to_string(), at.port()};
        spdlog::info("metrics: GET http://{}/metrics",
                     at.address().is_v6() ? fmt::format("[{}]:{}", at.address().to_string(), at.port())
                                          : fmt::format("{}:{}", at.address().to_string(), at.port()));
    }

    // Written as root (its directory may be root's), as the last step before the drop;
    // nothing is served until run() below, after the drop.
    if (!opt.ready_file.empty())
        files::replace_file(opt.ready_file, ready_file_json(::getpid(), ready_listeners(listeners),
                                                            cfg->server.control_socket,
                                                            metrics_listener ? &*metrics_listener : nullptr));
    if (account) {
        drop_privileges(*account);
        spdlog::info("privileges dropped to {} (uid {})", account->name, account->uid);
    }
    // systemd (Type=notify): ready once every listener accepts; a no-op without NOTIFY_SOCKET.
    sd_notifyf(0, "READY=1\nSTATUS=listening on %zu address(es)\nMAINPID=%ld", listeners.size(),
               static_cast<long>(::getpid()));

    running_server running(opt, *cfg, server, *pipeline, listeners);
    if (metrics) metrics->start();
    control.start(running.handlers());
    struct control_guard {   // no request reaches the handlers once the server is gone
        control_socket& c;
        ~control_guard() { c.stop_serving(); }
    } control_guard{control};

    std::atomic<bool> finished{false};
    std::thread signal_thread([&] {
        while (!finished) {
            int sig = 0;
            if (sigwait(&signals, &sig) != 0) continue;
            if (sig == SIGHUP) running.reload_now();
            else if (sig == SIGTERM || sig == SIGINT) running.stop_now();
        }
    });

    pipeline->start_delivery();   // mail left in the queue by an earlier run goes out now
    server.run();
    control.stop_serving();
    if (metrics) metrics->stop();
    running.stop_delivery();
    finished = true;
    pthread_kill(signal_thread.native_handle(), SIGUSR2);
    signal_thread.join();
    pipeline->flush_logs();
    directory::stop_directories(running.configuration_in_force());   // before the sessions' executors go
    directory::stop_directories(*cfg);
    spdlog::info("stopped");
    return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
    auto opt = std::make_shared<serve_options>();
    auto* cmd = app.add_subcommand("serve", "Run the mail server");
    opt->config_file = config::default_config_file;
    cmd->add_option("-c,--config", opt->config_file, "Configuration file (TOML)")->capture_default_str();
    cmd->add_option("--ready-file", opt->ready_file,
                    "Write listeners and pid as JSON here once every listener accepts");
    cmd->callback([opt, &exit_code] {
        try {
            exit_code = serve(*opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "postern: %s\n", e.what());
            exit_code = 1;
        }
    });
}

}  // namespace postern::daemon

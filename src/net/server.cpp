// net/server.cpp: listeners, admission (connector choice, connection limits), session
// tracking and the two-step stop (DESIGN.md §3, §5; STYLE E6).
#include "net/server.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include <pthread.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "log/throttle.hpp"
#include "net/connector_choice.hpp"
#include "net/session.hpp"
#include "smtp/replies.hpp"

namespace postern::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

struct listener {
    std::string key;                              // the bind as written
    tcp::acceptor acceptor;
    /// Port 0 ("any free port") is one listener per connector, never shared: two
    /// connectors asking for a port each get their own. Then this names the connector.
    std::string only_connector;
};

std::shared_ptr<SSL_CTX> native_of(std::shared_ptr<tls::server_context> ctx) {
    if (!ctx) return nullptr;
    SSL_CTX* native = ctx->native();
    return std::shared_ptr<SSL_CTX>(std::move(ctx), native);   // aliasing: keeps the owner alive
}

tcp::endpoint resolve_bind(const config::endpoint& e) {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(e.host, ec);
    if (!ec) return {address, e.port};
    asio::io_context io;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(e.host, std::to_string(e.port), tcp::resolver::passive, ec);
    if (ec || results.empty())
        throw std::system_error(ec ? std::error_code(ec) : std::make_error_code(std::errc::invalid_argument),
                                "cannot resolve bind address " + bind_key(e));
    return results.begin()->endpoint();
}

}  // namespace

struct server::impl {
    // Declared first, destroyed last: every I/O object below belongs to it.
    asio::io_context io;
    asio::strand<asio::io_context::executor_type> control{io.get_executor()};
    asio::steady_timer grace_timer{control};
    std::vector<std::unique_ptr<listener>> listeners;

    server_options options;
    queue::store& store;
    log::protocol_log& receive_log;

    mutable std::mutex mutex;                     // everything below
    std::shared_ptr<const config::configuration> cfg;
    std::shared_ptr<SSL_CTX> tls;
    std::shared_ptr<tls::server_context> tls_context;   // when built from one: per-connector trust
    std::map<std::uint64_t, std::weak_ptr<session>> sessions;
    std::uint64_t next_session = 0;
    std::uint32_t admitted = 0;                   // every session: max_inbound_connections
    std::map<std::string, std::uint32_t> per_source;             // source_group -> sessions
    std::map<std::string, std::uint32_t> per_connector_source;   // connector + '\n' + group
    bool stopping = false;
    bool done = false;

    impl(const config::configuration& c, std::shared_ptr<SSL_CTX> t, queue::store& s, log::protocol_log& l,
         server_options o)
        : options(o), store(s), receive_log(l), cfg(std::make_shared<const config::configuration>(c)),
          tls(std::move(t)) {}

    /// What one admitted session holds of the counters, given back when it ends.
    struct counted_slot {
        std::string group;
        std::string connector_key;                // empty: the client matches no connector
    };

    asio::awaitable<void> accept_loop(listener* l);
    void admit(tcp::socket socket, const listener& l);
    std::string over_limit(const config::configuration& c, const config::receive_connector* rc,
                           const counted_slot& slot) const;
    void take(const counted_slot& slot);
    void session_ended(std::uint64_t id, const counted_slot& slot);
    void explain_admission(const config::configuration& c, const config::receive_connector* rc, const listener& l,
                           const std::string& local, const std::string& remote, const counted_slot& slot,
                           const std::string& refused_for) const;
    void begin_stop(std::chrono::seconds grace);
    void check_done();
    void for_each_session(bool now);
};

// --- accepting ---------------------------------------------------------------------------------

asio::awaitable<void> server::impl::accept_loop(listener* l) {
    asio::steady_timer backoff(control);
    std::uint64_t failures = 0;                   // in a row: logged once, not per accept
    for (;;) {
        auto [ec, socket] = co_await l->acceptor.async_accept(asio::make_strand(io),
                                                              asio::as_tuple(asio::use_awaitable));
        if (!l->acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // EMFILE, ENFILE, ENOBUFS: the connection stays in the backlog; wait a little
            // instead of spinning on the same error, and say so once per episode.
            if (failures++ == 0)
                spdlog::warn("accept on {} failed: {}; retrying every 100 ms until it works", l->key, ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        if (failures > 0) {
            spdlog::info("accept on {} works again after {} failed attempts", l->key, failures);
            failures = 0;
        }
        admit(std::move(socket), *l);
    }
}

std::uint32_t count_of(const std::map<std::string, std::uint32_t>& m, const std::string& key) {
    auto it = m.find(key);
    return it == m.end() ? 0 : it->second;
}

// DESIGN §3: max_inbound_connections counts every session; max_connections_per_source every
// session from one source group on every bind; a connector's own per-source limit applies
// inside it. Returns which limit is reached, or "".
std::string server::impl::over_limit(const config::configuration& c, const config::receive_connector* rc,
                                     const counted_slot& slot) const {
    if (admitted >= c.server.max_inbound_connections)
        return fmt::format("max_inbound_connections ({})", c.server.max_inbound_connections);
    if (count_of(per_source, slot.group) >= c.server.max_connections_per_source)
        return fmt::format("max_connections_per_source ({})", c.server.max_connections_per_source);
    if (rc && count_of(per_connector_source, slot.connector_key) >= rc->max_inbound_connections_per_source)
        return fmt::format("max_inbound_connections_per_source of {} ({})", rc->name,
                           rc->max_inbound_connections_per_source);
    return {};
}

void server::impl::take(const counted_slot& slot) {
    ++admitted;
    ++per_source[slot.group];
    if (!slot.connector_key.empty()) ++per_connector_source[slot.connector_key];
}

namespace {

// A connection over a limit costs no session: one non-blocking write of the 421 (a new
// socket's send buffer is empty, so it goes out whole or not at all), then close. On an
// implicit-TLS port a plaintext reply would be noise to the client's handshake: just close.
void refuse(tcp::socket& socket, bool implicit_tls, const std::string& hostname) {
    boost::system::error_code ignored;
    if (!implicit_tls) {
        const auto wire = smtp::replies::too_many_connections(hostname).wire();
        socket.non_blocking(true, ignored);
        socket.send(asio::buffer(wire), 0, ignored);
    }
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}

// DESIGN §6: one session cannot fill the protocol log (and push other sessions' TLS
// verdicts out of retention). A message with max_recipients (200) recipients logs about
// 410 lines; junk and error limits keep a session well below this without mail.
constexpr std::uint32_t protocol_log_lines_between_messages = 1000;

// A client that matches no connector hears 554 5.7.1 and may only QUIT; it gets this long.
constexpr std::chrono::seconds no_connector_time_limit{10};

}  // namespace

void server::impl::admit(tcp::socket socket, const listener& l) {
    boost::system::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    if (ec) return;                               // gone before we looked
    const auto local = socket.local_endpoint(ec);
    if (ec) return;
    const std::string source = unmapped(remote.address()).to_string();

    session_setup setup;
    std::string connector_name;
    bool log_enabled = true;
    counted_slot slot{source_group(remote.address()), {}};
    std::string refused_for;
    std::uint64_t id = 0;
    {
        std::lock_guard lock(mutex);
        if (stopping) return;
        const auto& c = *cfg;
        std::vector<std::size_t> candidates;
        if (l.only_connector.empty()) {
            candidates = connectors_on_bind(c, l.key);
        } else {
            for (std::size_t i = 0; i < c.receive_connectors.size(); ++i)
                if (c.receive_connectors[i].name == l.only_connector) candidates.push_back(i);
        }
        auto choice = choose_connector(c, candidates, remote.address());
        const config::receive_connector* rc = choice ? &c.receive_connectors[*choice] : nullptr;
        if (rc) slot.connector_key = rc->name + '\n' + slot.group;
        refused_for = over_limit(c, rc, slot);
        if (!rc) {
            setup.params.policy.hostname = policy_for(c, config::receive_connector{}).hostname;
            setup.params.admitted = smtp::admission::no_connector;
            setup.connection_timeout = no_connector_time_limit;
            setup.inactivity_timeout = no_connector_time_limit;
        } else {
            connector_name = rc->name;
            log_enabled = rc->logging == config::protocol_logging::verbose;
            setup.params.policy = policy_for(c, *rc);
            if (setup.params.policy.check_recipient) setup.ask_directory = recipient_asker(c);
            setup.implicit_tls = rc->tls == config::tls_mode::implicit;
            setup.partner_names = rc->partner_names;
            setup.partner_fingerprints = rc->partner_fingerprints;
            setup.connection_timeout = rc->connection_timeout;
            setup.inactivity_timeout = rc->connection_inactivity_timeout;
        }
        if (refused_for.empty()) take(slot);
        setup.tls = setup.params.policy.tls == smtp::server_policy::tls_offer::none ? nullptr : tls;
        if (setup.tls && tls_context && rc)
            setup.prepare_tls = [context = tls_context, name = rc->name](SSL* ssl) { context->apply_trust(ssl, name); };
        setup.params.tls_available = setup.tls != nullptr;
        setup.report_tls_handshake_errors = c.debug.report_tls_handshake_errors;
        setup.server_debug = c.debug.smtp_server_debug;
        setup.io_trace = c.debug.smtp_io_trace;
        setup.trace_tls_handshake = c.debug.trace_tls_handshake;
        setup.params.explain_decisions = c.debug.smtp_server_debug;
        if (c.debug.smtp_server_debug) explain_admission(c, rc, l, endpoint_text(local), endpoint_text(remote), slot, refused_for);
        id = next_session++;
    }
    if (!refused_for.empty()) {
        refuse(socket, setup.implicit_tls, setup.params.policy.hostname);
        log::peer_caused().warn("connection limit", fmt::format("connection from {} to {} refused with 421 4.7.0: {} reached",
                                                                source, endpoint_text(local), refused_for));
        return;
    }
    // Every action's replies go out in one write, and the next write waits for the
    // client's next command, so Nagle's algorithm has nothing to coalesce: it could only
    // hold a reply behind the client's delayed ACK.
    socket.set_option(tcp::no_delay(true), ec);
    setup.farewell_timeout = options.farewell_timeout;
    setup.delivery_behind = options.delivery_behind;
    setup.in_flow_delay = options.in_flow_delay;
    setup.params.client_ip = source;
    setup.params.client_port = remote.port();
    setup.params.storage_low = [&store = store] { return store.low_on_space(); };
    setup.params.storage_failed = [&store = store] { return store.condition() == queue::store_condition::failed; };
    setup.params.configuration_problem = [](const std::string& problem) {
        log::peer_caused().warn("configuration", "configuration: " + problem);
    };

    log::session_logger logger(&receive_log, connector_name, endpoint_text(local), endpoint_text(remote), log_enabled);
    logger.cap_lines(protocol_log_lines_between_messages);
    setup.params.session_id = logger.session_id();

    auto s = std::make_shared<session>(std::move(socket), std::move(setup), store, std::move(logger));
    {
        std::lock_guard lock(mutex);
        sessions.emplace(id, s);
    }
    auto executor = s->get_executor();
    asio::co_spawn(executor, s->run(), [this, id, slot](std::exception_ptr e) {
        if (e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("session ended with an exception: {}", ex.what());
            }
        }
        session_ended(id, slot);
    });
}

// [debug] smtp_server_debug: which connector a client got, and why, and where the limits stand.
void server::impl::explain_admission(const config::configuration& c, const config::receive_connector* rc,
                                     const listener& l, const std::string& local, const std::string& remote,
                                     const counted_slot& slot, const std::string& refused_for) const {
    if (!rc) {
        spdlog::info("smtp-server (no connector) {}: connection to {} (bind {}) matches no receive connector's "
                     "remote_ip_ranges: 554 5.7.1",
                     remote, local, l.key);
        return;
    }
    std::string ranges;
    for (const auto& r : rc->remote_ip_ranges) ranges += (ranges.empty() ? "" : ", ") + r.text;
    spdlog::info("smtp-server {} {}: chosen on {} (bind {}, remote_ip_ranges {}); tls {}; sessions {}/{} in all, "
                 "{}/{} from this source, {}/{} from it on this connector{}",
                 rc->name, remote, local, l.key, ranges,
                 rc->tls == config::tls_mode::none ? "none" : rc->tls == config::tls_mode::starttls ? "starttls" : "implicit",
                 admitted, c.server.max_inbound_connections, count_of(per_source, slot.group),
                 c.server.max_connections_per_source, count_of(per_connector_source, slot.connector_key),
                 rc->max_inbound_connections_per_source,
                 refused_for.empty() ? std::string() : "; refused: " + refused_for + " reached");
}

void server::impl::session_ended(std::uint64_t id, const counted_slot& slot) {
    {
        std::lock_guard lock(mutex);
        sessions.erase(id);
        --admitted;
        auto release = [](std::map<std::string, std::uint32_t>& m, const std::string& key) {
            auto it = m.find(key);
            if (it != m.end() && --it->second == 0) m.erase(it);
        };
        release(per_source, slot.group);
        if (!slot.connector_key.empty()) release(per_connector_source, slot.connector_key);
    }
    asio::post(control, [this] { check_done(); });
}

// --- stopping (STYLE E6) -------------------------------------------------------------------------

void server::impl::for_each_session(bool now) {
    std::vector<std::shared_ptr<session>> live;
    {
        std::lock_guard lock(mutex);
        for (auto& [id, weak] : sessions)
            if (auto s = weak.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) asio::post(s->get_executor(), [s, now] { s->request_stop(now); });
}

void server::impl::begin_stop(std::chrono::seconds grace) {
    bool first = false;
    {
        std::lock_guard lock(mutex);
        first = !stopping;
        stopping = true;
    }
    if (first) {
        for (auto& l : listeners) {
            boost::system::error_code ignored;
            l->acceptor.close(ignored);
        }
        for_each_session(false);
    }
    const auto new_expiry = std::chrono::steady_clock::now() + grace;
    if (first || new_expiry < grace_timer.expiry()) {
        grace_timer.expires_at(new_expiry);
        grace_timer.async_wait([this](boost::system::error_code ec) {
            if (!ec) for_each_session(true);
        });
    }
    check_done();
}

void server::impl::check_done() {
    std::lock_guard lock(mutex);
    if (!stopping || !sessions.empty() || done) return;
    done = true;
    grace_timer.cancel();                          // the last pending work: run() returns
}

// --- the public face ------------------------------------------------------------------------------

server::server(const config::configuration& cfg, std::shared_ptr<tls::server_context> tls, queue::store& store,
               log::protocol_log& receive_log, server_options options)
    : server(cfg, native_of(tls), store, receive_log, options) {
    impl_->tls_context = std::move(tls);
}

server::server(const config::configuration& cfg, std::shared_ptr<SSL_CTX> tls, queue::store& store,
               log::protocol_log& receive_log, server_options options)
    : impl_(std::make_unique<impl>(cfg, std::move(tls), store, receive_log, options)) {}

server::~server() {
    impl_->io.stop();
}

std::vector<bound_listener> server::start() {
    auto cfg = impl_->cfg;
    std::vector<bound_listener> bound;
    std::map<std::string, std::size_t> seen;       // bind key -> index in `bound`
    for (const auto& rc : cfg->receive_connectors) {
        for (const auto& e : rc.bind) {
            const auto key = bind_key(e);
            const bool own_port = e.port == 0;
            if (auto it = seen.find(key); !own_port && it != seen.end()) {
                bound[it->second].connectors.push_back(rc.name);
                continue;
            }
            const auto endpoint = resolve_bind(e);
            auto l = std::make_unique<listener>(listener{key, tcp::acceptor(impl_->control), own_port ? rc.name : ""});
            boost::system::error_code ec;
            l->acceptor.open(endpoint.protocol(), ec);
            if (!ec) l->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
            if (!ec) l->acceptor.bind(endpoint, ec);
            if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
            if (ec)
                throw std::system_error(std::error_code(ec), "receive connector " + rc.name + ": cannot listen on " + key);
            if (!own_port) seen.emplace(key, bound.size());
            bound.push_back({rc.name, {rc.name}, key, l->acceptor.local_endpoint()});
            spdlog::info("receive connector {} listening on {}", rc.name, endpoint_text(bound.back().endpoint));
            impl_->listeners.push_back(std::move(l));
        }
    }
    for (auto& l : impl_->listeners) {
        asio::co_spawn(impl_->control, impl_->accept_loop(l.get()), [key = l->key](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                spdlog::error("listener {} stopped: {}", key, ex.what());
            }
        });
    }
    return bound;
}

void server::run() {
    const unsigned extra = impl_->options.threads > 1 ? impl_->options.threads - 1 : 0;
    std::vector<std::thread> threads;
    threads.reserve(extra);
    for (unsigned i = 0; i < extra; ++i)
        threads.emplace_back([this] {
            ::pthread_setname_np(::pthread_self(), "smtp-io");   // per-thread CPU in top -H, /proc
            impl_->io.run();
        });
    impl_->io.run();
    for (auto& t : threads) t.join();
}

void server::stop(std::chrono::seconds grace) {
    asio::post(impl_->control, [i = impl_.get(), grace] { i->begin_stop(grace); });
}

void server::set_tls_context(std::shared_ptr<tls::server_context> tls) {
    auto native = native_of(tls);
    std::lock_guard lock(impl_->mutex);
    impl_->tls = std::move(native);
    impl_->tls_context = std::move(tls);
}

void server::set_tls_context(std::shared_ptr<SSL_CTX> tls) {
    std::lock_guard lock(impl_->mutex);
    impl_->tls = std::move(tls);
    impl_->tls_context.reset();
}

std::vector<std::string> server::update_configuration(const config::configuration& cfg) {
    auto binds_of = [](const config::configuration& c) {
        std::set<std::string> keys;
        for (const auto& rc : c.receive_connectors)
            for (const auto& e : rc.bind) keys.insert(bind_key(e));
        return keys;
    };
    std::lock_guard lock(impl_->mutex);
    const auto before = binds_of(*impl_->cfg);
    const auto after = binds_of(cfg);
    std::vector<std::string> not_applied;
    std::set_symmetric_difference(before.begin(), before.end(), after.begin(), after.end(),
                                  std::back_inserter(not_applied));
    impl_->cfg = std::make_shared<const config::configuration>(cfg);
    return not_applied;
}

std::size_t server::active_sessions() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->sessions.size();
}

std::map<std::string, std::size_t> server::sessions_by_connector() const {
    std::lock_guard lock(impl_->mutex);
    std::map<std::string, std::size_t> out;
    for (const auto& [key, count] : impl_->per_connector_source) out[key.substr(0, key.find('\n'))] += count;
    return out;
}

bool server::stopped() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->done;
}

}  // namespace postern::net

// delivery/engine.cpp: queue scan, per-destination connections, results into the store.
//
// Flow: scan() reads the queue and groups due recipients into jobs per destination
// (scheduler.hpp); dispatch() opens connections within max_per_destination and
// [server] max_outbound_connections; each connection resolves its next hops (smart
// hosts in order, else MX), opens a client_session to the first host that takes it, and
// sends job after job over it (RSET between); finish_recipients() turns results into
// recipient states, DSNs and finally removal of the message.
#include "delivery/engine.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "log/app_log.hpp"

#include "delivery/client_session.hpp"
#include "delivery/dsn.hpp"
#include "policy/sts_source.hpp"
#include "log/metrics.hpp"
#include "delivery/scheduler.hpp"
#include "delivery/tls_policy.hpp"
#include "policy/dane.hpp"
#include "policy/state_file.hpp"

namespace postern::delivery {

namespace asio = boost::asio;
using std::chrono::steady_clock;
using policy::mta_sts_source;
using policy::sts_view;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// receive_connector of a report about an undeliverable bounce: its own failure is never reported.
constexpr std::string_view double_bounce_origin = "double-bounce";

/// Writes one session's lines to the send protocol log (DESIGN §6).
class log_sink : public transcript_sink {
public:
    log_sink(log::protocol_log& log, std::string connector, bool enabled)
        : log_(log), connector_(std::move(connector)), enabled_(enabled) {}
    void connected(const std::string& local, const std::string& remote) override {
        logger_.emplace(&log_, connector_, local, remote, enabled_);
        logger_->connect();
    }
    void line(transcript_line::kind what, std::string_view text) override {
        if (!logger_) return;
        switch (what) {
        case transcript_line::kind::sent: logger_->sent(text); break;
        case transcript_line::kind::received: logger_->received(text); break;
        case transcript_line::kind::info: logger_->info(text); break;
        }
    }
    void disconnected() override {
        if (logger_) logger_->disconnect();
    }

private:
    log::protocol_log& log_;
    std::string connector_;
    bool enabled_;
    std::optional<log::session_logger> logger_;
};

// GCC 12 destroys temporaries inside a co_await expression twice in some cases (PR
// c++/100611), so every object with a destructor that goes into a co_await below is a
// named variable first.
/// store::change as an awaitable, resumed on the awaiting coroutine's executor.
asio::awaitable<queue::change_result> change_async(queue::store& store, std::string id, queue::envelope_change apply) {
    auto executor = co_await asio::this_coro::executor;
    auto initiation = [&store, executor](auto handler, std::string i, queue::envelope_change a) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store.change(std::move(i), std::move(a), [shared, executor](queue::change_result r) {
            asio::post(executor, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        });
    };
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(queue::change_result)>(
        initiation, asio::use_awaitable, std::move(id), std::move(apply));
}

/// Several store::change calls submitted at once (so they share group commits); resumes
/// once every one is answered, with the answers in the same order.
asio::awaitable<std::vector<queue::change_result>> change_all_async(
    queue::store& store, std::vector<std::pair<std::string, queue::envelope_change>> changes) {
    auto executor = co_await asio::this_coro::executor;
    auto initiation = [&store, executor](auto handler, std::vector<std::pair<std::string, queue::envelope_change>> list) {
        using handler_type = decltype(handler);
        struct shared_state {
            shared_state(std::size_t n, handler_type h) : answers(n), remaining(n), handler(std::move(h)) {}
            std::vector<queue::change_result> answers;
            std::atomic<std::size_t> remaining;
            handler_type handler;
        };
        auto state = std::make_shared<shared_state>(list.size(), std::move(handler));
        if (list.empty()) {
            asio::post(executor, [state]() mutable { state->handler(std::move(state->answers)); });
            return;
        }
        for (std::size_t i = 0; i < list.size(); ++i)
            store.change(std::move(list[i].first), std::move(list[i].second),
                         [state, i, executor](queue::change_result r) {
                             state->answers[i] = std::move(r);
                             if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
                                 asio::post(executor, [state]() mutable { state->handler(std::move(state->answers)); });
                         });
    };
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::vector<queue::change_result>)>(
        initiation, asio::use_awaitable, std::move(changes));
}

const config::send_connector* find_connector(const config::configuration& cfg, const std::string& name) {
    for (const auto& c : cfg.send_connectors)
        if (c.name == name) return &c;
    return nullptr;
}

recipient_result make_result(verdict what, std::string reason, smtp::enhanced_code status = {}) {
    recipient_result r;
    r.what = what;
    r.reason = std::move(reason);
    r.status = status;
    return r;
}

struct candidate {
    std::string host;                      // name for logs
    asio::ip::tcp::endpoint endpoint;
    bool smart_host = false;
    std::string mx_name;                   // for domain validation when the MX answer is secure
    bool mx_secure = false;
    // DANE (RFC 7672 §2.2): the MX answer (or for the A/AAAA fallback, the denial of MX)
    // and this host's address answer were DNSSEC-secure.
    bool route_secure = false;
    bool address_secure = false;
    std::string canonical;                 // the CNAME-expanded host name, "" when none
};

}  // namespace

struct engine::impl {
    impl(const config::configuration& cfg, queue::store& store, next_hop_source& resolver,
         std::shared_ptr<const client_tls_material> client_tls, log::protocol_log& send_log, engine_options options)
        : cfg_(std::make_shared<const config::configuration>(cfg)),
          dnssec_(config::validates_dnssec(cfg.dns)),
          store_(store),
          resolver_(resolver),
          material_(std::move(client_tls)),
          send_log_(send_log),
          options_(options),
          tls_memory_(options.plaintext_memory),
          strand_(asio::make_strand(io_)),
          timer_(strand_) {
        if (!cfg.server.data_dir.empty())
            sts_ = std::make_unique<mta_sts_source>(cfg.server.data_dir / "mta-sts.json");
        downgrades_ = std::make_unique<policy::downgrade_memory>(
            cfg.server.data_dir.empty() ? std::filesystem::path() : cfg.server.data_dir / "downgrade.json");
        tlsrpt_ = std::make_unique<policy::tlsrpt_ledger>(
            cfg.server.data_dir.empty() ? std::filesystem::path() : cfg.server.data_dir / "tlsrpt.json",
            std::chrono::system_clock::now());
    }

    // --- state shared between threads (mutex_) ---------------------------------------
    /// A connection with nothing to send, waiting (connection_cache_time) for more mail to
    /// its next hop; dispatch() wakes it instead of opening a new connection.
    struct idle_connection {
        std::shared_ptr<asio::steady_timer> timer;   // waited on by the connection's strand
        asio::any_io_executor executor;
    };
    struct destination_state {
        std::deque<job> queue;
        unsigned active = 0;                          // connections, idle ones included
        std::deque<idle_connection> idle;
    };
    mutable std::mutex mutex_;
    std::condition_variable idle_cv_;
    std::shared_ptr<const config::configuration> cfg_;
    std::atomic<bool> dnssec_;                                   // [dns] validates: DANE can apply
    queue::store& store_;
    next_hop_source& resolver_;
    std::unique_ptr<next_hop_source> owned_resolver_;            // the adapter, when given a route::resolver
    std::shared_ptr<const client_tls_material> material_;
    std::map<std::string, std::shared_ptr<SSL_CTX>> contexts_;    // per send connector (and MTA-STS variants)
    std::unique_ptr<mta_sts_source> sts_;                         // null without a data_dir (tests)
    std::unique_ptr<policy::downgrade_memory> downgrades_;        // in memory only without a data_dir
    std::unique_ptr<policy::tlsrpt_ledger> tlsrpt_;               // TLS-RPT counts (RFC 8460)
    std::chrono::steady_clock::time_point last_tlsrpt_flush_ = std::chrono::steady_clock::now();
    log::protocol_log& send_log_;
    engine_options options_;
    tls_failure_memory tls_memory_;
    std::map<destination, destination_state> destinations_;
    std::set<std::pair<std::string, std::size_t>> in_flight_;     // (message id, recipient index)
    std::set<std::string> notices_in_progress_;
    std::map<client_session*, asio::any_io_executor> sessions_;
    unsigned active_connections_ = 0;
    unsigned active_tasks_ = 0;                                    // connections + notice tasks
    engine_stats stats_;
    bool started_ = false;
    bool stopping_ = false;
    std::uint64_t saved_counter_ = 0;
    std::mutex stop_mutex_;

    // Bodies handed over at commit (committed(envelope, body)): the first delivery attempt
    // of the message takes its body from here instead of reading the store. Oldest first
    // out beyond held_bodies_limit; a message planned without a job gives its body up.
    struct held_body {
        std::string id;
        std::string body;
    };
    std::list<held_body> held_bodies_;
    std::unordered_map<std::string, std::list<held_body>::iterator> held_by_id_;
    std::uint64_t held_bytes_ = 0;
    /// Twice the receive side's flow-control backlog: with arrival and delivery in step,
    /// every body is used from here once.
    static constexpr std::uint64_t held_bodies_limit = 16ull * 1024 * 1024;

    void hold_body(std::string id, std::string body) {   // mutex_ held
        if (body.size() > held_bodies_limit || held_by_id_.contains(id)) return;
        held_bytes_ += body.size();
        held_bodies_.push_back({std::move(id), std::move(body)});
        held_by_id_.emplace(held_bodies_.back().id, std::prev(held_bodies_.end()));
        while (held_bytes_ > held_bodies_limit) drop_held_body(held_bodies_.front().id);
    }
    void drop_held_body(const std::string& id) {          // mutex_ held
        auto it = held_by_id_.find(id);
        if (it == held_by_id_.end()) return;
        held_bytes_ -= it->second->body.size();
        held_bodies_.erase(it->second);
        held_by_id_.erase(it);
    }
    std::optional<std::string> take_held_body(const std::string& id) {
        std::lock_guard lock(mutex_);
        auto it = held_by_id_.find(id);
        if (it == held_by_id_.end()) return std::nullopt;
        std::string body = std::move(it->second->body);
        drop_held_body(id);
        return body;
    }

    // --- the loop ------------------------------------------------------------------------
    // Declared after everything coroutines touch, so it is destroyed first.
    asio::io_context io_;
    asio::strand<asio::io_context::executor_type> strand_;
    asio::steady_timer timer_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::vector<std::thread> threads_;
    std::atomic<bool> wake_pending_{false};
    std::atomic<std::uint64_t> waiting_bytes_{0};   // bodies of jobs queued, not yet started
    // Scan requests (mutex_): ids committed since the last scan, and whether the whole
    // queue must be read. last_full_scan_ is only touched on strand_.
    std::vector<std::string> committed_ids_;
    std::vector<smtp::envelope> committed_envelopes_;
    bool full_scan_requested_ = true;
    std::chrono::steady_clock::time_point last_full_scan_{};
    std::chrono::steady_clock::time_point last_tick_{};

    // When each queued message next needs the engine (scheduler next_due), mutex_: every
    // tick reads only the messages that came due, not the whole queue.
    std::multimap<smtp::sys_time, std::string> due_;
    std::unordered_map<std::string, std::multimap<smtp::sys_time, std::string>::iterator> due_entry_;

    void index_due(const std::string& id, std::optional<smtp::sys_time> when) {   // mutex_ held
        if (auto it = due_entry_.find(id); it != due_entry_.end()) {
            due_.erase(it->second);
            due_entry_.erase(it);
        }
        if (when) due_entry_.emplace(id, due_.emplace(*when, id));
    }
    std::vector<std::string> take_due(smtp::sys_time now) {                       // mutex_ held
        std::vector<std::string> ids;
        while (!due_.empty() && due_.begin()->first <= now) {
            ids.push_back(due_.begin()->second);
            due_entry_.erase(due_.begin()->second);
            due_.erase(due_.begin());
        }
        return ids;
    }

    std::shared_ptr<const config::configuration> config() const {
        std::lock_guard lock(mutex_);
        return cfg_;
    }

    void debug(const std::string& text) const {
        if (config()->debug.smtp_client_debug) spdlog::info("smtp-client {}", log::printable(text));
    }

    // --- scanning --------------------------------------------------------------------------

    // Two kinds of scan. A full scan reads the whole queue: at start, when wake() asks
    // (queue retry/release), and once every poll_interval to catch retries that came due.
    // Between them, a commit only adds its own message (committed(id)): reading and
    // decoding the whole queue after every commit would cost O(queue) per message.
    asio::awaitable<void> scan_loop() {
        for (;;) {
            bool full = false;
            std::vector<std::string> new_ids;
            std::vector<smtp::envelope> fresh;
            const auto now = std::chrono::steady_clock::now();
            {
                std::lock_guard lock(mutex_);
                if (stopping_) break;
                full = full_scan_requested_ || now - last_full_scan_ >= options_.full_scan_interval;
                full_scan_requested_ = false;
                new_ids.swap(committed_ids_);
                fresh.swap(committed_envelopes_);
                if (!full) {
                    auto due = take_due(std::chrono::system_clock::now());
                    new_ids.insert(new_ids.end(), std::make_move_iterator(due.begin()), std::make_move_iterator(due.end()));
                }
                last_tick_ = now;
            }
            wake_pending_ = false;
            if (store_.condition() == queue::store_condition::failed) {
                // Nothing is read or planned while the store recovers; then one full scan.
                std::lock_guard lock(mutex_);
                full_scan_requested_ = true;
                full = false;
                last_full_scan_ = now;
                last_tick_ = now;                 // and look again after poll_interval
                new_ids.clear();
                fresh.clear();
            }
            try {
                if (full) {
                    last_full_scan_ = now;
                    scan(store_.list());
                } else {
                    fresh.reserve(fresh.size() + new_ids.size());
                    for (const auto& id : new_ids)
                        if (auto env = store_.load_envelope(id)) fresh.push_back(std::move(*env));
                    scan(fresh);
                }
            } catch (const std::exception& e) {
                spdlog::error("delivery: queue scan failed: {}", e.what());
            }
            if (now - last_tlsrpt_flush_ >= std::chrono::minutes(1)) {
                last_tlsrpt_flush_ = now;
                tlsrpt_->flush();   // a crash loses at most a minute of TLS-RPT counts
            }
            if (wake_pending_) continue;
            timer_.expires_at(last_tick_ + options_.poll_interval);
            co_await timer_.async_wait(use_tuple);
        }
        finish_task();
    }

    void scan(const std::vector<smtp::envelope>& envelopes) {
        // DESIGN §5: while the store is failed nothing new starts; its results could not
        // be recorded, and every send would be one more to repeat later.
        if (store_.condition() == queue::store_condition::failed) return;
        const auto cfg = config();
        const auto now = std::chrono::system_clock::now();
        for (const auto& env : envelopes) {
            if (finished(env)) {
                {
                    std::lock_guard lock(mutex_);
                    index_due(env.id, std::nullopt);
                }
                remove_message(env.id);
                continue;
            }
            if (delay_notice_due(env, cfg->queue, now)) start_delay_notice(env.id);
            plan p;
            {
                std::lock_guard lock(mutex_);
                if (stopping_) return;
                p = plan_message(*cfg, env, now, [&](std::size_t i) { return in_flight_.contains({env.id, i}); });
                for (auto& j : p.jobs) {
                    for (auto i : j.recipients) in_flight_.insert({env.id, i});
                    j.body_size = env.body_size;
                    waiting_bytes_ += j.body_size;
                    destinations_[j.where].queue.push_back(std::move(j));
                }
                for (const auto& u : p.unroutable) in_flight_.insert({env.id, u.recipient});
                if (p.jobs.empty()) drop_held_body(env.id);
                index_due(env.id, next_due(env, cfg->queue, [&](std::size_t i) { return in_flight_.contains({env.id, i}); }));
            }
            for (const auto& u : p.unroutable) {
                begin_task();
                asio::co_spawn(io_, fail_unroutable(u), asio::detached);
            }
        }
        dispatch();
    }

    void begin_task() {
        std::lock_guard lock(mutex_);
        ++active_tasks_;
    }

    asio::awaitable<void> fail_unroutable(unroutable_recipient u) {
        try {
            std::vector<std::size_t> indices{u.recipient};
            std::vector<recipient_result> results;
            results.push_back(make_result(verdict::permanent, u.reason, {5, 4, 4}));
            co_await finish_recipients(u.message_id, std::move(indices), std::move(results));
        } catch (const std::exception& e) {
            spdlog::error("delivery: {}: {}", u.message_id, e.what());
        }
        finish_task();
    }

    void dispatch() {
        const auto cfg = config();
        std::vector<destination> to_start;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) return;
            const unsigned total = std::max(1u, cfg->server.max_outbound_connections);
            for (auto& [where, state] : destinations_) {
                // Idle connections to this next hop take the new jobs first.
                for (std::size_t woken = 0; woken < state.queue.size() && !state.idle.empty(); ++woken)
                    wake_idle(state.idle);
                const auto* connector = find_connector(*cfg, where.connector);
                const unsigned per_destination = connector ? std::max(1u, connector->max_per_destination) : 1u;
                // At the total limit, an idle connection elsewhere gives up its slot: it
                // finds nothing to send and closes, and its end dispatches again.
                if (!state.queue.empty() && state.active == 0 && active_connections_ >= total)
                    for (auto& [other, other_state] : destinations_)
                        if (!other_state.idle.empty()) {
                            wake_idle(other_state.idle);
                            break;
                        }
                while (!state.queue.empty() && state.active < per_destination &&
                       (state.active == 0 || state.queue.size() > state.active) &&
                       active_connections_ < total) {
                    ++state.active;
                    ++active_connections_;
                    ++active_tasks_;
                    ++stats_.attempts;
                    to_start.push_back(where);
                }
            }
        }
        // Outside the lock: co_spawn may run the coroutine's first steps inline.
        for (auto& where : to_start) asio::co_spawn(asio::make_strand(io_), run_connection(where), asio::detached);
    }

    void finish_task() {
        std::lock_guard lock(mutex_);
        --active_tasks_;
        idle_cv_.notify_all();
    }

    // --- one connection ---------------------------------------------------------------------

    std::shared_ptr<SSL_CTX> context_for(const config::configuration& cfg, const config::send_connector& c) {
        std::lock_guard lock(mutex_);
        auto it = contexts_.find(c.name);
        if (it != contexts_.end()) return it->second;
        auto ctx = make_client_context(cfg, c, material_.get());
        contexts_[c.name] = ctx;
        return ctx;
    }

    /// MTA-STS verifies against the system store and the key ring's roots (RFC 8461 §4.2),
    /// whatever the connector trusts; `https` is the policy fetch's (no client certificate).
    std::shared_ptr<SSL_CTX> sts_context_for(const config::configuration& cfg, const config::send_connector& c,
                                             bool https) {
        const std::string key = c.name + (https ? "\x01https" : "\x01mta-sts");
        std::lock_guard lock(mutex_);
        if (auto it = contexts_.find(key); it != contexts_.end()) return it->second;
        config::send_connector wide = c;
        wide.trust_system_store = true;
        wide.trusted_roots.clear();
        if (https) wide.client_certificate.clear();
        auto ctx = make_client_context(cfg, wide, material_.get());
        contexts_[key] = ctx;
        return ctx;
    }

    /// The MTA-STS policy for an MX-routed destination whose connector honours it (and
    /// whose message does not say TLS-Required: No).
    asio::awaitable<sts_view> sts_for(const config::configuration& cfg, const config::send_connector& connector,
                                      const destination& where) {
        if (!sts_ || !connector.mta_sts || !connector.smart_hosts.empty() || where.domain.empty() ||
            waives_published_policy(where.tls))
            co_return sts_view{};
        std::shared_ptr<SSL_CTX> https;
        try {
            https = sts_context_for(cfg, connector, true);
        } catch (const std::exception& e) {
            spdlog::error("delivery: MTA-STS for {}: {}", connector.name, e.what());
            co_return sts_view{};
        }
        co_return co_await sts_->lookup(resolver_, where.domain, cfg.dns.mta_sts_port, std::move(https));
    }

    session_settings settings_for(const config::configuration& cfg) const {
        session_settings s;
        s.helo_name = cfg.server.hostname.empty() ? "localhost" : cfg.server.hostname;
        s.timeouts = options_.timeouts;
        s.io_trace = cfg.debug.smtp_io_trace;
        s.trace_tls_handshake = cfg.debug.trace_tls_handshake;
        s.report_tls_handshake_errors = cfg.debug.report_tls_handshake_errors;
        s.client_debug = cfg.debug.smtp_client_debug;
        return s;
    }

    /// The hosts to try, in order; on failure `failure` says what every recipient gets.
    asio::awaitable<std::vector<candidate>> candidates_for(const config::configuration& cfg,
                                                           const config::send_connector& c, const destination& where,
                                                           recipient_result& failure) {
        std::vector<candidate> out;
        if (!c.smart_hosts.empty()) {
            std::string errors;
            for (const auto& sh : c.smart_hosts) {
                boost::system::error_code ec;
                auto address = asio::ip::make_address(sh.host, ec);
                if (!ec) {
                    out.push_back({sh.text.empty() ? sh.host : sh.text, {address, sh.port}, true, {}, false, false, false, {}});
                    continue;
                }
                auto resolved = co_await route::resolve_host_async(resolver_, sh.host);
                if (!resolved.second.empty()) errors += (errors.empty() ? "" : "; ") + resolved.second;
                for (const auto& a : resolved.first.addresses)
                    out.push_back({sh.host, {a, sh.port}, true, {}, false, false, false, {}});
            }
            if (out.empty()) failure = make_result(verdict::transient, "smart hosts unresolvable: " + errors);
            co_return out;
        }
        std::vector<std::string> own_names{cfg.server.hostname};
        auto hops = co_await route::resolve_async(resolver_, where.domain, std::move(own_names));
        switch (hops.status) {
        case route::lookup_status::ok:
            for (const auto& h : hops.hosts)
                for (const auto& a : h.addresses)
                    out.push_back({h.name, {a, cfg.dns.mx_port}, false, hops.from_mx ? h.name : std::string(),
                                   hops.from_mx && hops.mx_status == route::dnssec::secure,
                                   hops.mx_status == route::dnssec::secure,
                                   h.address_status == route::dnssec::secure, h.canonical_name});
            if (out.empty()) failure = make_result(verdict::transient, "no addresses for the next hops of " + where.domain);
            break;
        case route::lookup_status::null_mx:
            // DESIGN §5 / RFC 7505 §4.2: the domain says it takes no mail.
            failure = make_result(verdict::permanent,
                                  "556 5.1.10 " + where.domain + " does not accept mail (null MX)", {5, 1, 10});
            break;
        case route::lookup_status::no_such_domain:
            failure = make_result(verdict::permanent, "no such domain: " + where.domain +
                                                          (hops.reason.empty() ? "" : " (" + hops.reason + ")"),
                                  {5, 1, 2});
            break;
        case route::lookup_status::defer:
            failure = make_result(verdict::transient, hops.reason.empty() ? "DNS lookup deferred" : hops.reason, {4, 4, 3});
            break;
        }
        co_return out;
    }

    asio::awaitable<void> run_connection(destination where) {
        std::string error;
        try {
            co_await connection(where);
        } catch (const std::exception& e) {
            error = e.what();
        }
        if (!error.empty()) {
            spdlog::error("delivery: connection to {} failed: {}", where.to_string(), error);
            try {
                auto failure = make_result(verdict::transient, "internal error: " + error);
                co_await fail_queued(where, failure);
            } catch (const std::exception& e) {
                spdlog::error("delivery: {}", e.what());
            }
        }
        {
            std::lock_guard lock(mutex_);
            --destinations_[where].active;
            --active_connections_;
        }
        dispatch();
        finish_task();
    }

    /// The domain of the first queued recipient for `where` (the name a certificate must
    /// carry for an MX hop); std::nullopt when nothing waits any more.
    std::optional<std::string> first_domain_of(const destination& where) {
        std::string first_message;
        std::size_t first_recipient = 0;
        {
            std::lock_guard lock(mutex_);
            auto& q = destinations_[where].queue;
            if (q.empty()) return std::nullopt;
            if (!where.domain.empty()) return where.domain;
            if (q.front().recipients.empty()) return std::string();
            first_message = q.front().message_id;
            first_recipient = q.front().recipients.front();
        }
        // The store is read outside the lock: every connection and the scan share it.
        if (auto env = store_.load_envelope(first_message); env && first_recipient < env->recipients.size())
            return recipient_domain(env->recipients[first_recipient].address);
        return std::string();
    }

    /// A session that reached the idle state, with the log sink it writes to (which must
    /// outlive it: declared first, destroyed last).
    struct open_session {
        std::unique_ptr<log_sink> sink;
        std::unique_ptr<client_session> session;
    };

    /// What DANE demands of one host (DESIGN §3 `dane`): nothing for a smart host, with
    /// dane = "off" or without a validating resolver; else as its TLSA records say. The
    /// TLSA lookup is made only where it can count (secure MX and address answers).
    asio::awaitable<policy::dane_requirement> dane_for(const config::send_connector& connector,
                                                      const candidate& host) {
        if (host.smart_host || connector.dane == config::dane_mode::off || !dnssec_) co_return policy::dane_requirement{};
        // RFC 7672 §2.2: _25._tcp.HOST, the port MX hosts serve; [dns] mx_port only moves
        // where tests connect (DESIGN §3).
        constexpr std::uint16_t smtp_port = 25;
        route::tlsa_answer tlsa;
        std::string base;
        if (host.route_secure && host.address_secure && !host.canonical.empty()) {
            // RFC 7672 §2.2.2: a securely expanded alias is asked first; only when it
            // securely has no TLSA records is the original name asked.
            tlsa = co_await route::resolve_tlsa_async(resolver_, host.canonical, smtp_port);
            if (tlsa.what != route::tlsa_answer::kind::none) base = host.canonical;
        }
        if (host.route_secure && host.address_secure && base.empty())
            tlsa = co_await route::resolve_tlsa_async(resolver_, host.host, smtp_port);
        auto requirement = policy::dane_for_host(connector.dane, host.route_secure, host.address_secure, tlsa);
        requirement.base = base;
        if (!base.empty() && !requirement.reason.empty()) requirement.reason += " at " + base;
        co_return requirement;
    }

    /// A host not connected to (DANE rules it out, or it is no protected path for a
    /// REQUIRETLS message): a session line of its own says why, with its verdict word.
    recipient_result skip_host(const config::send_connector& connector, const candidate& host, verdict what,
                               smtp::enhanced_code status, const std::string& why, const std::string& result) {
        log_sink sink(send_log_, connector.name, connector.logging == config::protocol_logging::verbose);
        sink.connected(std::string(), endpoint_text(host.endpoint));
        sink.line(transcript_line::kind::info,
                  fmt::format("not connecting to {}: {}; verdict=fail; result={}", host.host, why, result));
        sink.disconnected();
        log::metrics::global().tls_verdict(log::direction::outbound, false);
        log::metrics::global().tls_result(result);
        auto failure = make_result(what, fmt::format("{}: {} ({})", host.host, why, result), status);
        failure.host = host.host;
        failure.tls = result;
        return failure;
    }

    /// RFC 8689 §4.2.1: why `host` is no protected path for a REQUIRETLS message (an MX
    /// name from DNS that is not DNSSEC-secure, TLSA that allows no authentication, a
    /// smart host the administrator did not name for verified TLS); empty when it is one.
    static std::string requiretls_path_problem(const config::send_connector& connector, const candidate& host,
                                               const policy::dane_requirement& dane, const sts_view& sts) {
        if (host.smart_host)
            return connector.require_tls && connector.auth_level == config::tls_auth_level::domain_validation &&
                           !connector.tls_domain.empty()
                       ? std::string()
                       : "REQUIRETLS: send connector " + connector.name +
                             " is no verified path (it needs require_tls, domain_validation and tls_domain)";
        if (!host.route_secure && !(sts.enforce() && sts.policy->lists(host.host)))
            return "REQUIRETLS: the MX answer is not DNSSEC-secure and no enforced MTA-STS policy lists it";
        if (dane.what == policy::dane_requirement::kind::tls_unauthenticated)
            return "REQUIRETLS: its TLSA records allow no authentication";
        return {};
    }

    /// One host's session target: the connector's rules, raised by DANE (unless the
    /// message says TLS-Required: No) and, for REQUIRETLS, to STARTTLS with a certificate
    /// verified with a name (the recipient domain, or the MX name from secure DNS).
    session_target target_for(const config::configuration& cfg, const config::send_connector& connector,
                              const destination& where, const std::string& first_domain, const candidate& host,
                              const policy::dane_requirement& dane, const sts_view& sts, std::shared_ptr<SSL_CTX> ctx) {
        config::send_connector strict = connector;
        if (where.tls == tls_demand::requiretls) {
            strict.require_tls = true;
            strict.ignore_starttls = false;
            strict.auth_level = config::tls_auth_level::domain_validation;
        }
        const auto key = endpoint_text(host.endpoint);
        session_target target;
        target.host = host.host;
        target.endpoint = host.endpoint;
        target.plan = plan_attempt(strict, host.smart_host, tls_memory_.recall(key, steady_clock::now()));
        target.expectation = expectation_for(strict, first_domain, host.mx_name, host.mx_secure);
        target.tls = std::move(ctx);
        if (waives_published_policy(where.tls) && dane.what != policy::dane_requirement::kind::not_applicable)
            target.expectation.policy = "TLS-Required: No: DANE not enforced (" + dane.reason + ")";
        else
            apply_dane(dane, host.host, first_domain, target.expectation, target.plan);
        if (dane.what == policy::dane_requirement::kind::not_applicable) apply_sts(cfg, connector, host, sts, target);
        return target;
    }

    /// RFC 8461 §4.2 and §5: an enforced policy that lists this MX demands STARTTLS and a
    /// certificate valid for the MX name from the system store or the key ring's roots;
    /// a testing policy, or a fetch that failed, is only noted. DANE wins where it applies.
    void apply_sts(const config::configuration& cfg, const config::send_connector& connector, const candidate& host,
                   const sts_view& sts, session_target& target) {
        if (!sts.problem.empty() && !sts.policy) {
            target.expectation.policy = sts.problem + " (" + sts.result + ")";
            return;
        }
        if (!sts.testing() && !sts.enforce()) return;
        std::string mx = host.host;
        for (auto& c : mx) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        while (!mx.empty() && mx.back() == '.') mx.pop_back();
        auto& want = target.expectation;
        if (sts.testing()) {
            // Checked as enforce would check it (the system store, the MX name), not enforced.
            want.policy = fmt::format("MTA-STS testing (id {}): not enforced", sts.policy->id);
            if (!sts.policy->lists(host.host)) want.policy += "; enforce would fail: the policy does not list this MX";
            want.sts_testing = true;
            want.names = {mx};
            want.sni = mx;
            try {
                target.tls = sts_context_for(cfg, connector, false);
            } catch (const std::exception& e) {
                spdlog::error("delivery: MTA-STS for {}: {}", connector.name, e.what());
            }
            return;
        }
        want.require_tls = true;
        want.required = auth_level::domain_validation;
        want.names = {mx};
        want.sni = mx;
        want.mta_sts = true;
        want.policy = fmt::format("MTA-STS enforce (id {})", sts.policy->id);
        target.plan.starttls = client_settings::starttls_use::required;
        target.plan.implicit_tls = false;
        target.plan.plaintext_after_tls_failure = false;
        target.plan.previous_tls_failure.clear();
        try {
            target.tls = sts_context_for(cfg, connector, false);
        } catch (const std::exception& e) {
            spdlog::error("delivery: MTA-STS for {}: {}", connector.name, e.what());
        }
    }

    /// RFC 8689 §4.2.1 / DESIGN §3: a REQUIRETLS message that met a host's verified TLS
    /// refusing it for good (wrong certificate, no STARTTLS) is returned, not retried.
    static bool requiretls_refused_for_good(const session_failure& f) {
        return f.reason.starts_with("TLS verdict") || f.reason == "STARTTLS not offered";
    }

    /// What one host's failed opening means for the message (DESIGN §3): REQUIRETLS
    /// refused for good, or worth another try.
    struct host_outcome {
        recipient_result failure;
        bool permanent = false;
    };
    static host_outcome judge_failed_open(const open_report& report, const candidate& host, bool requiretls) {
        const auto& f = *report.failure;
        host_outcome out;
        out.failure = make_result(verdict::transient, f.reason);
        out.failure.host = host.host;
        if (report.connected) out.failure.tls = report.verdict.result;
        if (f.remote) out.failure.remote = f.remote;   // a refusal by one host: try the others, then retry
        if (requiretls && requiretls_refused_for_good(f)) {
            out.failure.what = verdict::permanent;
            out.failure.status = {5, 7, 10};
            out.failure.reason = "REQUIRETLS: " + f.reason;
            out.permanent = true;
        }
        return out;
    }

    /// RFC 8460: one TLS outcome of an MX-routed delivery, under the policy in force for
    /// its host (DANE, else an MTA-STS policy, else none). `result` is "" for a success.
    void count_for_tlsrpt(const destination& where, const candidate& host, const policy::dane_requirement& dane,
                          const sts_view& sts, const std::string& result) {
        // RFC 8460 §5.3: the sessions that carry reports are not reported.
        if (host.smart_host || where.domain.empty() || where.tls == tls_demand::report) return;
        policy::tlsrpt_session s;
        s.policy_domain = where.domain;
        s.receiving_mx = host.host;
        s.receiving_ip = host.endpoint.address().to_string();
        s.result = result;
        if (dane.what != policy::dane_requirement::kind::not_applicable) {
            s.policy_type = "tlsa";
            for (const auto& r : dane.records) {
                std::string hex;
                for (auto b : r.data) hex += fmt::format("{:02x}", b);
                s.policy_strings.push_back(fmt::format("{} {} {} {}", r.usage, r.selector, r.matching, hex));
            }
        } else if (sts.policy && sts.policy->what != policy::sts_policy::mode::none) {
            s.policy_type = "sts";
            s.policy_strings = {"version: STSv1", std::string("mode: ") + policy::to_string(sts.policy->what)};
            for (const auto& mx : sts.policy->mx) s.policy_strings.push_back("mx: " + mx);
            s.policy_strings.push_back(fmt::format("max_age: {}", sts.policy->max_age.count()));
            s.mx_patterns = sts.policy->mx;
        } else {
            s.policy_type = "no-policy-found";
        }
        tlsrpt_->record(s);
    }

    /// What one connection counts for TLS-RPT: "" for a success, else the RFC 8460 result
    /// type; nothing for a connection that failed before any TLS, or plaintext that nothing
    /// asked to avoid. Under an MTA-STS testing policy, what enforce would have said (RFC
    /// 8461 §5: a testing policy reports failures, it does not refuse).
    static std::optional<std::string> tlsrpt_result(const open_report& report, const candidate& host,
                                                    const policy::dane_requirement& dane, const sts_view& sts) {
        const auto& v = report.verdict;
        if (!report.connected) return std::nullopt;
        const bool testing = sts.testing() && dane.what == policy::dane_requirement::kind::not_applicable;
        if (testing && !sts.policy->lists(host.host)) return "validation-failure";
        if (v.tls && v.ok()) return testing ? v.testing_failure : "";
        if (!v.tls && v.result == "cleartext") return testing ? std::optional<std::string>("starttls-not-supported")
                                                              : std::nullopt;
        return v.result;
    }

    /// DESIGN §3 downgrade memory, after a host is ready: an authenticating verdict renews
    /// the domain's entry; a lower one than remembered is reported in the session's log,
    /// or (enforce) refused: the return value is then why, and the session is not used.
    std::optional<std::string> check_downgrade(const config::send_connector& connector, const destination& where,
                                               const candidate& host, const std::string& verdict, log_sink& sink) {
        if (connector.downgrades == config::downgrade_protection::off || host.smart_host || where.domain.empty() ||
            waives_published_policy(where.tls))
            return std::nullopt;
        const auto now = std::chrono::system_clock::now();
        if (policy::downgrade_memory::rank(verdict) > 0) {
            downgrades_->seen(where.domain, verdict, host.host, now);
            return std::nullopt;
        }
        const auto before = downgrades_->would_lower(where.domain, verdict, now);
        if (!before) return std::nullopt;
        const bool enforce = connector.downgrades == config::downgrade_protection::enforce;
        const auto why = fmt::format("downgrade: {} was reached with {} at {} (last {}); {} offers only {}", where.domain,
                                     before->verdict, before->mx, policy::iso_utc(before->last_seen), host.host, verdict);
        downgrades_->note(where.domain, {now, host.host, verdict, enforce ? "deferred" : "reported"});
        sink.line(transcript_line::kind::info,
                  why + (enforce ? "; deferred (downgrade_protection = \"enforce\")"
                                 : "; delivered (downgrade_protection = \"report\": enforce would defer)"));
        spdlog::warn("delivery: {} {}", why, enforce ? "(deferred)" : "(reported)");
        if (!enforce) return std::nullopt;
        return why;
    }

    /// The MTA-STS policy for the hosts of `where`; one that could not be had is counted
    /// for TLS-RPT as a failure of its own (RFC 8460 §4.3.2.3), against the first host.
    asio::awaitable<sts_view> sts_counted(const config::configuration& cfg, const config::send_connector& connector,
                                          const destination& where, const std::vector<candidate>& hosts) {
        sts_view sts;
        if (hosts.empty()) co_return sts;
        sts = co_await sts_for(cfg, connector, where);
        if (!sts.policy && !sts.result.empty()) count_for_tlsrpt(where, hosts.front(), {}, sts, sts.result);
        co_return sts;
    }

    /// Tries the hosts in order (each once more in plaintext when opportunistic TLS
    /// failed on it, DESIGN §3) until one is ready for mail; `failure` says why none was.
    /// For a REQUIRETLS message that found no protected path and no transient failure,
    /// `failure` is permanent (5.7.10, or 5.7.30 when the hops do not offer REQUIRETLS).
    asio::awaitable<std::optional<open_session>> open_first_host(const config::configuration& cfg,
                                                                 const config::send_connector& connector,
                                                                 const destination& where,
                                                                 const std::string& first_domain,
                                                                 recipient_result& failure) {
        auto hosts = co_await candidates_for(cfg, connector, where, failure);
        std::shared_ptr<SSL_CTX> ctx;
        try {
            ctx = context_for(cfg, connector);
        } catch (const std::exception& e) {
            spdlog::error("delivery: send connector {}: {}", connector.name, e.what());
        }
        const bool requiretls = where.tls == tls_demand::requiretls;
        const sts_view sts = co_await sts_counted(cfg, connector, where, hosts);
        std::optional<recipient_result> refusal;   // REQUIRETLS: the last reason to return it
        bool transient_seen = false;
        const auto executor = co_await asio::this_coro::executor;
        std::map<std::string, policy::dane_requirement> dane_by_host;   // one TLSA lookup per host name
        for (const auto& host : hosts) {
            if (!dane_by_host.contains(host.host)) dane_by_host[host.host] = co_await dane_for(connector, host);
            const auto& dane = dane_by_host[host.host];
            if (auto problem = requiretls ? requiretls_path_problem(connector, host, dane, sts) : "";
                !problem.empty()) {
                refusal = skip_host(connector, host, verdict::permanent, {5, 7, 10}, problem, "validation-failure");
                continue;
            }
            if (dane.what == policy::dane_requirement::kind::host_unusable && !waives_published_policy(where.tls)) {
                const auto word = dane.reason.starts_with("dane = \"required\"") ? "dane-required" : "dnssec-invalid";
                failure = skip_host(connector, host, verdict::transient, {4, 7, 5}, "DANE: " + dane.reason, word);
                count_for_tlsrpt(where, host, dane, sts, word);
                transient_seen = true;
                continue;   // RFC 7672 §2.2: the next MX, else defer
            }
            if (sts.enforce() && dane.what == policy::dane_requirement::kind::not_applicable &&
                !sts.policy->lists(host.host)) {
                // RFC 8461 §5: an MX the enforced policy does not list is not used.
                failure = skip_host(connector, host, verdict::transient, {4, 7, 5},
                                    fmt::format("MTA-STS: the enforced policy (id {}) does not list this MX",
                                                sts.policy->id),
                                    "validation-failure");
                count_for_tlsrpt(where, host, dane, sts, "validation-failure");
                transient_seen = true;
                continue;
            }
            bool retry_plain = false;
            do {
                auto target = target_for(cfg, connector, where, first_domain, host, dane, sts, ctx);
                const auto key = endpoint_text(host.endpoint);
                const bool may_retry_plain = !target.expectation.require_tls &&
                                             !target.plan.plaintext_after_tls_failure &&
                                             target.plan.starttls != client_settings::starttls_use::never;
                debug(fmt::format("{}: trying {} ({}) for {}", connector.name, host.host, key, where.to_string()));
                open_session open;
                open.sink = std::make_unique<log_sink>(send_log_, connector.name,
                                                       connector.logging == config::protocol_logging::verbose);
                open.session = std::make_unique<client_session>(executor, settings_for(cfg), *open.sink);
                register_session(open.session.get(), executor);
                auto report = co_await open.session->open(std::move(target));
                // A TLS outcome (not a connection that failed before any): counted for TLS-RPT.
                if (auto counted = tlsrpt_result(report, host, dane, sts))
                    count_for_tlsrpt(where, host, dane, sts, *counted);
                if (report.ready && requiretls && !open.session->offered().requiretls) {
                    co_await open.session->close();   // RFC 8689 §4.2.1: the hop must offer REQUIRETLS
                    unregister_session(open.session.get());
                    refusal = make_result(verdict::permanent,
                                          host.host + " does not offer REQUIRETLS, needed for this message", {5, 7, 30});
                    refusal->host = host.host;
                    refusal->tls = report.verdict.result;
                    break;
                }
                if (report.ready) {
                    auto held = check_downgrade(connector, where, host, report.verdict.result, *open.sink);
                    if (!held) co_return open;
                    co_await open.session->close();
                    unregister_session(open.session.get());
                    failure = make_result(verdict::transient, *held, {4, 7, 5});
                    failure.host = host.host;
                    failure.tls = report.verdict.result;
                    transient_seen = true;
                    break;
                }
                unregister_session(open.session.get());
                auto outcome = judge_failed_open(report, host, requiretls);
                debug(fmt::format("{}: {} failed: {}", connector.name, host.host, outcome.failure.reason));
                if (outcome.permanent) refusal = outcome.failure;
                else transient_seen = true;
                failure = std::move(outcome.failure);
                // DESIGN §3 opportunistic sending: after a 454 or a failed handshake the
                // next attempt to that host may go in plaintext; make it at once.
                const auto& f = *report.failure;
                retry_plain = f.tls_setup && may_retry_plain && !retry_plain;
                if (retry_plain) {
                    std::string reason = f.reason;
                    if (f.remote && !f.remote->lines().empty()) reason += ": " + f.remote->lines().front();
                    tls_memory_.remember(key, reason, steady_clock::now());
                }
            } while (retry_plain);
        }
        if (requiretls && refusal && !transient_seen) failure = *refusal;
        co_return std::nullopt;
    }

    /// The next job for `where`, waiting up to the connector's connection_cache_time for
    /// one (as Postfix's smtp_connection_cache_time_limit): staying a moment costs less
    /// than a new TCP and TLS handshake when more mail comes.
    asio::awaitable<std::optional<job>> next_job_or_linger(const destination& where,
                                                           const config::send_connector& connector) {
        if (auto next = take_job(where)) co_return next;
        if (connector.connection_cache_time.count() <= 0) co_return std::nullopt;
        const auto executor = co_await asio::this_coro::executor;
        auto timer = std::make_shared<asio::steady_timer>(executor);
        timer->expires_after(connector.connection_cache_time);
        {
            std::lock_guard lock(mutex_);
            if (stopping_) co_return std::nullopt;
            destinations_[where].idle.push_back({timer, executor});
        }
        co_await timer->async_wait(use_tuple);
        {
            std::lock_guard lock(mutex_);
            auto& idle = destinations_[where].idle;
            std::erase_if(idle, [&](const idle_connection& c) { return c.timer == timer; });
        }
        co_return take_job(where);
    }

    asio::awaitable<void> connection(const destination& where) {
        const auto cfg = config();
        const auto* connector = find_connector(*cfg, where.connector);
        if (!connector) {
            auto gone = make_result(verdict::transient, "send connector " + where.connector + " is gone");
            co_await fail_queued(where, gone);
            co_return;
        }
        const auto first_domain = first_domain_of(where);
        if (!first_domain) co_return;
        recipient_result failure = make_result(verdict::transient, "no next hop");
        auto open = co_await open_first_host(*cfg, *connector, where, *first_domain, failure);
        if (!open) {
            co_await fail_queued(where, failure);
            co_return;
        }
        while (auto next = co_await next_job_or_linger(where, *connector)) {
            co_await deliver_job(*open->session, *next, *cfg);
            if (!open->session->usable()) break;
        }
        co_await open->session->close();
        unregister_session(open->session.get());
    }

    std::optional<job> take_job(const destination& where) {
        std::lock_guard lock(mutex_);
        auto& q = destinations_[where].queue;
        if (q.empty() || stopping_) return std::nullopt;
        auto next = std::move(q.front());
        q.pop_front();
        waiting_bytes_ -= next.body_size;
        return next;
    }

    /// Ends one idle connection's wait (mutex_ held): on its own strand, as timers want.
    static void wake_idle(std::deque<idle_connection>& idle) {
        auto c = std::move(idle.front());
        idle.pop_front();
        asio::post(c.executor, [timer = c.timer] { timer->cancel(); });
    }

    void register_session(client_session* s, asio::any_io_executor ex) {
        std::lock_guard lock(mutex_);
        sessions_[s] = ex;
    }
    void unregister_session(client_session* s) {
        std::lock_guard lock(mutex_);
        sessions_.erase(s);
    }

    /// Every job still queued for `where` gets `result` (no host could be reached). The
    /// changes are submitted together, so a destination with thousands of queued messages
    /// costs a few group commits, not one synced write each. While stopping, the jobs are
    /// only let go: no attempt was made, so their recipients keep their state.
    asio::awaitable<void> fail_queued(const destination& where, recipient_result result) {
        std::deque<job> jobs;
        bool stopping = false;
        {
            std::lock_guard lock(mutex_);
            jobs.swap(destinations_[where].queue);
            for (const auto& j : jobs) waiting_bytes_ -= j.body_size;
            stopping = stopping_;
        }
        if (stopping) {
            for (const auto& j : jobs) release(j.message_id, j.recipients);
            co_return;
        }
        std::vector<recording> recs;
        recs.reserve(jobs.size());
        for (auto& j : jobs) {
            std::vector<recipient_result> results(j.recipients.size(), result);
            if (auto env = store_.load_envelope(j.message_id))
                for (std::size_t k = 0; k < j.recipients.size(); ++k)
                    if (j.recipients[k] < env->recipients.size())
                        results[k].recipient = env->recipients[j.recipients[k]].address;
            recs.push_back(prepare(j.message_id, j.recipients, std::move(results)));
        }
        std::vector<std::pair<std::string, queue::envelope_change>> changes;
        changes.reserve(recs.size());
        for (const auto& rec : recs) changes.emplace_back(rec.id, rec.apply);
        auto answers = co_await change_all_async(store_, std::move(changes));
        for (std::size_t i = 0; i < recs.size(); ++i) co_await conclude(recs[i], answers[i]);
    }

    /// A new file in save_outbound_dir for one message sent; -1 when off or on failure.
    int open_saved(const config::configuration& cfg, const std::string& id) {
        if (cfg.debug.save_outbound_dir.empty()) return -1;
        std::uint64_t n;
        {
            std::lock_guard lock(mutex_);
            n = ++saved_counter_;
        }
        const auto file = cfg.debug.save_outbound_dir / fmt::format("{}-{}.eml", id, n);
        // DESIGN §3 Files: saved messages are mode 0600, created here, never overwritten.
        const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) spdlog::warn("save_outbound_dir: cannot create {}: {}", file.string(), std::strerror(errno));
        return fd;
    }

    static bool write_whole(int fd, std::string_view bytes) {
        while (!bytes.empty()) {
            const auto w = ::write(fd, bytes.data(), bytes.size());
            if (w <= 0) return false;
            bytes.remove_prefix(static_cast<std::size_t>(w));
        }
        return true;
    }

    void save_outbound(const config::configuration& cfg, const std::string& id, const std::string& body) {
        const int fd = open_saved(cfg, id);
        if (fd < 0) return;
        write_whole(fd, body);
        ::close(fd);
    }

    /// save_outbound for a body in a file: copied a block at a time.
    void save_outbound_file(const config::configuration& cfg, const std::string& id, const std::filesystem::path& from) {
        const int fd = open_saved(cfg, id);
        if (fd < 0) return;
        const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
        std::string block(64 * 1024, '\0');
        for (ssize_t n; in >= 0 && (n = ::read(in, block.data(), block.size())) > 0;)
            if (!write_whole(fd, std::string_view(block.data(), static_cast<std::size_t>(n)))) break;
        if (in >= 0) ::close(in);
        ::close(fd);
    }

    asio::awaitable<void> deliver_job(client_session& session, const job& j, const config::configuration& cfg) {
        auto held = take_held_body(j.message_id);
        auto env = store_.load_envelope(j.message_id);
        // A large body stays in its file and is streamed from there (DESIGN §7 "Bodies").
        const bool in_file = env && env->body_in_file;
        auto body = !env ? std::nullopt
                    : in_file ? std::optional<std::string>(std::string())
                    : held   ? std::move(held)
                             : store_.load_body(j.message_id);
        // Held (or deleted) since the scan planned it: not attempted.
        if (!env || !body || env->held) {
            release(j.message_id, j.recipients);
            co_return;
        }
        std::vector<std::size_t> indices;
        for (auto i : j.recipients)
            if (i < env->recipients.size() && env->recipients[i].state == smtp::recipient_state::pending)
                indices.push_back(i);
        std::vector<recipient_result> results(indices.size());
        std::vector<std::size_t> todo(indices.size());
        for (std::size_t k = 0; k < todo.size(); ++k) todo[k] = k;
        if (in_file) save_outbound_file(cfg, env->id, store_.body_file(j.message_id));
        else save_outbound(cfg, env->id, *body);
        // RFC 5321 §4.5.3.1.10: a 452 to RCPT asks for the remaining recipients in a new
        // transaction; go on while each round delivers someone.
        bool first_round = true;
        while (!todo.empty()) {
            // The body moves into the first transaction (a copy of a large body is not
            // free); the rare second round after a 452 reads it again.
            std::string round_body;
            if (in_file) {
                first_round = false;                 // nothing in memory to give away
            } else if (first_round) {
                round_body = std::move(*body);
                first_round = false;
            } else if (auto reread = store_.load_body(j.message_id)) {
                round_body = std::move(*reread);
            } else {
                break;
            }
            std::vector<std::size_t> which;
            for (auto k : todo) which.push_back(indices[k]);
            transaction tx = transaction_for(*env, which, std::move(round_body));   // with RET, ENVID, NOTIFY, ORCPT
            if (in_file) {
                tx.body_file = store_.body_file(j.message_id).string();
                tx.body_file_size = env->body_size;
            }
            auto round = co_await session.send(std::move(tx));
            std::vector<std::size_t> again;
            bool progress = false;
            for (std::size_t r = 0; r < todo.size() && r < round.size(); ++r) {
                results[todo[r]] = round[r];
                if (round[r].too_many_recipients()) again.push_back(todo[r]);
                else progress = true;
            }
            if (!progress || !session.usable()) break;
            todo = std::move(again);
        }
        for (std::size_t k = 0; k < indices.size(); ++k)
            if (results[k].recipient.empty()) results[k].recipient = env->recipients[indices[k]].address;
        // The results are recorded while this connection goes on with its next job: waiting
        // here for the synced write would hold every connection for one group commit per
        // message. The job's recipients stay in flight (never planned twice) until the
        // record is durable; a crash before that sends them again (at-least-once).
        begin_task();
        asio::co_spawn(io_, record_then_release(j.message_id, j.recipients, std::move(indices), std::move(results)),
                       asio::detached);
    }

    asio::awaitable<void> record_then_release(std::string id, std::vector<std::size_t> job_recipients,
                                              std::vector<std::size_t> indices, std::vector<recipient_result> results) {
        try {
            co_await finish_recipients(id, std::move(indices), std::move(results));
        } catch (const std::exception& e) {
            spdlog::error("delivery: {}: recording results failed: {}", id, e.what());
        }
        // Recipients of the job that were no longer pending are released too.
        release(id, job_recipients);
        finish_task();
    }

    void release(const std::string& id, const std::vector<std::size_t>& recipients) {
        std::lock_guard lock(mutex_);
        for (auto i : recipients) in_flight_.erase({id, i});
    }

    /// A message whose recipients are all done (left so by a crash between the last result
    /// and its removal): removed without waiting.
    void remove_message(const std::string& id) {
        store_.change(
            id, [](smtp::envelope& env, auto&) { return finished(env) ? queue::change_action::remove : queue::change_action::keep; },
            // No `this`: the answer may come after the engine is gone.
            [id](queue::change_result r) {
                if (!r.ok && r.found) spdlog::warn("delivery: cannot remove {} from the queue: {}", id, r.reason);
            });
    }

    /// One message's results on their way into the store: the change to submit and what
    /// it counted, for conclude() once the write is done.
    struct recording {
        struct tally {
            unsigned delivered = 0, deferred = 0, bounced = 0;
            bool dsn = false;
            bool relayed = false;             // a "relayed" notice (RFC 3461 §5.2.2)
            std::vector<std::string> lines;   // for smtp_client_debug
            std::vector<std::string> undeliverable_bounce;   // "<rcpt>: reason" of a null-sender message
            bool double_bounce = false;       // a copy went to [queue] double_bounce_recipient
            bool was_double_bounce = false;   // the message was itself such a copy
            bool was_tls_report = false;      // the message was a TLS-RPT report (never reported either)
            std::optional<smtp::sys_time> next_due;   // of the message as written
        };
        std::string id;
        std::vector<std::size_t> indices;
        smtp::sys_time now;
        std::shared_ptr<tally> counted = std::make_shared<tally>();
        queue::envelope_change apply;
    };

    /// What a set of results does to an envelope (recipient states, counts) and which
    /// recipients a failure or "relayed" DSN must name.
    struct applied_results {
        std::vector<dsn_recipient> failed, relayed;
        std::vector<dsn_recipient> double_bounced;   // failures of a bounce, for double_bounce_recipient
    };
    static applied_results apply_results(smtp::envelope& env, const std::vector<std::size_t>& indices,
                                          const std::vector<recipient_result>& results, const config::configuration& cfg,
                                          smtp::sys_time now, recording::tally& counted, bool debugging) {
        applied_results out;
        counted = recording::tally{};
        for (std::size_t k = 0; k < indices.size() && k < results.size(); ++k) {
            if (indices[k] >= env.recipients.size()) continue;
            auto& rcpt = env.recipients[indices[k]];
            if (rcpt.state != smtp::recipient_state::pending) continue;
            switch (apply_result(rcpt, results[k], env, cfg.queue, now)) {
            case decision::done:
                ++counted.delivered;
                // RFC 3461 §5.2.2: a next hop without DSN will not report; we say "relayed".
                if (!results[k].next_hop_dsn && wants_notice(rcpt, dsn_kind::relayed))
                    out.relayed.push_back({rcpt.address, rcpt.orcpt, dsn_status(results[k]).to_string(),
                                           rcpt.last_reply, results[k].host});
                break;
            case decision::retry: ++counted.deferred; break;
            case decision::bounce:
                ++counted.bounced;
                rcpt.state = smtp::recipient_state::failed;
                if (wants_notice(rcpt, dsn_kind::failure))   // RFC 3461 §4.1: NOTIFY
                    out.failed.push_back({rcpt.address, rcpt.orcpt, dsn_status(results[k]).to_string(),
                                          rcpt.last_reply, results[k].host});
                break;
            }
            if (debugging)
                counted.lines.push_back(fmt::format("{}: <{}> {}: {}", env.id, rcpt.address,
                                                    rcpt.state == smtp::recipient_state::delivered ? "delivered"
                                                    : rcpt.state == smtp::recipient_state::failed  ? "bounced"
                                                                                                     : "deferred",
                                                    rcpt.last_reply));
        }
        // RFC 3461 §6.2, RFC 5321 §4.5.5: never a DSN to the null sender (it would be a
        // bounce of a bounce). A bounce that failed is logged at warning and, when
        // double_bounce_recipient is set, reported there; a report that fails in turn is
        // only logged, so nothing ever loops.
        if (env.mail_from.empty()) {
            counted.was_double_bounce = env.receive_connector == double_bounce_origin;
            counted.was_tls_report = env.receive_connector == smtp::tls_report_origin;
            for (const auto& f : out.failed) counted.undeliverable_bounce.push_back(fmt::format("<{}>: {}", f.address, f.diagnostic));
            if (!cfg.queue.double_bounce_recipient.empty() && !counted.was_double_bounce && !counted.was_tls_report)
                out.double_bounced = std::move(out.failed);
            out.failed.clear(), out.relayed.clear();
        }
        return out;
    }

    /// The DSNs for `applied`, built from `env` (after the results) and the original's
    /// first bounce_size_limit + 1 octets (so build_dsn can tell when it is cut).
    std::vector<queue::new_message> build_notices(const smtp::envelope& env, const applied_results& applied,
                                                  const config::configuration& cfg, smtp::sys_time now) const {
        std::vector<queue::new_message> notices;
        if (applied.failed.empty() && applied.relayed.empty() && applied.double_bounced.empty()) return notices;
        const auto body = store_.load_body_prefix(env.id, cfg.queue.bounce_size_limit + 1).value_or(std::string());
        if (!applied.double_bounced.empty()) {
            // The failure report of a bounce, to the postmaster address instead of the null sender.
            auto as_if = env;
            as_if.mail_from = cfg.queue.double_bounce_recipient;
            auto dsn = build_dsn(as_if, applied.double_bounced, dsn_kind::failure, cfg.server.hostname, body, now,
                                 cfg.queue.bounce_size_limit);
            dsn.envelope.receive_connector = std::string(double_bounce_origin);
            notices.push_back({std::move(dsn.envelope), std::move(dsn.body)});
        }
        for (auto kind : {dsn_kind::failure, dsn_kind::relayed}) {
            const auto& list = kind == dsn_kind::failure ? applied.failed : applied.relayed;
            if (list.empty()) continue;
            auto dsn = build_dsn(env, list, kind, cfg.server.hostname, body, now, cfg.queue.bounce_size_limit);
            notices.push_back({std::move(dsn.envelope), std::move(dsn.body)});
        }
        return notices;
    }

    recording prepare(const std::string& id, std::vector<std::size_t> indices, std::vector<recipient_result> results) {
        const auto cfg = config();
        recording rec;
        rec.id = id;
        rec.indices = indices;
        rec.now = std::chrono::system_clock::now();
        const bool debugging = cfg->debug.smtp_client_debug;
        // DSNs are built here, on the engine's thread, from the envelope as it is now: the
        // store's writer thread, which every commit waits for, only checks that the change
        // still finds the same recipients to report and takes them as built.
        struct prebuilt {
            applied_results applied;
            std::vector<queue::new_message> notices;
        };
        auto pre = std::make_shared<prebuilt>();
        if (auto env = store_.load_envelope(id)) {
            recording::tally scratch;
            pre->applied = apply_results(*env, indices, results, *cfg, rec.now, scratch, false);
            pre->notices = build_notices(*env, pre->applied, *cfg, rec.now);
        }
        rec.apply = [this, indices = std::move(indices), results = std::move(results), cfg, now = rec.now,
                     counted = rec.counted, debugging, pre](smtp::envelope& env, std::vector<queue::new_message>& also) {
            const auto applied = apply_results(env, indices, results, *cfg, now, *counted, debugging);
            // Changed meanwhile (another result, a queue operation): built here after all.
            auto notices = applied.failed == pre->applied.failed && applied.relayed == pre->applied.relayed &&
                                   applied.double_bounced == pre->applied.double_bounced
                               ? pre->notices
                               : build_notices(env, applied, *cfg, now);
            counted->dsn = !applied.failed.empty() || !applied.double_bounced.empty();
            counted->double_bounce = !applied.double_bounced.empty();
            counted->relayed = !applied.relayed.empty();
            for (auto& n : notices) also.push_back(std::move(n));
            if (finished(env)) return queue::change_action::remove;
            counted->next_due = next_due(env, cfg->queue);
            return queue::change_action::update;
        };
        return rec;
    }

    asio::awaitable<void> conclude(const recording& rec, const queue::change_result& r) {
        const auto& counted = *rec.counted;
        for (const auto& line : counted.lines) debug(line);
        if (r.ok) {
            if (r.action == queue::change_action::remove)
                debug(fmt::format("{}: every recipient done, removed from the queue", rec.id));
            if (!counted.undeliverable_bounce.empty())
                spdlog::warn("delivery: {}: undeliverable bounce (null sender) to {}; {}", rec.id,
                             fmt::join(counted.undeliverable_bounce, ", "),
                             counted.double_bounce ? fmt::format("reported to double_bounce_recipient {}",
                                                                 config()->queue.double_bounce_recipient)
                             : counted.was_double_bounce ? std::string("it was itself a double bounce, dropped")
                             : counted.was_tls_report
                                 ? std::string("it was a TLS-RPT report, whose failures are never reported; dropped")
                                 : std::string("dropped ([queue] double_bounce_recipient is not set)"));
            else if (counted.bounced && !counted.dsn)
                spdlog::info("delivery: {}: {} recipient(s) failed; NOTIFY without FAILURE, no DSN", rec.id,
                             counted.bounced);
            std::lock_guard lock(mutex_);
            stats_.delivered += counted.delivered;
            stats_.deferred += counted.deferred;
            stats_.bounced += counted.bounced;
            auto& m = log::metrics::global();
            m.delivered(counted.delivered);
            m.deferred(counted.deferred);
            m.bounced(counted.bounced);
            index_due(rec.id, r.action == queue::change_action::remove ? std::nullopt : counted.next_due);
            if (counted.dsn || counted.relayed) {
                stats_.dsn_sent += (counted.dsn ? 1 : 0) + (counted.relayed ? 1 : 0);
                committed_ids_.insert(committed_ids_.end(), r.new_ids.begin(), r.new_ids.end());
                wake_pending_ = true;   // the DSN itself goes out at once
            }
        } else if (r.found) {
            // The next hops have answered; only our record of it failed. Planned again,
            // these recipients would be sent the message again at every scan (a loop).
            // They stay in flight with their results held here, and the same change is
            // written once the store takes writes again.
            spdlog::warn("delivery: cannot record results for {} ({} recipient(s)): {}; results held until the "
                         "queue store takes writes again", rec.id, rec.indices.size(), r.reason);
            hold_unrecorded(rec);
            co_return;
        }
        release(rec.id, rec.indices);
    }

    // --- results the store could not take -----------------------------------------------------

    /// Results whose write failed, in memory until it succeeds (mutex_). Their recipients
    /// stay in flight, so they are never planned again meanwhile. Lost only with the
    /// process: after a restart those recipients are sent again (at-least-once).
    std::deque<recording> unrecorded_;
    bool rerecording_ = false;
    static constexpr auto rerecord_interval = std::chrono::seconds(2);

    void hold_unrecorded(const recording& rec) {
        {
            std::lock_guard lock(mutex_);
            unrecorded_.push_back(rec);
            if (rerecording_ || stopping_) return;
            rerecording_ = true;
            ++active_tasks_;
        }
        // Outside the lock: co_spawn may start the loop inline, and it takes mutex_.
        asio::co_spawn(io_, rerecord_loop(), asio::detached);
    }

    asio::awaitable<void> rerecord_loop() {
        asio::steady_timer pause(io_);
        auto next_try = std::chrono::steady_clock::now() + rerecord_interval;
        for (;;) {
            std::deque<recording> batch;
            const bool due = std::chrono::steady_clock::now() >= next_try &&
                             store_.condition() != queue::store_condition::failed;   // asked outside the lock
            {
                std::lock_guard lock(mutex_);
                if (stopping_ || unrecorded_.empty()) {
                    if (!unrecorded_.empty())
                        spdlog::warn("delivery: stopping with the results of {} message(s) not recorded; their "
                                     "recipients are sent again after the restart", unrecorded_.size());
                    rerecording_ = false;
                    break;
                }
                if (due) batch.swap(unrecorded_);
            }
            if (batch.empty()) {
                pause.expires_after(std::chrono::milliseconds(500));   // short: a stop is noticed soon
                co_await pause.async_wait(use_tuple);
                continue;
            }
            next_try = std::chrono::steady_clock::now() + rerecord_interval;
            std::vector<std::pair<std::string, queue::envelope_change>> changes;
            for (const auto& rec : batch) changes.emplace_back(rec.id, rec.apply);
            auto answers = co_await change_all_async(store_, std::move(changes));
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (answers[i].ok) spdlog::info("delivery: {}: held results recorded", batch[i].id);
                co_await conclude(batch[i], answers[i]);   // a failure holds them again
            }
        }
        finish_task();
    }

    /// Records results, bounces what must bounce and removes the message once every
    /// recipient is done, in one store change: the recipient states, the DSN for the
    /// failed ones and the removal are one synced write, shared with every other write
    /// submitted meanwhile (group commit), so no engine thread waits for a disk.
    /// When that write fails, nothing changed: the recipients stay pending and are tried
    /// again (at-least-once); bounces that could not be queued wait a minute.
    asio::awaitable<void> finish_recipients(const std::string& id, std::vector<std::size_t> indices,
                                            std::vector<recipient_result> results) {
        auto rec = prepare(id, std::move(indices), std::move(results));
        auto change = rec.apply;
        auto r = co_await change_async(store_, rec.id, std::move(change));
        co_await conclude(rec, r);
    }

    // --- delay notices ------------------------------------------------------------------------

    void start_delay_notice(const std::string& id) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_ || !notices_in_progress_.insert(id).second) return;
            ++active_tasks_;
        }
        asio::co_spawn(io_, delay_notice(id), asio::detached);
    }

    /// The notice and the flag that it was sent are one write: never twice, never lost.
    asio::awaitable<void> delay_notice(std::string id) {
        try {
            const auto cfg = config();
            const auto now = std::chrono::system_clock::now();
            queue::envelope_change apply = [this, id, cfg, now](smtp::envelope& env,
                                                                std::vector<queue::new_message>& also) {
                if (!delay_notice_due(env, cfg->queue, now)) return queue::change_action::keep;
                auto list = delay_notice_recipients(env);   // only recipients whose NOTIFY asks for delays
                auto body = store_.load_body_prefix(id, cfg->queue.bounce_size_limit + 1);
                auto dsn = build_dsn(env, list, dsn_kind::delay, cfg->server.hostname,
                                     header_section(body ? *body : std::string()), now,
                                     cfg->queue.bounce_size_limit);
                also.push_back({std::move(dsn.envelope), std::move(dsn.body)});
                env.delay_notice_sent = true;
                return queue::change_action::update;
            };
            auto r = co_await change_async(store_, id, std::move(apply));
            if (r.ok && !r.new_ids.empty()) {
                std::lock_guard lock(mutex_);
                ++stats_.dsn_sent;
                committed_ids_.insert(committed_ids_.end(), r.new_ids.begin(), r.new_ids.end());
                wake_pending_ = true;
            } else if (!r.ok && r.found) {
                spdlog::warn("delivery: {}: cannot queue the delay notice: {}", id, r.reason);
            }
        } catch (const std::exception& e) {
            spdlog::error("delivery: delay notice for {}: {}", id, e.what());
        }
        {
            std::lock_guard lock(mutex_);
            notices_in_progress_.erase(id);
        }
        finish_task();
    }
};

engine::engine(const config::configuration& cfg, queue::store& store, next_hop_source& resolver,
               std::shared_ptr<const client_tls_material> client_tls, log::protocol_log& send_log,
               engine_options options)
    : impl_(std::make_shared<impl>(cfg, store, resolver, std::move(client_tls), send_log, options)) {}

namespace {
// Keeps the adapter alive before the impl that refers to it is built.
}  // namespace

engine::engine(const config::configuration& cfg, queue::store& store, route::resolver& resolver,
               std::shared_ptr<const client_tls_material> client_tls, log::protocol_log& send_log,
               engine_options options) {
    auto source = route::as_next_hop_source(resolver);
    impl_ = std::make_shared<impl>(cfg, store, *source, std::move(client_tls), send_log, options);
    impl_->owned_resolver_ = std::move(source);
}

engine::~engine() { stop(std::chrono::seconds(0)); }

void engine::start() {
    auto& d = *impl_;
    {
        std::lock_guard lock(d.mutex_);
        if (d.started_) return;
        d.started_ = true;
        ++d.active_tasks_;
    }
    d.work_.emplace(d.io_.get_executor());
    asio::co_spawn(d.strand_, d.scan_loop(), asio::detached);
    for (unsigned i = 0; i < std::max(1u, d.options_.threads); ++i)
        d.threads_.emplace_back([&d] {
            for (;;) {
                try {
                    d.io_.run();
                    break;
                } catch (const std::exception& e) {
                    spdlog::error("delivery: {}", e.what());
                }
            }
        });
}

void engine::wake() {
    auto& d = *impl_;
    {
        std::lock_guard lock(d.mutex_);
        d.full_scan_requested_ = true;
    }
    d.wake_pending_ = true;
    asio::post(d.strand_, [&d] { d.timer_.cancel(); });
}

void engine::committed(const std::string& id) {
    auto& d = *impl_;
    {
        std::lock_guard lock(d.mutex_);
        d.committed_ids_.push_back(id);
    }
    d.wake_pending_ = true;
    asio::post(d.strand_, [&d] { d.timer_.cancel(); });
}

void engine::committed(smtp::envelope env, std::string body) {
    auto& d = *impl_;
    {
        std::lock_guard lock(d.mutex_);
        d.hold_body(env.id, std::move(body));
        d.committed_envelopes_.push_back(std::move(env));
    }
    d.wake_pending_ = true;
    asio::post(d.strand_, [&d] { d.timer_.cancel(); });
}

void engine::stop(std::chrono::seconds grace) {
    auto& d = *impl_;
    // One stop at a time (a signal and a destructor may race); the second returns at once.
    std::lock_guard stop_lock(d.stop_mutex_);
    {
        std::lock_guard lock(d.mutex_);
        if (!d.started_ || d.threads_.empty()) return;
        d.stopping_ = true;
        for (auto& [where, state] : d.destinations_)
            while (!state.idle.empty()) impl::wake_idle(state.idle);   // they QUIT at once
    }
    asio::post(d.strand_, [&d] { d.timer_.cancel(); });
    std::unique_lock lock(d.mutex_);
    d.idle_cv_.wait_for(lock, grace, [&] { return d.active_tasks_ == 0; });
    if (d.active_tasks_ != 0) {
        // Grace is over: cut what is left. A recipient cut mid-DATA stays pending and is
        // sent again after the restart (at-least-once).
        // On the session's own strand, and only while it is still registered: a session
        // is unregistered on that strand before it is destroyed.
        for (auto& [session, executor] : d.sessions_)
            asio::post(executor, [&d, s = session] {
                std::lock_guard guard(d.mutex_);
                if (d.sessions_.contains(s)) s->abort();
            });
        // Bounded: the whole stop takes at most shutdown_timeout + 5 s (DESIGN §3).
        d.idle_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return d.active_tasks_ == 0; });
    }
    lock.unlock();
    d.work_.reset();
    if (d.active_tasks_ != 0) d.io_.stop();   // a resolver that never answers must not block stop
    for (auto& t : d.threads_) t.join();
    d.threads_.clear();
    d.tlsrpt_->flush();
}

void engine::update_configuration(const config::configuration& cfg) {
    impl_->dnssec_ = config::validates_dnssec(cfg.dns);   // reads a file: outside the lock
    std::lock_guard lock(impl_->mutex_);
    impl_->cfg_ = std::make_shared<const config::configuration>(cfg);
    impl_->contexts_.clear();
}

void engine::set_client_tls(std::shared_ptr<const client_tls_material> client_tls) {
    std::lock_guard lock(impl_->mutex_);
    impl_->material_ = std::move(client_tls);
    impl_->contexts_.clear();
}

std::uint64_t engine::waiting_bytes() const { return impl_->waiting_bytes_.load(std::memory_order_relaxed); }

policy::downgrade_memory& engine::downgrades() { return *impl_->downgrades_; }

policy::tlsrpt_ledger& engine::tlsrpt() { return *impl_->tlsrpt_; }

std::shared_ptr<SSL_CTX> engine::published_https_context() {
    config::send_connector none;   // no connector's own trust: the system store and the key ring's roots
    return impl_->sts_context_for(*impl_->config(), none, true);
}

engine_stats engine::stats() const {
    std::lock_guard lock(impl_->mutex_);
    auto s = impl_->stats_;
    s.active_connections = impl_->active_connections_;
    return s;
}

}  // namespace postern::delivery

#include "daemon/mail_pipeline.hpp"
#include "daemon/policy_operations.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "delivery/client_tls.hpp"

namespace postern::daemon {

namespace {

/// Forwards everything to the real store; a successful commit also wakes delivery.
class waking_store final : public queue::store {
public:
    waking_store(queue::store& inner, delivery::engine& engine) : inner_(inner), engine_(engine) {}

    void commit(smtp::envelope env, std::string body, std::function<void(queue::commit_result)> done) override {
        inner_.commit(std::move(env), std::move(body),
                      [this, done = std::move(done)](queue::commit_result r) {
                          const bool ok = r.ok;
                          auto committed = std::move(r.committed);
                          auto committed_body = std::move(r.body);
                          done(std::move(r));
                          if (ok) engine_.committed(std::move(committed), std::move(committed_body));
                      });
    }
    std::unique_ptr<queue::body_spool> open_spool() override { return inner_.open_spool(); }
    void commit_spooled(smtp::envelope env, std::unique_ptr<queue::body_spool> spool, std::string tail,
                        std::function<void(queue::commit_result)> done) override {
        inner_.commit_spooled(std::move(env), std::move(spool), std::move(tail),
                              [this, done = std::move(done)](queue::commit_result r) {
                                  const bool ok = r.ok;
                                  const auto id = r.id;
                                  done(std::move(r));
                                  if (ok) engine_.committed(id);   // the body is in its file
                              });
    }
    std::optional<std::string> load_body_prefix(const std::string& id, std::uint64_t max) const override {
        return inner_.load_body_prefix(id, max);
    }
    std::filesystem::path body_file(const std::string& id) const override { return inner_.body_file(id); }
    bool low_on_space() const override { return inner_.low_on_space(); }
    queue::store_condition condition() const override { return inner_.condition(); }
    std::optional<smtp::envelope> load_envelope(const std::string& id) const override {
        return inner_.load_envelope(id);
    }
    std::optional<std::string> load_body(const std::string& id) const override { return inner_.load_body(id); }
    std::vector<smtp::envelope> list() const override { return inner_.list(); }
    bool update(const smtp::envelope& env, std::string* reason) override { return inner_.update(env, reason); }
    bool remove(const std::string& id, std::string* reason) override { return inner_.remove(id, reason); }
    void change(std::string id, queue::envelope_change apply,
                std::function<void(queue::change_result)> done) override {
        inner_.change(std::move(id), std::move(apply), std::move(done));
    }
    queue::store_stats stats() const override { return inner_.stats(); }

private:
    queue::store& inner_;
    delivery::engine& engine_;
};

log::protocol_log_options log_options(const config::configuration& cfg, log::log_kind kind) {
    log::protocol_log_options o;
    o.dir = cfg.log.dir;
    o.kind = kind;
    o.max_age = cfg.log.max_age;
    o.max_size = cfg.log.max_size;
    return o;
}

}  // namespace

mail_pipeline::mail_pipeline(const config::configuration& cfg) {
    queue::store_options store_options{cfg.server.data_dir / "queue", cfg.queue.min_free};
    // README: a queue store that failed and cannot be reopened cannot work again in this
    // process. Exit at once (no destructor races the store's thread) with a status that
    // tells the supervisor to restart; everything acknowledged is on disk already.
    store_options.on_unrecoverable = [](const std::string& reason) {
        spdlog::critical("queue store cannot be reopened ({}): exiting with status {} for the supervisor to restart "
                         "the server", reason, exit_store_unrecoverable);
        spdlog::default_logger()->flush();
        ::_exit(exit_store_unrecoverable);
    };
    store_ = queue::open_rocksdb_store(store_options);
    queue_ops_ = std::make_unique<queue_operations>(*store_);
    receive_log_ = std::make_unique<log::protocol_log>(log_options(cfg, log::log_kind::receive));
    send_log_ = std::make_unique<log::protocol_log>(log_options(cfg, log::log_kind::send));
    resolver_ = std::make_unique<route::resolver>(cfg.dns);
    auto client_tls = delivery::client_tls_material::load(cfg);
    client_tls->check_trusted_roots(cfg);
    prepare_save_outbound_dir(cfg);
    engine_ = std::make_unique<delivery::engine>(cfg, *store_, *resolver_, std::move(client_tls), *send_log_);
    waking_store_ = std::make_unique<waking_store>(*store_, *engine_);
    report_dns_ = route::as_next_hop_source(*resolver_);
    reports_ = std::make_unique<tlsrpt::sender>(cfg, engine_->tlsrpt(), *report_dns_, *waking_store_,
                                                [engine = engine_.get()] { return engine->published_https_context(); });
}

void prepare_save_outbound_dir(const config::configuration& cfg) {
    const auto& dir = cfg.debug.save_outbound_dir;
    if (dir.empty()) return;
    // Copies of whole messages: nobody else may read them (DESIGN §3 Files).
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!ec) std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
    if (ec) throw std::runtime_error("[debug] save_outbound_dir " + dir.string() + ": " + ec.message());
}

mail_pipeline::~mail_pipeline() = default;   // the engine stops itself first (declared last)

void mail_pipeline::start_delivery() {
    engine_->start();
    reports_->start();
}

void mail_pipeline::stop_delivery(std::chrono::seconds grace) {
    reports_->stop();
    engine_->stop(grace);
}

void mail_pipeline::reload(const config::configuration& cfg) {
    auto client_tls = delivery::client_tls_material::load(cfg);   // may throw: nothing applied yet
    client_tls->check_trusted_roots(cfg);
    prepare_save_outbound_dir(cfg);
    engine_->update_configuration(cfg);
    engine_->set_client_tls(std::move(client_tls));
    reports_->update_configuration(cfg);
}

queue_result mail_pipeline::queue_request(const nlohmann::json& request) {
    auto result = handle_queue_request(*queue_ops_, request, std::chrono::system_clock::now());
    const auto command = request.value("command", std::string());
    if (command == "queue-list" || command == "queue-show") return result;
    if (!result.ok) {
        spdlog::warn("queue: {} refused: {}", command, result.error);
        return result;
    }
    spdlog::info("queue: {}", result.message);
    if (command == "queue-retry" || command == "queue-release") engine_->wake();
    return result;
}

queue_result mail_pipeline::policy_request(const nlohmann::json& request) {
    return handle_policy_request(engine_->downgrades(), request, std::chrono::system_clock::now());
}

queue_result mail_pipeline::tlsrpt_request(const nlohmann::json& request, const std::string& organization) {
    if (request.value("action", std::string()) == "send") {
        std::string refusal;
        const auto outcomes = reports_->send_now(std::chrono::seconds(150), refusal);
        queue_result r;
        r.ok = refusal.empty();
        r.error = refusal;
        r.data = tlsrpt_outcomes_json(outcomes);
        if (r.ok) spdlog::info("tlsrpt: sent on request: {} outcome(s)", outcomes.size());
        return r;
    }
    return handle_tlsrpt_request(engine_->tlsrpt(), request, std::chrono::system_clock::now(), organization);
}

bool mail_pipeline::delivery_behind() const { return engine_->waiting_bytes() > in_flow_backlog; }

void mail_pipeline::flush_logs() {
    receive_log_->flush();
    send_log_->flush();
}

}  // namespace postern::daemon

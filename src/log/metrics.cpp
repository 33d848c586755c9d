// log/metrics.cpp: counters and their Prometheus text exposition (metrics.hpp).
#include "log/metrics.hpp"

#include <fmt/format.h>

namespace postern::log {

namespace {

constexpr std::array<std::string_view, 4> tls_names = {"none", "TLSv1.2", "TLSv1.3", "other"};
constexpr std::array<std::string_view, 2> direction_names = {"inbound", "outbound"};

std::size_t tls_index(std::string_view protocol) {
    if (protocol.empty()) return 0;
    if (protocol == "TLSv1.2") return 1;
    if (protocol == "TLSv1.3") return 2;
    return 3;
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

metrics& metrics::global() {
    static metrics instance;
    return instance;
}

void metrics::session(direction d, std::string_view tls_protocol) {
    sessions_[static_cast<std::size_t>(d)][tls_index(tls_protocol)].fetch_add(1, std::memory_order_relaxed);
}

void metrics::tls_verdict(direction d, bool pass) {
    verdicts_[static_cast<std::size_t>(d)][pass ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
}

void metrics::tls_result(std::string_view word) {
    std::size_t i = 0;
    while (i < tls_result_words.size() && tls_result_words[i] != word) ++i;
    if (i == tls_result_words.size()) i = 10;   // validation-failure
    tls_results_[i].fetch_add(1, std::memory_order_relaxed);
}

void metrics::set_certificates(std::vector<certificate_expiry> certificates) {
    std::lock_guard lock(certificates_mutex_);
    certificates_ = std::move(certificates);
}

std::vector<certificate_expiry> metrics::certificates() const {
    std::lock_guard lock(certificates_mutex_);
    return certificates_;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string metrics::prometheus_text(const queue_gauges& queue) const {
    std::string out;
    auto counter = [&](std::string_view name, std::string_view help, const std::atomic<std::uint64_t>& value) {
        family(out, name, "counter", help);
        out += fmt::format("{} {}\n", name, value.load(std::memory_order_relaxed));
    };
    counter("postern_messages_received_total", "Messages accepted by the receive side (made durable, then 250).",
            received_);
    counter("postern_messages_delivered_total", "Deliveries to a next hop that took the message, one per recipient.",
            delivered_);
    counter("postern_messages_deferred_total", "Delivery attempts that will be retried, one per recipient.", deferred_);
    counter("postern_messages_bounced_total", "Recipients that failed for good (a DSN went back where one could).",
            bounced_);

    auto gauge = [&](std::string_view name, std::string_view help, std::uint64_t value) {
        family(out, name, "gauge", help);
        out += fmt::format("{} {}\n", name, value);
    };
    gauge("postern_queue_messages", "Messages in the queue.", queue.messages);
    gauge("postern_queue_deferred_messages", "Messages in the queue with a recipient tried and waiting for a retry.",
          queue.deferred);
    gauge("postern_queue_held_messages", "Messages in the queue held by `postern queue hold`.", queue.held);

    family(out, "postern_sessions_total", "counter", "SMTP sessions that ended, by direction and TLS version.");
    for (std::size_t d = 0; d < 2; ++d)
        for (std::size_t t = 0; t < tls_names.size(); ++t)
            out += fmt::format("postern_sessions_total{{direction=\"{}\",tls=\"{}\"}} {}\n", direction_names[d],
                               tls_names[t], sessions_[d][t].load(std::memory_order_relaxed));

    family(out, "postern_tls_verdicts_total", "counter",
           "TLS verdicts: inbound, whether the handshake completed; outbound, whether the send connector's required "
           "level was reached.");
    for (std::size_t d = 0; d < 2; ++d)
        for (std::size_t v = 0; v < 2; ++v)
            out += fmt::format("postern_tls_verdicts_total{{direction=\"{}\",verdict=\"{}\"}} {}\n",
                               direction_names[d], v == 1 ? "pass" : "fail",
                               verdicts_[d][v].load(std::memory_order_relaxed));

    family(out, "postern_tls_results_total", "counter",
           "Outbound TLS verdicts by word: how each next hop was authenticated (dane-ee, dane-ta, mta-sts, pkix), "
           "that it was not (opportunistic, cleartext), or the RFC 8460 result type of a failure.");
    for (std::size_t i = 0; i < tls_result_words.size(); ++i)
        out += fmt::format("postern_tls_results_total{{direction=\"outbound\",result=\"{}\"}} {}\n",
                           tls_result_words[i], tls_results_[i].load(std::memory_order_relaxed));

    family(out, "postern_tlsrpt_reports_total", "counter",
           "TLS-RPT reports handed on: POSTed (https) or queued (mail), sent or failed.");
    for (std::size_t m = 0; m < 2; ++m)
        for (std::size_t v = 0; v < 2; ++v)
            out += fmt::format("postern_tlsrpt_reports_total{{method=\"{}\",outcome=\"{}\"}} {}\n",
                               m == 1 ? "https" : "mail", v == 1 ? "sent" : "failed",
                               tlsrpt_reports_[m][v].load(std::memory_order_relaxed));

    family(out, "postern_certificate_expiry_timestamp_seconds", "gauge",
           "When each certificate of the key ring expires (notAfter), by label.");
    for (const auto& c : certificates())
        out += fmt::format("postern_certificate_expiry_timestamp_seconds{{label=\"{}\"}} {}\n",
                           escape_label_value(c.label), c.not_after);
    return out;
}

}  // namespace postern::log

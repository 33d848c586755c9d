#include "tls/keyring/request_log.hpp"

#include <ctime>

#include <nlohmann/json.hpp>

#include "tls/error.hpp"
#include "tls/keyring/atomic_file.hpp"

namespace postern::tls {

std::string to_string(request_state state) {
    switch (state) {
    case request_state::pending: return "pending";
    case request_state::installed: return "installed";
    case request_state::cancelled: return "cancelled";
    }
    return "pending";
}

namespace {

request_state state_from(const std::string& text) {
    if (text == "installed") return request_state::installed;
    if (text == "cancelled") return request_state::cancelled;
    return request_state::pending;
}

}  // namespace

std::string now_text() {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::filesystem::path request_log::path_for(const std::filesystem::path& keyring_file) {
    return std::filesystem::path(keyring_file.string() + ".requests.json");
}

request_log request_log::load(const std::filesystem::path& keyring_file) {
    request_log log;
    auto file = path_for(keyring_file);
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return log;
    try {
        auto doc = nlohmann::json::parse(read_file(file));
        log.default_label = doc.value("default", std::string());
        for (const auto& item : doc.value("requests", nlohmann::json::array())) {
            request_record r;
            r.label = item.value("label", std::string());
            r.date = item.value("date", std::string());
            r.subject = item.value("subject", std::string());
            r.names = item.value("names", std::vector<std::string>());
            r.key_type = item.value("key_type", std::string());
            r.public_key_sha256 = item.value("public_key_sha256", std::string());
            r.state = state_from(item.value("state", std::string("pending")));
            r.state_date = item.value("state_date", std::string());
            r.renews = item.value("renews", std::string());
            log.requests.push_back(std::move(r));
        }
    } catch (const nlohmann::json::exception& e) {
        throw tls_error(file.string() + ": damaged request log: " + e.what());
    }
    return log;
}

nlohmann::json request_log::to_json() const {
    nlohmann::json doc;
    doc["default"] = default_label;
    doc["requests"] = nlohmann::json::array();
    for (const auto& r : requests) {
        nlohmann::json item{{"label", r.label},       {"date", r.date},
                            {"subject", r.subject},   {"names", r.names},
                            {"key_type", r.key_type}, {"public_key_sha256", r.public_key_sha256},
                            {"state", to_string(r.state)}};
        if (!r.state_date.empty()) item["state_date"] = r.state_date;
        if (!r.renews.empty()) item["renews"] = r.renews;
        doc["requests"].push_back(std::move(item));
    }
    return doc;
}

void request_log::save(const std::filesystem::path& keyring_file) const {
    write_file_atomically(path_for(keyring_file), to_json().dump(2) + "\n", 0600);
}

request_record* request_log::find_pending_by_key(const std::string& public_key_sha256) {
    for (auto& r : requests)
        if (r.state == request_state::pending && r.public_key_sha256 == public_key_sha256) return &r;
    return nullptr;
}

const request_record* request_log::find_pending_by_key(const std::string& public_key_sha256) const {
    return const_cast<request_log*>(this)->find_pending_by_key(public_key_sha256);
}

void request_log::rename(const std::string& from, const std::string& to) {
    if (default_label == from) default_label = to;
    for (auto& r : requests) {
        if (r.label == from && r.state != request_state::cancelled) r.label = to;
        if (r.renews == from && r.state == request_state::pending) r.renews = to;
    }
}

}  // namespace postern::tls

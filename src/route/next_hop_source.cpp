// route/next_hop_source.cpp: see next_hop_source.hpp.
#include "route/next_hop_source.hpp"

namespace postern::route {

namespace {

class resolver_source final : public next_hop_source {
public:
    explicit resolver_source(resolver& r) : resolver_(r) {}
    void resolve(const std::string& domain, const std::vector<std::string>& own_names,
                 std::function<void(next_hops)> done) override {
        resolver_.resolve(domain, own_names, std::move(done));
    }
    void resolve_host(const std::string& name, std::function<void(host, std::string)> done) override {
        resolver_.resolve_host(name, std::move(done));
    }
    void resolve_tlsa(const std::string& host_name, std::uint16_t port,
                      std::function<void(tlsa_answer)> done) override {
        resolver_.resolve_tlsa(host_name, port, std::move(done));
    }
    void resolve_txt(const std::string& name, std::function<void(txt_answer)> done) override {
        resolver_.resolve_txt(name, std::move(done));
    }

private:
    resolver& resolver_;
};

}  // namespace

std::unique_ptr<next_hop_source> as_next_hop_source(resolver& r) { return std::make_unique<resolver_source>(r); }

}  // namespace postern::route

// admin/config_command.cpp: `postern config check | show | set` (DESIGN.md §4).
//
// check: warnings and errors on stderr (or all as --json on stdout), exit 0 when the
//        file is valid, 1 when not.
// show:  the effective configuration, defaults included, as TOML or --json.
// set:   edits values in place, validates the result, then replaces the file atomically.
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin/commands.hpp"
#include "config/edit.hpp"
#include "config/schema.hpp"
#include "config/show.hpp"
#include "daemon/preflight.hpp"

namespace postern::admin {

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1;
constexpr int exit_usage = 2;

void print(const std::vector<config::diagnostic>& list) {
    for (const auto& d : list) std::cerr << d.to_string() << "\n";
}

nlohmann::ordered_json to_json(const std::vector<config::diagnostic>& list) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& d : list) {
        nlohmann::ordered_json entry = {{"file", d.file.string()}, {"line", d.line}, {"key", d.key}};
        if (!d.connector.empty()) entry["connector"] = d.connector;
        entry["message"] = d.message;
        out.push_back(std::move(entry));
    }
    return out;
}

int run_check(const std::string& file, bool json) {
    auto result = config::load_file(file);
    daemon::preflight(result);   // what serve and reload would find, checked now
    if (json) {
        nlohmann::ordered_json report = {{"file", file},
                                 {"valid", result.ok()},
                                 {"errors", to_json(result.errors)},
                                 {"warnings", to_json(result.warnings)}};
        std::cout << report.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
        return result.ok() ? exit_ok : exit_failure;
    }
    print(result.errors);
    print(result.warnings);
    if (!result.ok()) return exit_failure;
    std::cout << file << ": valid";
    if (!result.warnings.empty()) std::cout << " (" << result.warnings.size() << " warnings)";
    std::cout << "\n";
    return exit_ok;
}

struct show_args {
    std::string section;
    std::string name;
    std::vector<std::string> fields;
    bool json = false;
};

int run_show(const std::string& file, const show_args& args) {
    auto result = config::load_file(file);
    if (!result.ok()) {
        print(result.errors);
        return exit_failure;
    }
    try {
        std::cout << config::show(*result.config, {args.section, args.name, args.fields},
                                  args.json ? config::show_format::json : config::show_format::toml);
    } catch (const std::invalid_argument& e) {
        std::cerr << "postern config show: " << e.what() << "\n";
        return exit_usage;
    }
    return exit_ok;
}

bool is_connector_section(const std::string& s) { return s == "receive_connector" || s == "send_connector"; }

int run_set(const std::string& file, const std::vector<std::string>& words, bool create) {
    // SECTION [NAME] key=value...: NAME only after a connector section.
    std::string section = words.empty() ? std::string() : words[0];
    std::size_t next = 1;
    std::string name;
    if (is_connector_section(section) && words.size() > 1 && words[1].find('=') == std::string::npos) name = words[next++];
    std::vector<config::assignment> assignments;
    for (; next < words.size(); ++next) {
        auto eq = words[next].find('=');
        if (eq == std::string::npos || eq == 0) {
            std::cerr << "postern config set: \"" << words[next] << "\" is not key=value\n";
            return exit_usage;
        }
        assignments.push_back({words[next].substr(0, eq), words[next].substr(eq + 1)});
    }

    std::ifstream in(file, std::ios::binary);
    if (!in) {
        std::cerr << "postern config set: cannot read " << file << "\n";
        return exit_failure;
    }
    std::ostringstream original;
    original << in.rdbuf();

    config::edit_result edited;
    try {
        edited = config::set_values(original.str(), file, section, name, assignments, create);
    } catch (const std::invalid_argument& e) {
        std::cerr << "postern config set: " << e.what() << "\n";
        return exit_usage;
    }
    if (!edited.ok()) {
        print(edited.errors);
        std::cerr << "postern config set: " << file << " left unchanged\n";
        return exit_failure;
    }
    print(edited.warnings);
    try {
        config::write_file_atomically(file, edited.text);
    } catch (const std::exception& e) {
        std::cerr << "postern config set: " << e.what() << "\n";
        return exit_failure;
    }
    return exit_ok;
}

}  // namespace

void add_config_command(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("config", "Check, show and edit the configuration file");
    cmd->require_subcommand(1);
    auto file = std::make_shared<std::string>();
    *file = config::default_config_file;
    cmd->add_option("-c,--config", *file, "configuration file (TOML)")->capture_default_str();

    auto* check = cmd->add_subcommand("check", "validate the file: errors and warnings name file, line and key");
    check->fallthrough();
    auto check_json = std::make_shared<bool>(false);
    check->add_flag("--json", *check_json, "the verdict, errors and warnings as JSON on stdout");
    check->callback([file, check_json, &exit_code] { exit_code = run_check(*file, *check_json); });

    auto s = std::make_shared<show_args>();
    auto* show = cmd->add_subcommand("show", "print the effective configuration, defaults included");
    show->fallthrough();
    show->add_option("section", s->section, "only this section (server, tls, receive_connector, ...)");
    show->add_option("name", s->name, "only the connector with this name");
    show->add_option("--fields", s->fields, "only these keys, e.g. --fields require_tls,tls")->delimiter(',');
    show->add_flag("--json", s->json, "JSON instead of TOML");
    show->callback([file, s, &exit_code] { exit_code = run_show(*file, *s); });

    auto words = std::make_shared<std::vector<std::string>>();
    auto* set = cmd->add_subcommand("set", "set values in place, keeping comments; validates first, writes atomically");
    set->fallthrough();
    set->add_option("words", *words, "SECTION [NAME] key=value... (values are TOML; bare words are strings)")
        ->required();
    auto create = std::make_shared<bool>(false);
    set->add_flag("--create", *create, "append a new connector when none has NAME (otherwise that is an error)");
    set->callback([file, words, create, &exit_code] { exit_code = run_set(*file, *words, *create); });
}

}  // namespace postern::admin

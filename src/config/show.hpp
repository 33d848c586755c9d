// config/show.hpp: the effective configuration as text (`postern config show`, DESIGN.md §4).
//
// Every key is printed, defaults included, in the file's own syntax: the TOML output
// loads back to the same values, so it can serve as a fully spelt-out configuration.
#pragma once

#include <string>
#include <vector>

#include "config/schema.hpp"

namespace postern::config {

enum class show_format { toml, json };

/// Like Exchange's `Get-ReceiveConnector NAME | FL Identity,RequireTLS`: a section,
/// optionally one connector of it by name, optionally only some keys. Connectors keep
/// their `name` so the output still says which one is meant.
struct show_filter {
    std::string section;                // "" = every section
    std::string name;                   // connector name; only for connector sections
    std::vector<std::string> fields;    // "" = every key
};

/// Throws std::invalid_argument naming an unknown section, connector or field.
std::string show(const configuration& config, const show_filter& filter = {},
                 show_format format = show_format::toml);

/// The section names show() accepts, in file order.
const std::vector<std::string>& section_names();

}  // namespace postern::config

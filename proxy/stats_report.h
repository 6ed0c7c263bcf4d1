// `tunshim stats --watch`: the table with rates, rendered by the client from the daemon's
// JSON (render_json), so it needs no state in the daemon between two refreshes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "proxy/metrics.h"

namespace tunshim::proxy {

// render_table(s), and with `prev` (the same daemon's snapshot of the previous refresh)
// every counter cell followed by its rate per second since then: "12 / 0  (1.5/s / 0/s)".
// A counter that went backwards (the daemon restarted) shows "-" for its rate.
std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev);

// Reads what render_json wrote back into a snapshot: everything the table shows. Anything
// that is not such a document gives nullopt and one line in `error`.
std::optional<StatsSnapshot> parse_stats_json(std::string_view json, std::string& error);

}  // namespace tunshim::proxy

// `tunshim stats`: the views of a StatsSnapshot for people (the daemon renders them for
// `tunshim stats` and SIGUSR1; the client for `--watch`, from the daemon's JSON, so it needs
// no state in the daemon between two refreshes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/metrics.h"

namespace tunshim::proxy {

// Which tunnels a view shows in detail.
//   summary  (`tunshim stats`) a line per interface pattern, then a column per exact-name
//            tunnel and per instance of a pattern with at most kPatternRowsShown instances
//   all      (`--all`) every tunnel: a column each up to kColumnsMax, else a line each
//   one      (`tunshim stats IFACE`) that interface's column; a pattern's name ("ppp+")
//            shows its summary line and all its instances
struct StatsView {
  enum class Mode : std::uint8_t { summary, all, one };
  Mode mode = Mode::summary;
  std::string iface;  // Mode::one
};

// A pattern's instances get columns of their own in the summary view up to this many (a
// client with a reconnecting ppp0, two VPNs); a concentrator's hundreds get its line only.
inline constexpr std::size_t kPatternRowsShown = 8;
// More tunnels than this in one view are listed a line each: columns would not fit a screen.
inline constexpr std::size_t kColumnsMax = 8;

// The view of `s`, and with `prev` (the same daemon's snapshot of the previous refresh)
// every counter followed by its rate per second since then: "12 / 0  (1.5/s / 0/s)". A
// counter that went backwards (the daemon restarted) shows "-" for its rate.
std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev);
std::string render_table(const StatsSnapshot& s, const StatsSnapshot* prev,
                         const StatsView& view);

// Empty when `s` has what `view` asks for; otherwise why not, one line without a newline
// ("no tunnel ppp99 ...").
std::string view_error(const StatsSnapshot& s, const StatsView& view);

// Keeps only the tunnels a Mode::one view names (the JSON of `tunshim stats --json IFACE`);
// the patterns' summaries stay whole.
void keep_view_tunnels(StatsSnapshot& s, const StatsView& view);

// Reads what render_json wrote back into a snapshot: everything the table shows. Anything
// that is not such a document gives nullopt and one line in `error`.
std::optional<StatsSnapshot> parse_stats_json(std::string_view json, std::string& error);

}  // namespace tunshim::proxy

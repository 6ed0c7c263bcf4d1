// Bounds-checked big-endian access to packet bytes. Every packet read in clamp/ goes
// through these helpers: no casts to header structs, no unaligned loads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tunshim::clamp {

using Bytes = std::span<std::uint8_t>;
using ConstBytes = std::span<const std::uint8_t>;

// Precondition for all loads/stores: off + width <= b.size(). Callers check lengths
// once per header (two-phase parsing, as ngtcp2 does) and then use these.
constexpr std::uint16_t load16(ConstBytes b, std::size_t off) noexcept {
  return static_cast<std::uint16_t>((b[off] << 8) | b[off + 1]);
}
constexpr std::uint32_t load32(ConstBytes b, std::size_t off) noexcept {
  return (std::uint32_t{b[off]} << 24) | (std::uint32_t{b[off + 1]} << 16) |
         (std::uint32_t{b[off + 2]} << 8) | std::uint32_t{b[off + 3]};
}
constexpr void store16(Bytes b, std::size_t off, std::uint16_t v) noexcept {
  b[off] = static_cast<std::uint8_t>(v >> 8);
  b[off + 1] = static_cast<std::uint8_t>(v);
}
constexpr void store32(Bytes b, std::size_t off, std::uint32_t v) noexcept {
  b[off] = static_cast<std::uint8_t>(v >> 24);
  b[off + 1] = static_cast<std::uint8_t>(v >> 16);
  b[off + 2] = static_cast<std::uint8_t>(v >> 8);
  b[off + 3] = static_cast<std::uint8_t>(v);
}

}  // namespace tunshim::clamp

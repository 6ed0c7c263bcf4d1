// MTU <-> MSS arithmetic: MSS = MTU minus the minimal IP and TCP headers.
#pragma once

#include <cstdint>

namespace tunshim::clamp {

inline constexpr std::uint16_t kIpv4HeaderMin = 20;  // RFC 791
inline constexpr std::uint16_t kIpv6HeaderLen = 40;  // RFC 8200
inline constexpr std::uint16_t kTcpHeaderMin = 20;   // RFC 9293
// Defaults a host must assume without an MSS option; the kernel's TCPMSS caps an
// inserted value at these: RFC 1122 4.2.2.6 (536) and RFC 8200's 1280 minimum MTU (1220).
inline constexpr std::uint16_t kDefaultMss4 = 536;
inline constexpr std::uint16_t kDefaultMss6 = 1220;
inline constexpr std::uint16_t kMinMtu4 = 576;   // RFC 791: every host accepts 576
inline constexpr std::uint16_t kMinMtu6 = 1280;  // RFC 8200 §5

constexpr std::uint16_t mss_from_mtu4(std::uint16_t mtu) noexcept {
  return mtu > kIpv4HeaderMin + kTcpHeaderMin
             ? static_cast<std::uint16_t>(mtu - kIpv4HeaderMin - kTcpHeaderMin)
             : 0;
}
constexpr std::uint16_t mss_from_mtu6(std::uint16_t mtu) noexcept {
  return mtu > kIpv6HeaderLen + kTcpHeaderMin
             ? static_cast<std::uint16_t>(mtu - kIpv6HeaderLen - kTcpHeaderMin)
             : 0;
}

}  // namespace tunshim::clamp

// Who set a tunnel interface's MTU, sans-I/O: the bookkeeping behind set_interface_mtu.
//
// The path-MTU search's upper bound is the MTU the interface had before tunshim touched
// it (the "original"), not a value tunshim wrote, or the first search would cap every
// later one. The kernel refuses to send a probe larger than the interface MTU, so while a
// search looks upward the interface is raised to the search's upper bound; once the search
// completes (or a black hole lowers the value) it is set to the result. An MTU change that
// tunshim did not make (pppd renegotiating, the operator) becomes the new original. The
// rtnetlink event of tunshim's own write arrives later than the write itself: the last few
// written values are remembered so those events are not mistaken for someone else's.
#pragma once

#include <array>
#include <cstdint>

namespace tunshim::keepalive {

class MtuOwner {
 public:
  enum class Change : std::uint8_t {
    none,      // the MTU is what we already knew
    ours,      // the event of one of our own writes
    external,  // someone else set it: that is the original now
  };

  // The interface appeared with `mtu`: everything known before is forgotten.
  void appear(std::uint32_t mtu) noexcept;
  // The interface went away.
  void gone() noexcept;
  // An MTU read from the interface (a link event).
  Change on_link_mtu(std::uint32_t mtu) noexcept;
  // `tunshim reapply`: the MTU as the interface has it now; it is the original unless it
  // is what tunshim last wrote.
  void reread(std::uint32_t mtu) noexcept;
  // A write of `mtu` succeeded.
  void wrote(std::uint32_t mtu) noexcept;

  // The MTU the interface should have now, given the search: the upper bound while
  // searching upward, the measured value once confirmed; 0 when nothing is to be written
  // (the feature is off, the interface absent, or the value is already in place).
  std::uint32_t want(bool enabled, bool searching, std::uint32_t upper_bound, bool confirmed,
                     std::uint32_t pmtu) const noexcept;
  // set_interface_mtu was turned off: the original to write back, or 0 if the interface
  // already has it (or tunshim never wrote anything).
  std::uint32_t restore() const noexcept;

  bool present() const noexcept { return present_; }
  std::uint32_t current() const noexcept { return cur_; }
  std::uint32_t original() const noexcept { return orig_; }
  std::uint32_t last_written() const noexcept { return wrote_; }

 private:
  bool present_ = false;
  std::uint32_t cur_ = 0;                  // the interface's MTU now
  std::uint32_t orig_ = 0;                 // its MTU as someone other than tunshim set it
  std::uint32_t wrote_ = 0;                // what tunshim last wrote (0: nothing yet)
  std::array<std::uint32_t, 4> recent_{};  // our writes whose events may still come
  std::size_t next_ = 0;
};

}  // namespace tunshim::keepalive

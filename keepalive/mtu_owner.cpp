#include "keepalive/mtu_owner.h"

#include <algorithm>

namespace tunshim::keepalive {

void MtuOwner::appear(std::uint32_t mtu) noexcept {
  present_ = true;
  cur_ = orig_ = mtu;
  wrote_ = 0;
  recent_.fill(0);
}

void MtuOwner::gone() noexcept {
  present_ = false;
  cur_ = orig_ = wrote_ = 0;
  recent_.fill(0);
}

MtuOwner::Change MtuOwner::on_link_mtu(std::uint32_t mtu) noexcept {
  if (!present_ || mtu == cur_) return Change::none;
  if (std::find(recent_.begin(), recent_.end(), mtu) != recent_.end()) return Change::ours;
  cur_ = orig_ = mtu;
  recent_.fill(0);
  return Change::external;
}

void MtuOwner::reread(std::uint32_t mtu) noexcept {
  if (mtu != cur_ || wrote_ == 0) cur_ = orig_ = mtu;
}

void MtuOwner::wrote(std::uint32_t mtu) noexcept {
  cur_ = wrote_ = mtu;
  recent_[next_] = mtu;
  next_ = (next_ + 1) % recent_.size();
}

std::uint32_t MtuOwner::want(bool enabled, bool searching, std::uint32_t upper_bound,
                             bool confirmed, std::uint32_t pmtu) const noexcept {
  if (!enabled || !present_) return 0;
  std::uint32_t w = 0;
  if (searching) {
    w = upper_bound;  // so the larger probes can leave at all
  } else if (confirmed) {
    w = pmtu;
  }
  return w != 0 && w != cur_ ? w : 0;
}

std::uint32_t MtuOwner::restore() const noexcept {
  return present_ && wrote_ != 0 && orig_ != cur_ ? orig_ : 0;
}

}  // namespace tunshim::keepalive

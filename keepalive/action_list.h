// A fixed-capacity list of actions returned by one state-machine event. No allocation:
// every machine sizes N for the most actions one event can produce.
#pragma once

#include <array>
#include <cstddef>

namespace tunshim::keepalive {

template <typename T, std::size_t N>
class ActionList {
 public:
  // Appends `a`. Capacity is sized per machine so this cannot fill up; if it ever did,
  // the action is dropped and overflowed() turns true (tests assert it stays false).
  constexpr void push(const T& a) noexcept {
    if (size_ < N) {
      items_[size_++] = a;
    } else {
      overflowed_ = true;
    }
  }
  constexpr std::size_t size() const noexcept { return size_; }
  constexpr bool empty() const noexcept { return size_ == 0; }
  constexpr bool overflowed() const noexcept { return overflowed_; }
  constexpr const T& operator[](std::size_t i) const noexcept { return items_[i]; }
  constexpr const T* begin() const noexcept { return items_.data(); }
  constexpr const T* end() const noexcept { return items_.data() + size_; }
  static constexpr std::size_t capacity() noexcept { return N; }

 private:
  std::array<T, N> items_{};
  std::size_t size_ = 0;
  bool overflowed_ = false;
};

}  // namespace tunshim::keepalive

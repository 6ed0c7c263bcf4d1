// Owning wrappers for libuv handles.
//
// libuv's rule: a handle's memory must stay valid until its close callback has run, which is
// one loop iteration after uv_close(). UvHandle<T> allocates the handle and, when its owner
// lets it go, calls uv_close() with a callback that frees the memory, so an owner can be
// destroyed at any time without waiting for the loop. After that no callback of the handle
// runs (libuv stops it at uv_close), except the callbacks of requests still in flight on it
// (uv_write, uv_shutdown), which libuv calls with UV_ECANCELED: such a request must not point
// at the owner (see StreamServer for one that does it right).
//
// UvTimer is a timer with a std::function callback, for code off the packet path.
#pragma once

#include <uv.h>

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace tunshim::proxy {

template <class T>
class UvHandle {
 public:
  UvHandle() noexcept = default;
  ~UvHandle() { reset(); }
  UvHandle(UvHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UvHandle& operator=(UvHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;

  // Allocates the handle and runs `init(loop, handle, args...)` (uv_timer_init, uv_tcp_init,
  // uv_pipe_init, uv_poll_init…). A handle whose init failed is not known to the loop, so it
  // is freed at once and the error returned. Closes what was held before.
  template <class Init, class... Args>
  int init(uv_loop_t* loop, Init init_fn, Args&&... args) {
    reset();
    auto h = std::make_unique<T>();  // value-initialised: zeroed
    const int rc = init_fn(loop, h.get(), std::forward<Args>(args)...);
    if (rc == 0) h_ = h.release();
    return rc;
  }

  // uv_spawn initialises the process handle even when it fails, and libuv then requires it
  // to be closed: the handle is kept either way (reset() closes it).
  int spawn(uv_loop_t* loop,
            const uv_process_options_t& options) requires std::same_as<T, uv_process_t> {
    reset();
    h_ = new T();
    return uv_spawn(loop, h_, &options);
  }

  // Closes the handle (its memory is freed by the loop afterwards). Safe to call twice.
  void reset() noexcept {
    if (h_ == nullptr) return;
    h_->data = nullptr;
    uv_close(handle(), [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
    h_ = nullptr;
  }

  T* get() const noexcept { return h_; }
  T* operator->() const noexcept { return h_; }
  explicit operator bool() const noexcept { return h_ != nullptr; }
  // libuv's documented handle "inheritance": every handle type starts with uv_handle_t's
  // fields, every stream type with uv_stream_t's. The casts live here and nowhere else.
  uv_handle_t* handle() const noexcept { return reinterpret_cast<uv_handle_t*>(h_); }
  uv_stream_t* stream() const noexcept requires std::same_as<T, uv_tcp_t> ||
      std::same_as<T, uv_pipe_t> || std::same_as<T, uv_tty_t> {
    return reinterpret_cast<uv_stream_t*>(h_);
  }

 private:
  T* h_ = nullptr;
};

// A one-shot or repeating timer calling a std::function. The function is destroyed with the
// timer's memory, after the close; it is never called once the timer is stopped or reset.
class UvTimer {
 public:
  UvTimer() noexcept = default;
  explicit UvTimer(uv_loop_t* loop) { init(loop); }
  ~UvTimer() { reset(); }
  UvTimer(UvTimer&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  UvTimer& operator=(UvTimer&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  UvTimer(const UvTimer&) = delete;
  UvTimer& operator=(const UvTimer&) = delete;

  void init(uv_loop_t* loop) {
    reset();
    s_ = new State();
    uv_timer_init(loop, &s_->timer);
    s_->timer.data = s_;
  }
  // Calls `fn` after `timeout_ms`, then every `repeat_ms` if that is not 0. Replaces a
  // pending start. The callback may reset or destroy this UvTimer.
  void start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, std::function<void()> fn) {
    s_->fn = std::move(fn);
    uv_timer_start(
        &s_->timer,
        [](uv_timer_t* t) {
          auto* s = static_cast<State*>(t->data);
          // A copy: the callback may replace s->fn by starting the timer again.
          std::function<void()> f = s->fn;
          f();
        },
        timeout_ms, repeat_ms);
  }
  void start(std::uint64_t timeout_ms, std::function<void()> fn) {
    start(timeout_ms, 0, std::move(fn));
  }
  void stop() noexcept {
    if (s_ != nullptr) uv_timer_stop(&s_->timer);
  }
  bool active() const noexcept {
    return s_ != nullptr && uv_is_active(reinterpret_cast<const uv_handle_t*>(&s_->timer)) != 0;
  }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  void reset() noexcept {
    if (s_ == nullptr) return;
    uv_timer_stop(&s_->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&s_->timer),
             [](uv_handle_t* h) { delete static_cast<State*>(h->data); });
    s_ = nullptr;
  }

 private:
  struct State {
    uv_timer_t timer{};
    std::function<void()> fn;
  };
  State* s_ = nullptr;
};

}  // namespace tunshim::proxy

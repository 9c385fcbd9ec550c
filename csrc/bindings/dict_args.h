// Keyword arguments given as a dict (conv_grads_offsets takes one for each of its two
// products): a missing required one, a name the call does not take, or a value of the wrong
// type is a ValueError naming it. Held as a copy of the dict: its buffers stay referenced
// while the kernel runs without the GIL, even if another thread changes the caller's dict.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

#include "bindings/checks.h"

namespace sparsetrain {
namespace bindings {

class DictArgs {
 public:
  DictArgs(const py::dict& d, const char* call, std::initializer_list<const char*> names)
      : d_(d.attr("copy")().cast<py::dict>()), call_(call) {
    for (auto item : d_) {
      const auto key = item.first.cast<std::string>();
      bool known = false;
      for (const char* n : names) known = known || key == n;
      if (!known) bad(std::string(call) + ": unexpected argument '" + key + "'");
    }
  }
  bool has(const char* name) const { return d_.contains(name) && !d_[name].is_none(); }
  py::array array(const char* name) const {
    if (!d_.contains(name)) bad(std::string(call_) + ": missing argument '" + name + "'");
    py::object o = d_[name];
    if (!py::isinstance<py::array>(o))
      bad(std::string(call_) + ": '" + name + "' must be a NumPy array");
    return py::reinterpret_borrow<py::array>(o);
  }
  std::optional<py::array> optional_array(const char* name) const {
    if (!has(name)) return std::nullopt;
    return array(name);
  }
  // A layout class of _C (ConvInputLayout, ConvOutputLayout), or absent / None.
  template <class L>
  std::optional<L> layout(const char* name, const char* cls) const {
    if (!has(name)) return std::nullopt;
    py::object o = d_[name];
    if (!py::isinstance<L>(o))
      bad(std::string(call_) + ": '" + name + "' must be a " + cls + " or None");
    return o.cast<L>();
  }
  template <class T>
  T get(const char* name) const {
    if (!d_.contains(name)) bad(std::string(call_) + ": missing argument '" + name + "'");
    return cast<T>(name);
  }
  template <class T>
  T get(const char* name, T fallback) const {
    return d_.contains(name) ? cast<T>(name) : fallback;
  }

 private:
  template <class T>
  T cast(const char* name) const {
    py::object o = d_[name];
    if constexpr (std::is_same_v<T, bool>) {
      if (!py::isinstance<py::bool_>(o))
        bad(std::string(call_) + ": '" + name + "' must be True or False");
    } else {
      if (!py::isinstance<py::int_>(o) || py::isinstance<py::bool_>(o))
        bad(std::string(call_) + ": '" + name + "' must be an integer");
    }
    try {
      return o.cast<T>();
    } catch (const py::cast_error&) {
      bad(std::string(call_) + ": '" + name + "' is out of range");
    }
  }

  py::dict d_;
  const char* call_;
};

}  // namespace bindings
}  // namespace sparsetrain

// Errors inside the runtime: Fail() throws a status and a one-line message, Guard() runs an API
// call's body and turns whatever it throws into that status (and the message into mnv3_error).
// No exception crosses the C API.
#ifndef MNV3_STATUS_H_
#define MNV3_STATUS_H_

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "mnv3.h"

namespace mnv3_internal {

struct Failure {
  mnv3_status code;
  std::string message;
};

[[noreturn]] inline void Fail(mnv3_status code, const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  throw Failure{code, text};
}

inline void Report(mnv3_error* err, mnv3_status code, const std::string& message) {
  if (err == nullptr) return;
  err->code = code;
  std::snprintf(err->message, sizeof(err->message), "%s", message.c_str());
}

// Runs `body`; any exception becomes (status, message) in `err`.
template <typename Body>
mnv3_status Guard(mnv3_error* err, Body&& body) {
  try {
    body();
    Report(err, MNV3_OK, "");
    return MNV3_OK;
  } catch (const Failure& failure) {
    Report(err, failure.code, failure.message);
    return failure.code;
  } catch (const std::bad_alloc&) {
    Report(err, MNV3_ERR_MEMORY, "out of memory");
    return MNV3_ERR_MEMORY;
  } catch (const std::exception& exc) {  // ffi::Error included
    Report(err, MNV3_ERR_RUN, std::string("TVM runtime: ") + exc.what());
    return MNV3_ERR_RUN;
  } catch (...) {
    Report(err, MNV3_ERR_RUN, "unknown error");
    return MNV3_ERR_RUN;
  }
}

}  // namespace mnv3_internal

#endif  // MNV3_STATUS_H_

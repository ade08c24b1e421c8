#include "transport/address.hpp"

#include <charconv>
#include <cstring>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/error.hpp"

namespace troupe::transport {

std::string node_address::to_uri() const {
  std::string result = protocol + "://";
  if (host.find(':') != std::string::npos)
    result += "[" + host + "]";
  else
    result += host;
  result += ':';
  result += std::to_string(port);
  return result;
}

caf::expected<std::string> local_address_towards(const std::string& host) {
  auto bad = [](std::string why) { return make_error(errc::unreachable, std::move(why)); };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  // Any port: connecting a UDP socket only picks a route, it sends nothing.
  if (int rc = ::getaddrinfo(host.c_str(), "9", &hints, &found); rc != 0) {
    return bad("cannot resolve \"" + host + "\": " + ::gai_strerror(rc));
  }
  std::string last_error = "no address";
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::string{"socket: "} + std::strerror(errno);
      continue;
    }
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    bool routed = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0
                  && ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
    if (!routed)
      last_error = std::string{"no route: "} + std::strerror(errno);
    ::close(fd);
    if (!routed)
      continue;
    char text[INET6_ADDRSTRLEN] = {};
    const void* raw = local.ss_family == AF_INET6
                        ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                        : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
    if (::inet_ntop(local.ss_family, raw, text, sizeof(text)) == nullptr) {
      last_error = std::string{"inet_ntop: "} + std::strerror(errno);
      continue;
    }
    ::freeaddrinfo(found);
    return std::string{text};
  }
  ::freeaddrinfo(found);
  return bad("no local address routes towards \"" + host + "\" (" + last_error + ")");
}

bool is_supported_protocol(std::string_view protocol) {
  return protocol == "ucx";
}

caf::expected<node_address> parse_node_address(std::string_view uri) {
  auto bad = [](std::string why) { return make_error(errc::invalid_config, std::move(why)); };
  auto scheme_end = uri.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) {
    return bad("expected PROTOCOL://HOST:PORT (e.g. ucx://127.0.0.1:7100), missing '://'");
  }
  node_address result;
  result.protocol = std::string{uri.substr(0, scheme_end)};
  if (!is_supported_protocol(result.protocol)) {
    return bad("unsupported protocol '" + result.protocol + "' (supported: ucx)");
  }
  auto rest = uri.substr(scheme_end + 3);
  std::string_view host;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return bad("unterminated '[' in IPv6 host");
    }
    host = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return bad("expected ':PORT' after ']'");
    }
    port_text = rest.substr(1);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return bad("missing ':PORT'");
    }
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad("an IPv6 host must be written in brackets, e.g. ucx://[::1]:7100");
    }
  }
  if (host.empty()) {
    return bad("missing host");
  }
  unsigned long port = 0;
  auto [end, ec] =
    std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{}
      || end != port_text.data() + port_text.size()) {
    return bad("port '" + std::string{port_text} + "' is not a number");
  }
  if (port > 65535) {
    return bad("port " + std::string{port_text} + " is out of range 0-65535");
  }
  result.host = std::string{host};
  result.port = static_cast<uint16_t>(port);
  return result;
}

} // namespace troupe::transport

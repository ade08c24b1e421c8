// The engine's RDMA (detail/ucx_engine_impl.hpp): memory mapped and registered for
// peers to reach, the per-connection cache of their remote keys, and get/put.

#include "transport/detail/ucx_engine_impl.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace troupe::transport::detail {

// -- remote keys ----------------------------------------------------------------------

void engine::impl::drop_rkeys(connection& c) {
  for (auto& kvp : c.rkeys)
    ucp_rkey_destroy(kvp.second.handle);
  remote_keys -= c.rkeys.size();
  c.rkeys.clear();
}

void engine::impl::trim_rkeys(connection& c) {
  if (c.rkeys.size() <= max_cached_rkeys)
    return;
  std::vector<std::pair<uint64_t, std::string>> idle;
  for (auto& kvp : c.rkeys)
    if (kvp.second.users == 0)
      idle.emplace_back(kvp.second.last_use, kvp.first);
  std::sort(idle.begin(), idle.end());
  for (auto& [last_use, packed] : idle) {
    if (c.rkeys.size() <= max_cached_rkeys)
      break;
    auto i = c.rkeys.find(packed);
    ucp_rkey_destroy(i->second.handle);
    c.rkeys.erase(i);
    --remote_keys;
  }
}

// -- RMA ------------------------------------------------------------------------------

void engine::impl::finish_rma(rma_state& state) {
  if (auto c = find(state.conn)) {
    auto i = c->rkeys.find(state.packed_rkey);
    if (i != c->rkeys.end() && i->second.users > 0)
      --i->second.users;
    trim_rkeys(*c);
  }
  state.done(state.error);
}

void engine::impl::on_rma_put_done(void* request, ucs_status_t status, void* user_data) {
  auto token = std::unique_ptr<rma_token>(static_cast<rma_token*>(user_data));
  if (status != UCS_OK)
    token->state->error = "put failed: " + status_text(status);
  ucp_request_free(request);
}

void engine::impl::on_rma_done(void* request, ucs_status_t status, void* user_data) {
  auto token = std::unique_ptr<rma_token>(static_cast<rma_token*>(user_data));
  if (status != UCS_OK && token->state->error.empty())
    token->state->error = "RDMA failed: " + status_text(status);
  --token->self->rma_in_flight;
  token->self->rma_completions.push_back(std::move(token->state));
  ucp_request_free(request);
}

bool engine::rma(conn_id conn, bool is_put, void* local, size_t length,
                 uint64_t remote_address, const std::string& packed_rkey,
                 rma_callback done, std::shared_ptr<void> keep_alive) {
  auto& d = *impl_;
  auto c = d.find(conn);
  if (!impl::usable(c)) {
    done("the connection to the region's node is gone");
    return false;
  }
  auto& cached = c->rkeys[packed_rkey];
  if (cached.handle == nullptr) {
    auto status = ucp_ep_rkey_unpack(c->ep, packed_rkey.data(), &cached.handle);
    if (status != UCS_OK) {
      c->rkeys.erase(packed_rkey);
      done("cannot unpack the region's remote key: " + status_text(status));
      return false;
    }
    ++d.remote_keys;
  }
  ++cached.users;
  cached.last_use = ++c->rkey_clock;
  ucp_rkey_h rkey = cached.handle;
  auto state = std::make_shared<impl::rma_state>();
  state->conn = conn;
  state->packed_rkey = packed_rkey;
  state->done = std::move(done);
  state->keep_alive = std::move(keep_alive);
  // Each request gets its own token: UCX frees nothing of ours, and a callback that
  // never comes (immediate completion) leaks nothing.
  auto issue = [&](auto&& start, ucp_send_nbx_callback_t cb) {
    auto token = std::make_unique<impl::rma_token>(impl::rma_token{&d, state});
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.send = cb;
    rp.user_data = token.get();
    ucs_status_ptr_t req = start(rp);
    if (UCS_PTR_IS_PTR(req)) {
      token.release(); // the callback owns it now
      return UCS_INPROGRESS;
    }
    return UCS_PTR_STATUS(req);
  };
  ucs_status_t status;
  if (is_put) {
    status = issue(
      [&](ucp_request_param_t& rp) {
        return ucp_put_nbx(c->ep, local, length, remote_address, rkey, &rp);
      },
      &impl::on_rma_put_done);
    if (status != UCS_OK && status != UCS_INPROGRESS)
      state->error = "put failed: " + status_text(status);
    // A put completes locally; the flush completes once the data is remote.
    status = issue([&](ucp_request_param_t& rp) { return ucp_ep_flush_nbx(c->ep, &rp); },
                   &impl::on_rma_done);
  } else {
    status = issue(
      [&](ucp_request_param_t& rp) {
        return ucp_get_nbx(c->ep, local, length, remote_address, rkey, &rp);
      },
      &impl::on_rma_done);
  }
  if (status == UCS_INPROGRESS) {
    d.sends_in_progress = true; // someone must progress the worker for it
    ++d.rma_in_flight;
  }
  if (status != UCS_INPROGRESS) {
    // Reported here, by the thread that asked: over shared memory UCX makes a get or
    // put (a copy) inside the call, and a caller that issues several (a window)
    // finds each one's report waiting when it looks. Left to the next round's
    // dispatch, each report went through the thread polling UCX, and a caller that
    // had nothing else to read slept until it came (a wakeup per transfer; a 1 MiB
    // get stream reached ~60 % of raw UCX's rate, measured).
    if (status != UCS_OK && state->error.empty())
      state->error = "RDMA failed: " + status_text(status);
    d.finish_rma(*state);
    return false;
  }
  return true;
}

uint64_t engine::cached_remote_keys() const {
  return impl_->remote_keys.load();
}

// -- registered memory ----------------------------------------------------------------

mapped_memory::~mapped_memory() {
  if (memh != nullptr)
    ucp_mem_unmap(static_cast<ucp_context_h>(context.get()),
                  static_cast<ucp_mem_h>(memh));
}

std::unique_ptr<mapped_memory> engine::map_memory(size_t bytes, std::string& error) {
  auto ctx = std::atomic_load(&impl_->context_ref);
  if (!ctx) {
    error = "the transport is not running";
    return nullptr;
  }
  auto result = std::make_unique<mapped_memory>();
  result->context = ctx;
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.length = bytes;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  ucp_mem_h memh = nullptr;
  auto status = ucp_mem_map(static_cast<ucp_context_h>(ctx.get()), &params, &memh);
  if (status != UCS_OK) {
    error = "cannot register " + std::to_string(bytes) + " bytes: " + status_text(status);
    return nullptr;
  }
  result->memh = memh;
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  status = ucp_mem_query(memh, &attr);
  if (status != UCS_OK) {
    error = "ucp_mem_query: " + status_text(status);
    return nullptr;
  }
  result->address = attr.address;
  result->length = bytes;
  void* rkey_buffer = nullptr;
  size_t rkey_size = 0;
  status =
    ucp_rkey_pack(static_cast<ucp_context_h>(ctx.get()), memh, &rkey_buffer, &rkey_size);
  if (status != UCS_OK) {
    error = "ucp_rkey_pack: " + status_text(status);
    return nullptr;
  }
  result->packed_rkey.assign(static_cast<const char*>(rkey_buffer), rkey_size);
  ucp_rkey_buffer_release(rkey_buffer);
  return result;
}

} // namespace troupe::transport::detail

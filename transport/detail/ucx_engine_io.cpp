// The engine's active messages (detail/ucx_engine_impl.hpp): frames out (send,
// send_now), frames in (eager and rendezvous receives into a connection's inbox) and
// their delivery to the handler in arrival order.

#include "transport/detail/ucx_engine_impl.hpp"

#include <cstring>
#include <memory>
#include <new>

namespace troupe::transport::detail {

namespace {

// A batch's data is a sequence of records, each on an 8-byte boundary: the header's
// and the payload's byte counts (two little-endian uint32), the header, the payload,
// each padded to whole words. The active message header is empty.
constexpr size_t record_prefix = 8;

size_t padded(size_t bytes) {
  return (bytes + 7) & ~size_t{7};
}

size_t record_size(const word_buffer& header, const word_buffer& payload) {
  return record_prefix + padded(header.size()) + padded(payload.size());
}

/// Frames larger than this go alone: batching saves per-message costs, which a large
/// message does not notice.
constexpr size_t max_batched_frame = 1024;
/// A batch stays below UCX's shared-memory fragment (8 KiB by default) so that it
/// goes out as one eager message, never by rendezvous.
constexpr size_t max_batch_bytes = 7 * 1024;

} // namespace

// -- UCX callbacks ---------------------------------------------------------------------

void engine::impl::on_send_done(void* request, ucs_status_t status, void* user_data) {
  auto op = static_cast<send_op*>(user_data);
  if (status != UCS_OK && status != UCS_ERR_CANCELED)
    op->self->fails.emplace_back(op->conn, "send failed: " + status_text(status));
  if (op->prev != nullptr)
    op->prev->next = op->next;
  else
    op->self->sends_pending = op->next;
  if (op->next != nullptr)
    op->next->prev = op->prev;
  delete op;
  ucp_request_free(request);
}

void engine::impl::on_recv_done(void* request, ucs_status_t status, size_t,
                                void* user_data) {
  auto op = static_cast<recv_op*>(user_data);
  op->self->received(op->conn, op->slot.get(), status);
  delete op;
  ucp_request_free(request);
}

ucs_status_t engine::impl::on_am(void* arg, const void* header, size_t header_length,
                                 void* data, size_t length,
                                 const ucp_am_recv_param_t* param) {
  auto a = static_cast<am_handler_arg*>(arg);
  return a->self->handle_am(a->kind, header, header_length, data, length, param);
}

ucs_status_t engine::impl::on_unknown_am(void* arg, const void*, size_t, void*, size_t,
                                         const ucp_am_recv_param_t* param) {
  auto self = static_cast<impl*>(arg);
  conn_id conn = 0;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) {
    auto it = self->by_ep.find(param->reply_ep);
    if (it != self->by_ep.end())
      conn = it->second;
  }
  self->drops.emplace_back(conn, "unknown active message id");
  return UCS_OK; // a rendezvous descriptor is dropped by UCX on UCS_OK
}

// -- sending --------------------------------------------------------------------------

void engine::impl::start_send(connection& c, am_kind kind, word_buffer header,
                              word_buffer payload) {
  auto op = new send_op{this, c.id, std::move(header), std::move(payload)};
  ucp_request_param_t rp{};
  rp.op_attr_mask =
    UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  rp.cb.send = &impl::on_send_done;
  rp.user_data = op;
  // REPLY makes UCX tell the receiver which endpoint a message came on.
  rp.flags = UCP_AM_SEND_FLAG_REPLY;
  auto req =
    ucp_am_send_nbx(c.ep, static_cast<unsigned>(kind), op->header.data(),
                    op->header.size(), op->payload.data(), op->payload.size(), &rp);
  if (req == nullptr) {
    delete op; // completed in place
  } else if (UCS_PTR_IS_PTR(req)) {
    sends_in_progress = true; // someone must progress the worker for it
    op->next = sends_pending;
    if (sends_pending != nullptr)
      sends_pending->prev = op;
    sends_pending = op;
  } else if (UCS_PTR_IS_ERR(req)) {
    fails.emplace_back(c.id, "send failed: " + status_text(UCS_PTR_STATUS(req)));
    delete op;
  }
}

void engine::send_now(conn_id conn, am_kind kind, word_buffer header,
                      word_buffer payload) {
  auto c = impl_->find(conn);
  if (!impl::usable(c))
    return;
  impl_->start_send(*c, kind, std::move(header), std::move(payload));
}

void engine::send(conn_id conn, am_kind kind, word_buffer header, word_buffer payload) {
  auto& d = *impl_;
  auto c = d.find(conn);
  if (!impl::usable(c))
    return;
  if (!c->ready) {
    c->waiting.push_back({kind, std::move(header), std::move(payload)});
    return;
  }
  if (d.holding_sends && d.opts.batch_frames && kind == am_kind::envelope
      && header.size() + payload.size() <= max_batched_frame) {
    if (c->held.empty())
      d.conns_with_held.push_back(conn);
    c->held.push_back({kind, std::move(header), std::move(payload)});
    return;
  }
  d.send_held(*c); // what was held back goes first
  d.start_send(*c, kind, std::move(header), std::move(payload));
}

void engine::impl::send_held(connection& c) {
  if (c.held.empty())
    return;
  auto held = std::move(c.held);
  c.held.clear();
  size_t i = 0;
  while (i < held.size()) {
    // As many as fit one batch; a lone frame goes as itself.
    size_t end = i;
    size_t bytes = 0;
    auto size_of = [&](size_t k) { return record_size(held[k].header, held[k].payload); };
    while (end < held.size() && (end == i || bytes + size_of(end) <= max_batch_bytes))
      bytes += size_of(end++);
    if (end - i == 1) {
      start_send(c, held[i].kind, std::move(held[i].header), std::move(held[i].payload));
      ++i;
      continue;
    }
    word_buffer batch{bytes};
    auto* out = batch.data();
    for (; i < end; ++i) {
      auto& f = held[i];
      uint32_t sizes[2] = {static_cast<uint32_t>(f.header.size()),
                           static_cast<uint32_t>(f.payload.size())};
      std::memcpy(out, sizes, sizeof sizes);
      out += record_prefix;
      std::memcpy(out, f.header.data(), f.header.size());
      std::memset(out + f.header.size(), 0, padded(f.header.size()) - f.header.size());
      out += padded(f.header.size());
      if (!f.payload.empty())
        std::memcpy(out, f.payload.data(), f.payload.size());
      std::memset(out + f.payload.size(), 0, padded(f.payload.size()) - f.payload.size());
      out += padded(f.payload.size());
      frames_batched.fetch_add(1, std::memory_order_relaxed);
    }
    batches_sent.fetch_add(1, std::memory_order_relaxed);
    start_send(c, am_kind::batch, word_buffer{}, std::move(batch));
  }
}

void engine::impl::send_all_held() {
  auto ids = std::move(conns_with_held);
  conns_with_held.clear();
  for (auto id : ids) {
    if (auto c = find(id); usable(c))
      send_held(*c);
    else if (c != nullptr)
      c->held.clear();
  }
}

// -- receiving ------------------------------------------------------------------------

ucs_status_t engine::impl::handle_am(am_kind kind, const void* header,
                                     size_t header_length, void* data, size_t length,
                                     const ucp_am_recv_param_t* param) {
  connection* c = nullptr;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0) {
    auto it = by_ep.find(param->reply_ep);
    if (it != by_ep.end())
      c = find(it->second);
  }
  if (c == nullptr || c->failed) {
    drops.emplace_back(0, "unknown connection");
    return UCS_OK; // a rendezvous descriptor is dropped by UCX on UCS_OK
  }
  if (length > opts.max_payload) {
    drops.emplace_back(c->id, "oversized payload");
    return UCS_OK;
  }
  auto slot = std::make_shared<inbox_slot>();
  slot->f.kind = kind;
  // Neither the header nor eager data is 8-byte aligned: copy into words.
  slot->f.header = word_buffer::copy_of(header, header_length);
  bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  ucs_status_t result = UCS_OK;
  if (rndv) {
    try {
      slot->f.payload = word_buffer{length};
    } catch (const std::bad_alloc&) {
      drops.emplace_back(c->id, "no memory for a payload");
      return UCS_OK; // UCX drops the rendezvous descriptor
    }
    slot->rndv_desc = data;
    rndv_to_start.emplace_back(c->id, slot);
    result = UCS_INPROGRESS;
  } else {
    slot->f.payload = word_buffer::copy_of(data, length);
    slot->complete = true;
  }
  bool was_empty = c->inbox.empty();
  c->inbox.push_back(std::move(slot));
  if (was_empty && c->inbox.front()->complete)
    ready_to_deliver.push_back(c->id);
  return result;
}

void engine::impl::start_rndv(conn_id owner, const slot_ptr& slot) {
  if (find(owner) == nullptr)
    return; // its connection failed meanwhile and released the descriptor
  auto desc = slot->rndv_desc;
  slot->rndv_desc = nullptr;
  auto op = new recv_op{this, owner, slot};
  ucp_request_param_t rp{};
  rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  rp.cb.recv_am = &impl::on_recv_done;
  rp.user_data = op;
  // The request must live until its callback: freeing it early hangs the receive.
  auto req = ucp_am_recv_data_nbx(worker, desc, slot->f.payload.data(),
                                  slot->f.payload.size(), &rp);
  if (req == nullptr) {
    delete op;
    received(owner, slot.get(), UCS_OK);
  } else if (UCS_PTR_IS_ERR(req)) {
    delete op;
    received(owner, slot.get(), UCS_PTR_STATUS(req));
  }
}

void engine::impl::received(conn_id id, inbox_slot* slot, ucs_status_t status) {
  auto c = find(id);
  if (c == nullptr)
    return;
  slot->complete = true;
  slot->failed = status != UCS_OK;
  if (!c->inbox.empty() && c->inbox.front().get() == slot)
    ready_to_deliver.push_back(id);
}

void engine::impl::deliver(conn_id id) {
  auto c = find(id);
  if (c == nullptr)
    return;
  while (!c->inbox.empty() && c->inbox.front()->complete) {
    auto slot = std::move(c->inbox.front());
    c->inbox.pop_front();
    if (slot->failed) {
      handler.on_drop(id, "payload receive failed");
      continue;
    }
    if (slot->f.kind == am_kind::batch) {
      if (!deliver_batch(id, slot->f.payload))
        return;
      c = find(id);
      continue;
    }
    handler.on_frame(id, std::move(slot->f));
    // The handler may have failed or closed this connection.
    c = find(id);
    if (c == nullptr)
      return;
  }
}

bool engine::impl::deliver_batch(conn_id id, const word_buffer& batch) {
  const uint8_t* at = batch.data();
  size_t left = batch.size();
  while (left != 0) {
    uint32_t sizes[2];
    if (left < record_prefix) {
      handler.on_drop(id, "malformed batch");
      return find(id) != nullptr;
    }
    std::memcpy(sizes, at, sizeof sizes);
    size_t need = record_prefix + padded(sizes[0]) + padded(sizes[1]);
    if (sizes[0] == 0 || need > left) {
      handler.on_drop(id, "malformed batch"); // the rest cannot be framed
      return find(id) != nullptr;
    }
    frame f;
    f.kind = am_kind::envelope;
    f.header = word_buffer::copy_of(at + record_prefix, sizes[0]);
    f.payload = word_buffer::copy_of(at + record_prefix + padded(sizes[0]), sizes[1]);
    at += need;
    left -= need;
    handler.on_frame(id, std::move(f));
    if (find(id) == nullptr)
      return false; // the handler closed or failed the connection
  }
  return true;
}

} // namespace troupe::transport::detail

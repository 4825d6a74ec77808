/* campaign.h - send one claimed campaign, from the claim to its end.
 *
 * Per batch of recipients (registry.mark_batch_size): ask the ledger which
 * are still pending, mark them INFLIGHT, hand them to the sender, and mark
 * each outcome SENT or REJECTED as it comes back. The registry side of that
 * runs on the worker's mark writer (mark_writer.h), beside the sending, so
 * the connections stay busy while marks commit. Between batches the
 * operator's pause/cancel and our shutdown are honoured; the lease flag
 * (lease.h) is checked before every registry write and every sender poll.
 * The campaign ends as one of:
 *   DONE      every recipient SENT or REJECTED: registry_complete;
 *   released  shutdown (resume trigger to the main exchange at once),
 *             pause (no trigger: `resume` re-triggers), provider down or a
 *             transient list failure (resume trigger to a retry queue,
 *             attempt counted);
 *   DEAD      max_attempts releases, or a recipients list that does not
 *             exist: trigger copy to the DLQ with x-sendonce-error;
 *   lost      stale fence: in-flight requests cancelled, nothing written;
 *   cancelled the operator cancelled it: stop, nothing more to write.
 */
#ifndef SENDONCE_CONSUMER_CAMPAIGN_H
#define SENDONCE_CONSUMER_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "worker.h"

/* campaign_run: process campaign `m` (whose trigger body is body[0..len))
 * claimed with `fence` by worker `w` in a registry_claim call that started
 * at `claimed_at_ms` (monotonic; the lease is counted from there). When
 * the claim also marked m's inline recipients INFLIGHT
 * (registry_register_claim_mark), `premarked` holds its pending answers,
 * one per m->recipients[i], else it is NULL. Returns when the campaign
 * has ended as above for this worker. */
void campaign_run(struct worker *w, const struct msg *m, const char *body,
                  size_t body_len, int64_t fence, int64_t claimed_at_ms,
                  const bool *premarked);

#endif /* SENDONCE_CONSUMER_CAMPAIGN_H */

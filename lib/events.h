/* events.h - lifecycle events on the events exchange (<prefix>.events,
 * topic), for other services and for a person in the management UI.
 *
 * An event is a small JSON object published with routing key
 * "<kind>" (e.g. "campaign.claimed"), message_id "<campaign_id>" and
 * header x-sendonce-event = kind. Body (docs/events.md):
 *   {"event":"campaign.progress","campaign_id":"spring","at":"<RFC 3339>",
 *    "fence":3,"owner":"host:123:w1","sent":500,"rejected":2,"total":1000,
 *    "reason":"...","source":"consumer"}
 * Fields that do not apply are left out. Events are best effort: losing one
 * never loses or duplicates a campaign, so a failure to publish is logged
 * and otherwise ignored.
 */
#ifndef SENDONCE_EVENTS_H
#define SENDONCE_EVENTS_H

#include <stdint.h>

#include "status.h"

struct broker;
struct topology;

enum event_kind {
  EVENT_CAMPAIGN_CLAIMED = 0, /* a worker claimed it (fence) */
  EVENT_CAMPAIGN_PROGRESS,    /* a batch of marks was written */
  EVENT_CAMPAIGN_DONE,        /* every recipient SENT or REJECTED */
  EVENT_CAMPAIGN_DEAD,        /* given up; reason */
  EVENT_CAMPAIGN_RELEASED,    /* lease cleared, resume trigger sent */
  EVENT_CAMPAIGN_STALLED,     /* watchdog: lease expired, takeover sent */
  EVENT_CAMPAIGN_REPUBLISHED, /* watchdog: lost trigger recreated */
  EVENT_CAMPAIGN_STUCK,       /* watchdog: leased, no progress */
  EVENT_TRIGGER_DUPLICATE,    /* a trigger for a done/held campaign */
  EVENT_TRIGGER_INVALID,      /* a message dead-lettered as invalid */
  EVENT_ALERT,                /* watchdog alert (reason says which) */
  EVENT_KIND_COUNT
};

/* event_kind_name: the routing key, e.g. "campaign.claimed". */
const char *event_kind_name(enum event_kind kind);

/* One event. Strings are borrowed; a NULL string or a negative number
 * leaves the field out. */
struct event {
  enum event_kind kind;
  const char *campaign_id; /* may be NULL (alerts) */
  const char *source;      /* "consumer", "watchdog", "publisher" */
  const char *owner;
  const char *reason;
  int64_t fence;
  int64_t sent;
  int64_t rejected;
  int64_t total;
};

/* event_init: a zeroed event of `kind` with every number "absent". */
void event_init(struct event *e, enum event_kind kind, const char *source,
                const char *campaign_id);

/* event_to_json: the event's JSON body, NUL-terminated. Caller frees.
 * NULL when out of memory. */
char *event_to_json(const struct event *e);

/* events_publish: publish the event on t->events with a confirm (bounded
 * by the session's op timeout). Returns the broker's status; the caller
 * may ignore it (events are best effort) but it is logged at debug. */
int events_publish(struct broker *b, const struct topology *t,
                   const struct event *e);

/* events_send: publish the event without waiting for anything
 * (broker_publish_unconfirmed): for the consumer's connection owner,
 * whose deliveries and acks must not queue behind event round trips.
 * SO_OK means written, not enqueued: a broker-side refusal loses the
 * event (logged at debug by the broker session). Otherwise like
 * events_publish(). */
int events_send(struct broker *b, const struct topology *t,
                const struct event *e);

/* events_send_json: events_send() of a body made earlier with
 * event_to_json() (e.g. on another thread) for an event of `kind` about
 * `campaign_id` (NULL for alerts). Borrowed for the call. */
int events_send_json(struct broker *b, const struct topology *t,
                     enum event_kind kind, const char *campaign_id,
                     const char *body, size_t len);

#endif /* SENDONCE_EVENTS_H */

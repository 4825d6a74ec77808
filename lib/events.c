/* events.c - lifecycle events on the events exchange. */
#include "events.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "log.h"
#include "topology.h"

static const char *const kind_names[EVENT_KIND_COUNT] = {
    [EVENT_CAMPAIGN_CLAIMED] = "campaign.claimed",
    [EVENT_CAMPAIGN_PROGRESS] = "campaign.progress",
    [EVENT_CAMPAIGN_DONE] = "campaign.done",
    [EVENT_CAMPAIGN_DEAD] = "campaign.dead",
    [EVENT_CAMPAIGN_RELEASED] = "campaign.released",
    [EVENT_CAMPAIGN_STALLED] = "campaign.stalled",
    [EVENT_CAMPAIGN_REPUBLISHED] = "campaign.republished",
    [EVENT_CAMPAIGN_STUCK] = "campaign.stuck",
    [EVENT_TRIGGER_DUPLICATE] = "trigger.duplicate",
    [EVENT_TRIGGER_INVALID] = "trigger.invalid",
    [EVENT_ALERT] = "alert",
};

const char *event_kind_name(enum event_kind kind)
{
  if ((int)kind < 0 || kind >= EVENT_KIND_COUNT)
    return "unknown";
  return kind_names[kind];
}

void event_init(struct event *e, enum event_kind kind, const char *source,
                const char *campaign_id)
{
  memset(e, 0, sizeof(*e));
  e->kind = kind;
  e->source = source;
  e->campaign_id = campaign_id;
  e->fence = -1;
  e->sent = -1;
  e->rejected = -1;
  e->total = -1;
}

/* Add a string field unless it is NULL. Returns 0 or -1 (no memory). */
static int add_string(json_object *o, const char *key, const char *value)
{
  if (!value)
    return 0;
  json_object *v = json_object_new_string(value);
  if (!v)
    return -1;
  return json_object_object_add(o, key, v);
}

/* Add a number field unless it is negative ("absent"). */
static int add_int(json_object *o, const char *key, int64_t value)
{
  if (value < 0)
    return 0;
  json_object *v = json_object_new_int64(value);
  if (!v)
    return -1;
  return json_object_object_add(o, key, v);
}

char *event_to_json(const struct event *e)
{
  char at[CLOCK_RFC3339_LEN];
  char *out = NULL;
  json_object *o = json_object_new_object();
  if (!o)
    return NULL;
  if (clock_format_rfc3339(clock_now_ms(), at, sizeof(at)) != SO_OK)
    at[0] = '\0';
  if (add_string(o, "event", event_kind_name(e->kind)) ||
      add_string(o, "campaign_id", e->campaign_id) || add_string(o, "at", at) ||
      add_string(o, "source", e->source) || add_string(o, "owner", e->owner) ||
      add_int(o, "fence", e->fence) || add_int(o, "sent", e->sent) ||
      add_int(o, "rejected", e->rejected) || add_int(o, "total", e->total) ||
      add_string(o, "reason", e->reason))
    goto done;
  out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
done:
  json_object_put(o);
  return out;
}

int events_publish(struct broker *b, const struct topology *t,
                   const struct event *e)
{
  char err[256] = "";
  char *body = event_to_json(e);
  if (!body)
    return SO_ERR_NOMEM;
  const char *kind = event_kind_name(e->kind);
  struct broker_header header = {"x-sendonce-event", kind};
  struct broker_message m = {
      .exchange = t->events,
      .routing_key = kind,
      .body = body,
      .body_len = strlen(body),
      /* Alerts have no campaign; the broker requires a message id. */
      .message_id = e->campaign_id ? e->campaign_id : kind,
      .attempt = 0,
      .headers = &header,
      .n_headers = 1,
      .mandatory = false,
  };
  int rc = broker_publish_confirmed(b, &m, err, sizeof(err));
  if (rc != SO_OK)
    log_debug("events: publish failed: %s event=%s campaign=%s", err, kind,
              e->campaign_id ? e->campaign_id : "-");
  free(body);
  return rc;
}

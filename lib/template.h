/* template.h - the JSON body template of a provider request.
 *
 * A provider's `body_template` is JSON text with placeholders:
 *
 *   {{campaign_id}}    the campaign id
 *   {{recipient_id}}   the recipient's id
 *   {{address}}        the recipient's address (e-mail, phone number)
 *   {{vars.NAME}}      a field of the recipient's "vars" object
 *   {{content.NAME}}   a field of the campaign's "content" object
 *
 * NAME may be a dotted path into nested objects ({{vars.order.total}}).
 * Spaces inside the braces are ignored ({{ address }}).
 *
 * Every value is inserted as the *content* of a JSON string, escaped
 * (quote, backslash, control characters), so a placeholder belongs inside
 * quotes: "to": "{{address}}". A string value is inserted as is; a number
 * or boolean as its JSON text; null as nothing; an object or array as its
 * compact JSON text (escaped, so it stays one string). A {{vars.NAME}} that
 * the recipient lacks fails that recipient's rendering: a message with a
 * hole in it is never sent. A {{content.NAME}} the campaign lacks fails
 * template_bind(), before anything is sent.
 *
 * Batch APIs (provider batch_size > 1): the per-recipient part of the body
 * goes into one section,
 *
 *   {"campaign": "{{campaign_id}}",
 *    "messages": [{{#recipients}}{"to": "{{address}}",
 *                  "ref": "{{recipient_id}}"}{{/recipients}}]}
 *
 * which is rendered once per recipient of the batch, the copies joined with
 * ",". The template writes the surrounding brackets itself, so the batch
 * can sit in any JSON shape the provider wants. Outside the section only
 * {{campaign_id}} and {{content.NAME}} may appear. A template without a
 * section renders exactly one recipient. At most one section.
 *
 * Threading: a template is read-only after template_bind(); render from
 * one thread at a time per template (the sender owns one per worker).
 */
#ifndef SENDONCE_TEMPLATE_H
#define SENDONCE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Hard cap on a rendered body; larger is SO_ERR_TOO_LARGE. */
#define TEMPLATE_MAX_BODY (16u * 1024u * 1024u)

struct template;

/* One recipient as the template sees it. Borrowed strings. */
struct template_recipient {
  const char *id;        /* recipient id, required */
  const char *address;   /* address, required */
  const char *vars_json; /* JSON object text, or NULL for {} */
};

/* template_parse: parse `text` (syntax and placeholder names only; no
 * campaign needed, so config validation can call it). On success *out owns
 * a new template (template_free()). Returns SO_OK, SO_ERR_NOMEM, or
 * SO_ERR_INVALID with "offset N: message" in err (unterminated "{{",
 * unknown placeholder, a second or unclosed section, a per-recipient
 * placeholder outside the section). */
int template_parse(const char *text, struct template **out, char *err,
                   size_t errlen) SO_MUST_CHECK;

/* template_free: release; NULL is a no-op. */
void template_free(struct template *t);

/* template_is_batch: true when the template has a {{#recipients}} section
 * and can render several recipients into one body. */
bool template_is_batch(const struct template *t);

/* template_bind: attach the campaign (id, and its "content" object as JSON
 * text, NULL for {}); copies both. Checks that every {{content.NAME}}
 * exists. Must precede template_render(); may be called again to rebind.
 * Returns SO_OK, SO_ERR_NOMEM, or SO_ERR_INVALID with the reason in err
 * (content not a JSON object, content.NAME missing). */
int template_bind(struct template *t, const char *campaign_id,
                  const char *content_json, char *err,
                  size_t errlen) SO_MUST_CHECK;

/* template_render: render the body for `n` recipients (n must be 1 for a
 * template without a section, >= 1 with one). On success *out is a new
 * NUL-terminated string owned by the caller (free()) and *outlen its
 * length. On failure *out is NULL, err says why, and *bad is the index of
 * the recipient that could not be rendered (bad vars JSON, a missing
 * vars.NAME) or n when the failure is not one recipient's.
 * Returns SO_OK, SO_ERR_NOMEM, SO_ERR_INVALID (recipient data, unbound
 * template, wrong n) or SO_ERR_TOO_LARGE (body over TEMPLATE_MAX_BODY). */
int template_render(const struct template *t,
                    const struct template_recipient *r, size_t n, char **out,
                    size_t *outlen, size_t *bad, char *err,
                    size_t errlen) SO_MUST_CHECK;

/* template_render_into: template_render() into a caller's reusable
 * buffer: *buf (NULL at first) of capacity *cap grows with realloc as
 * needed, and the caller frees it once done with it. On success it holds
 * the NUL-terminated body, *outlen bytes; on failure its contents are
 * undefined but *buf and *cap stay valid. template_bind() renders what is
 * the same for every recipient once, so each call renders only the
 * recipients' parts. Same returns as template_render(). */
int template_render_into(const struct template *t,
                         const struct template_recipient *r, size_t n,
                         char **buf, size_t *cap, size_t *outlen, size_t *bad,
                         char *err, size_t errlen) SO_MUST_CHECK;

#endif /* SENDONCE_TEMPLATE_H */

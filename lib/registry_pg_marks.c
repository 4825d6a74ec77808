/* registry_pg_marks.c - the parameters of the PostgreSQL mark statements
 * (see registry_pg_marks.h; the SQL is MARK_WITH in registry_pg_schema.c).
 *
 * Collapsing on the client is cheap (a sort of the call's ids) and
 * saves the server the window functions and sort that did it in SQL; it
 * also makes every id appear once, so the statement's CTEs write disjoint
 * rows and each can use the plain form.
 */
#include "registry_pg_marks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_marks_effect {
  const char *id;
  const char *state; /* "INFLIGHT", "SENT" or "REJECTED" */
  const char *error; /* of the winning final mark, or NULL */
  int tries;         /* INFLIGHT marks before the first final one */
  bool final;        /* a SENT or REJECTED mark was among them */
  char tries_text[12];
};

/* The groups, in parameter order (see MARK_WITH). */
enum group {
  G_SENT,     /* $3: first mark SENT without an error */
  G_INFLIGHT, /* $4: one INFLIGHT mark, nothing final */
  G_FINAL,    /* $5-$7: first mark final, the rest */
  G_TRIES,    /* $8-$11: INFLIGHT marks, then maybe a final one */
};

struct keyed {
  const char *id;
  size_t pos;
};

static int keyed_cmp(const void *a, const void *b)
{
  const struct keyed *x = a, *y = b;
  int c = strcmp(x->id, y->id);
  if (c)
    return c;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static const char *state_sql(enum delivery_state s)
{
  switch (s) {
    case DELIVERY_SENT:
      return "SENT";
    case DELIVERY_REJECTED:
      return "REJECTED";
    case DELIVERY_INFLIGHT:
    default:
      return "INFLIGHT";
  }
}

static enum group group_of(const struct pg_marks_effect *e)
{
  if (e->final && e->tries == 0)
    return strcmp(e->state, "SENT") == 0 && !e->error ? G_SENT : G_FINAL;
  if (!e->final && e->tries == 1)
    return G_INFLIGHT;
  return G_TRIES;
}

/* apply: one mark, in call order, onto its recipient's effect. */
static void apply(struct pg_marks_effect *e, const struct registry_mark *m)
{
  if (e->final)
    return; /* a final state is never left */
  if (m->state == DELIVERY_INFLIGHT) {
    e->tries++;
    return;
  }
  e->final = true;
  e->state = state_sql(m->state);
  e->error = m->error;
}

/* column: parameter b as the text[] of one field of group g's effects. */
static int column(struct pg_marks *pm, const char **tmp, enum group g,
                  size_t field, struct pg_buf *b)
{
  size_t k = 0;
  for (size_t i = 0; i < pm->n_eff; i++) {
    const struct pg_marks_effect *e = &pm->eff[i];
    if (group_of(e) != g)
      continue;
    switch (field) {
      case 0:
        tmp[k++] = e->id;
        break;
      case 1:
        tmp[k++] = e->state;
        break;
      case 2:
        tmp[k++] = e->error;
        break;
      default:
        tmp[k++] = e->tries_text;
        break;
    }
  }
  return k ? pg_buf_array(b, &tmp[0], sizeof(*tmp), k)
           : pg_buf_array(b, NULL, 0, 0);
}

int pg_marks_build(struct pg_marks *pm, const struct registry_mark *marks,
                   size_t n)
{
  struct keyed *keys = NULL;
  const char **tmp = NULL;
  int rc = SO_ERR_NOMEM;
  size_t cap = n ? n : 1;
  keys = malloc(cap * sizeof(*keys));
  tmp = malloc(cap * sizeof(*tmp));
  pm->eff = calloc(cap, sizeof(*pm->eff));
  pm->of_mark = malloc(cap * sizeof(*pm->of_mark));
  pm->written = malloc(cap * sizeof(*pm->written));
  if (!keys || !tmp || !pm->eff || !pm->of_mark || !pm->written)
    goto fail;
  for (size_t i = 0; i < n; i++)
    keys[i] = (struct keyed){marks[i].recipient_id, i};
  qsort(keys, n, sizeof(*keys), keyed_cmp);
  pm->n_eff = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || strcmp(keys[i].id, keys[i - 1].id) != 0)
      pm->eff[pm->n_eff++] =
          (struct pg_marks_effect){.id = keys[i].id, .state = "INFLIGHT"};
    struct pg_marks_effect *e = &pm->eff[pm->n_eff - 1];
    apply(e, &marks[keys[i].pos]);
    pm->of_mark[keys[i].pos] = pm->n_eff - 1;
  }
  for (size_t i = 0; i < pm->n_eff; i++)
    snprintf(pm->eff[i].tries_text, sizeof(pm->eff[i].tries_text), "%d",
             pm->eff[i].tries);
  struct pg_buf *p = pm->params;
  rc = column(pm, tmp, G_SENT, 0, &p[0]);
  if (!rc)
    rc = column(pm, tmp, G_INFLIGHT, 0, &p[1]);
  for (size_t f = 0; !rc && f < 3; f++)
    rc = column(pm, tmp, G_FINAL, f, &p[2 + f]);
  for (size_t f = 0; !rc && f < 4; f++)
    rc = column(pm, tmp, G_TRIES, f, &p[5 + f]);
  if (rc)
    goto fail;
  free(keys);
  free(tmp);
  return SO_OK;
fail:
  free(keys);
  free(tmp);
  pg_marks_free(pm);
  return rc;
}

static int eff_cmp(const void *key, const void *elem)
{
  const struct pg_marks_effect *e = elem;
  return strcmp(key, e->id);
}

void pg_marks_pending(const struct pg_marks *pm, const PGresult *res,
                      bool *pending, size_t n)
{
  memset(pm->written, 0, pm->n_eff * sizeof(*pm->written));
  for (int row = 0; row < PQntuples(res); row++) {
    if (PQgetisnull(res, row, 0))
      continue;
    const struct pg_marks_effect *e = bsearch(
        PQgetvalue(res, row, 0), pm->eff, pm->n_eff, sizeof(*pm->eff), eff_cmp);
    if (e)
      pm->written[e - pm->eff] = true;
  }
  for (size_t i = 0; i < n; i++)
    pending[i] = pm->written[pm->of_mark[i]];
}

bool pg_marks_fresh(const struct pg_marks *pm)
{
  size_t seen = 0;
  for (size_t i = 0; i < pm->n_eff; i++) {
    if (group_of(&pm->eff[i]) != G_INFLIGHT)
      continue;
    if (!pm->written[i])
      return false;
    seen++;
  }
  return seen > 0;
}

void pg_marks_free(struct pg_marks *pm)
{
  for (size_t i = 0; i < PG_MARKS_NPARAMS; i++)
    pg_buf_free(&pm->params[i]);
  free(pm->eff);
  free(pm->of_mark);
  free(pm->written);
  memset(pm, 0, sizeof(*pm));
}

/* template.c - the JSON body template of a provider request.
 *
 * Recipients' vars and the campaign's content are read without json-c
 * where template_fast.c is sure to give the same values; otherwise, and
 * on any failure, through json-c, so output and errors are its own. */
#include "template.h"

#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_fast.h"

enum seg_kind {
  SEG_TEXT,
  SEG_CAMPAIGN_ID,
  SEG_RECIPIENT_ID,
  SEG_ADDRESS,
  SEG_VAR,     /* path after "vars." */
  SEG_CONTENT, /* path after "content." */
  SEG_SECTION_BEGIN,
  SEG_SECTION_END,
};

/* A piece of the template: literal text or a placeholder. off/len point
 * into template->text (the literal, or the placeholder's path). */
struct seg {
  enum seg_kind kind;
  size_t off;
  size_t len;
  size_t var; /* SEG_VAR: index of its first name in var_names */
};

struct template
{
  char *text; /* our copy of the source */
  struct seg *segs;
  size_t n_segs;
  size_t section_begin; /* index of SEG_SECTION_BEGIN, or n_segs */
  size_t section_end;   /* index of SEG_SECTION_END, or n_segs */
  char *campaign_id;    /* NULL until bound */
  /* What template_bind() compiles for rendering: runs of segments that
   * are the same for every recipient (text, campaign id, content) become
   * one SEG_TEXT whose off/len point into `lit`, rendered once per
   * campaign instead of once per recipient; the rest is copied from segs.
   * A run never crosses a section marker. */
  struct seg *csegs;
  size_t n_csegs;
  size_t c_section_begin; /* index in csegs, or n_csegs */
  size_t c_section_end;   /* index in csegs, or n_csegs */
  char *lit;              /* the pre-rendered runs */
  bool lit_too_large;     /* the runs alone exceed TEMPLATE_MAX_BODY */
  /* The distinct first names of the {{vars.*}} paths, looked up in one
   * walk over each recipient's vars (template_fast_object());
   * var_fast is false when there are too many or one is too long. */
  char *var_names[TEMPLATE_FAST_NAMES];
  size_t n_var_names;
  bool var_fast;
};

/* A growing output buffer with a hard cap. */
struct buf {
  char *p;
  size_t len;
  size_t cap;
};

static int buf_put(struct buf *b, const char *data, size_t n)
{
  if (n > TEMPLATE_MAX_BODY - b->len)
    return SO_ERR_TOO_LARGE;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
      return SO_ERR_NOMEM;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
  return SO_OK;
}

/* needs_escape: whether JSON forbids byte c as is inside a string. */
static bool needs_escape(unsigned char c)
{
  return c < 0x20 || c == '"' || c == '\\';
}

/* buf_put_escaped: append `s` as JSON string content (no quotes). Plain
 * runs are copied in one go; only the bytes JSON forbids are escaped. */
static int buf_put_escaped(struct buf *b, const char *s, size_t n)
{
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!needs_escape(c))
      continue; /* the common case */
    char esc[8];
    size_t esc_len = 2;
    esc[0] = '\\';
    switch (c) {
      case '"':
        esc[1] = '"';
        break;
      case '\\':
        esc[1] = '\\';
        break;
      case '\n':
        esc[1] = 'n';
        break;
      case '\r':
        esc[1] = 'r';
        break;
      case '\t':
        esc[1] = 't';
        break;
      case '\b':
        esc[1] = 'b';
        break;
      case '\f':
        esc[1] = 'f';
        break;
      default:
        snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)c);
        esc_len = 6;
        break;
    }
    int rc = buf_put(b, s + run, i - run);
    if (rc == SO_OK)
      rc = buf_put(b, esc, esc_len);
    if (rc != SO_OK)
      return rc;
    run = i + 1;
  }
  return buf_put(b, s + run, n - run);
}

static int add_seg(struct template *t, enum seg_kind kind, size_t off,
                   size_t len, size_t *cap)
{
  if (t->n_segs == *cap) {
    size_t ncap = *cap ? *cap * 2 : 16;
    struct seg *segs = realloc(t->segs, ncap * sizeof(*segs));
    if (!segs)
      return SO_ERR_NOMEM;
    t->segs = segs;
    *cap = ncap;
  }
  t->segs[t->n_segs++] = (struct seg){kind, off, len, 0};
  return SO_OK;
}

static bool name_is(const char *name, size_t len, const char *want)
{
  return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* path_valid: "a", "a.b" - no empty component. */
static bool path_valid(const char *p, size_t len)
{
  if (len == 0 || p[0] == '.' || p[len - 1] == '.')
    return false;
  for (size_t i = 1; i < len; i++)
    if (p[i] == '.' && p[i - 1] == '.')
      return false;
  return true;
}

/* classify: map a trimmed placeholder name to its segment. */
static int classify(const char *name, size_t len, size_t name_off,
                    enum seg_kind *kind, size_t *off, size_t *plen)
{
  static const struct {
    const char *prefix;
    enum seg_kind kind;
  } paths[] = {{"vars.", SEG_VAR}, {"content.", SEG_CONTENT}};
  static const struct {
    const char *name;
    enum seg_kind kind;
  } fixed[] = {{"campaign_id", SEG_CAMPAIGN_ID},
               {"recipient_id", SEG_RECIPIENT_ID},
               {"address", SEG_ADDRESS},
               {"#recipients", SEG_SECTION_BEGIN},
               {"/recipients", SEG_SECTION_END}};
  *off = 0;
  *plen = 0;
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    if (name_is(name, len, fixed[i].name)) {
      *kind = fixed[i].kind;
      return SO_OK;
    }
  }
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    size_t pl = strlen(paths[i].prefix);
    if (len >= pl && memcmp(name, paths[i].prefix, pl) == 0 &&
        path_valid(name + pl, len - pl)) {
      *kind = paths[i].kind;
      *off = name_off + pl;
      *plen = len - pl;
      return SO_OK;
    }
  }
  return SO_ERR_INVALID;
}

static bool per_recipient(enum seg_kind k)
{
  return k == SEG_RECIPIENT_ID || k == SEG_ADDRESS || k == SEG_VAR;
}

/* check_sections: at most one section, closed, and no per-recipient
 * placeholder outside it when there is one. */
static int check_sections(struct template *t, char *err, size_t errlen)
{
  t->section_begin = t->section_end = t->n_segs;
  for (size_t i = 0; i < t->n_segs; i++) {
    enum seg_kind k = t->segs[i].kind;
    if (k == SEG_SECTION_BEGIN) {
      if (t->section_begin != t->n_segs) {
        snprintf(err, errlen, "only one {{#recipients}} section allowed");
        return SO_ERR_INVALID;
      }
      t->section_begin = i;
    } else if (k == SEG_SECTION_END) {
      if (t->section_begin == t->n_segs || t->section_end != t->n_segs) {
        snprintf(err, errlen, "{{/recipients}} without {{#recipients}}");
        return SO_ERR_INVALID;
      }
      t->section_end = i;
    }
  }
  if (t->section_begin != t->n_segs && t->section_end == t->n_segs) {
    snprintf(err, errlen, "{{#recipients}} section is not closed");
    return SO_ERR_INVALID;
  }
  if (t->section_begin == t->n_segs)
    return SO_OK;
  for (size_t i = 0; i < t->n_segs; i++) {
    bool inside = i > t->section_begin && i < t->section_end;
    if (!inside && per_recipient(t->segs[i].kind)) {
      snprintf(err, errlen,
               "per-recipient placeholder outside {{#recipients}}: "
               "{{address}}, {{recipient_id}} and {{vars.*}} belong inside "
               "the section");
      return SO_ERR_INVALID;
    }
  }
  return SO_OK;
}

/* collect_var_names: note each {{vars.*}} path's first name for the fast
 * path, which looks them all up in one walk over a recipient's vars. */
static int collect_var_names(struct template *t)
{
  t->var_fast = true;
  for (size_t i = 0; i < t->n_segs && t->var_fast; i++) {
    struct seg *sg = &t->segs[i];
    if (sg->kind != SEG_VAR)
      continue;
    const char *name = t->text + sg->off;
    const char *dot = memchr(name, '.', sg->len);
    size_t len = dot ? (size_t)(dot - name) : sg->len;
    size_t j = 0;
    while (j < t->n_var_names && !name_is(name, len, t->var_names[j]))
      j++;
    if (len >= TEMPLATE_KEY_MAX ||
        (j == t->n_var_names && j == TEMPLATE_FAST_NAMES)) {
      t->var_fast = false; /* json-c's lookup decides */
      break;
    }
    if (j == t->n_var_names) {
      t->var_names[j] = strndup(name, len);
      if (!t->var_names[j])
        return SO_ERR_NOMEM;
      t->n_var_names++;
    }
    sg->var = j;
  }
  return SO_OK;
}

int template_parse(const char *text, struct template **out, char *err,
                   size_t errlen)
{
  int rc = SO_ERR_NOMEM;
  size_t cap = 0;
  *out = NULL;
  if (!text) {
    snprintf(err, errlen, "no body template");
    return SO_ERR_INVALID;
  }
  struct template *t = calloc(1, sizeof(*t));
  if (!t)
    return SO_ERR_NOMEM;
  t->text = strdup(text);
  if (!t->text)
    goto fail;

  size_t p = 0;
  while (t->text[p]) {
    const char *open = strstr(t->text + p, "{{");
    size_t o = open ? (size_t)(open - t->text) : strlen(t->text);
    if (o > p && (rc = add_seg(t, SEG_TEXT, p, o - p, &cap)) != SO_OK)
      goto fail;
    if (!open)
      break;
    const char *close = strstr(open + 2, "}}");
    if (!close) {
      snprintf(err, errlen, "offset %zu: unterminated \"{{\"", o);
      rc = SO_ERR_INVALID;
      goto fail;
    }
    size_t nb = o + 2, ne = (size_t)(close - t->text);
    while (nb < ne && t->text[nb] == ' ')
      nb++;
    while (ne > nb && t->text[ne - 1] == ' ')
      ne--;
    enum seg_kind kind;
    size_t off, len;
    if (classify(t->text + nb, ne - nb, nb, &kind, &off, &len) != SO_OK) {
      snprintf(err, errlen, "offset %zu: unknown placeholder {{%.*s}}", o,
               (int)(ne - nb < 64 ? ne - nb : 64), t->text + nb);
      rc = SO_ERR_INVALID;
      goto fail;
    }
    if ((rc = add_seg(t, kind, off, len, &cap)) != SO_OK)
      goto fail;
    p = (size_t)(close - t->text) + 2;
  }
  if ((rc = check_sections(t, err, errlen)) != SO_OK)
    goto fail;
  if ((rc = collect_var_names(t)) != SO_OK)
    goto fail;
  *out = t;
  return SO_OK;

fail:
  if (rc == SO_ERR_NOMEM)
    snprintf(err, errlen, "out of memory");
  template_free(t);
  return rc;
}

void template_free(struct template *t)
{
  if (!t)
    return;
  free(t->campaign_id);
  free(t->csegs);
  free(t->lit);
  free(t->segs);
  free(t->text);
  for (size_t i = 0; i < t->n_var_names; i++)
    free(t->var_names[i]);
  free(t);
}

bool template_is_batch(const struct template *t)
{
  return t->section_begin != t->n_segs;
}

/* lookup: follow a dotted path from `root`. Returns true when found;
 * *out is NULL for a JSON null. */
static bool lookup(json_object *root, const char *path, size_t len,
                   json_object **out)
{
  json_object *cur = root;
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && path[j] != '.')
      j++;
    char key[256];
    if (j - i >= sizeof(key) || !json_object_is_type(cur, json_type_object))
      return false;
    memcpy(key, path + i, j - i);
    key[j - i] = '\0';
    if (!json_object_object_get_ex(cur, key, &cur))
      return false;
    i = j + 1;
  }
  *out = cur;
  return true;
}

static int put_value(struct buf *b, json_object *v)
{
  if (!v)
    return SO_OK; /* JSON null renders as nothing */
  if (json_object_is_type(v, json_type_string))
    return buf_put_escaped(b, json_object_get_string(v),
                           (size_t)json_object_get_string_len(v));
  const char *s = json_object_to_json_string_ext(
      v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  return buf_put_escaped(b, s, strlen(s));
}

/* One recipient while rendering: its data and its vars, either parsed by
 * json-c or (fast path) the values of var_names[] in its vars_json. */
struct ctx {
  const struct template_recipient *r;
  json_object *vars;
  const struct msg__value *vals;
};

/* put_fast: the value *v as put_value() renders json-c's value of it. */
static int put_fast(const struct msg__value *v, struct buf *b)
{
  if (v->p[0] == '"' && !memchr(v->p, '\\', v->len)) /* checked: no escapes */
    return buf_put(b, v->p + 1, v->len - 2);
  char small[TEMPLATE_KEY_MAX];
  char *tmp = v->len <= sizeof(small) ? small : malloc(v->len);
  if (!tmp)
    return SO_ERR_NOMEM;
  int rc = buf_put_escaped(b, tmp, template_fast_text(v, tmp));
  if (tmp != small)
    free(tmp);
  return rc;
}

/* put_var_fast: {{vars.PATH}} from the values template_fast_object()
 * found. SO_ERR_INVALID when absent or not sure (the caller renders the
 * recipient again through json-c). */
static int put_var_fast(const struct template *t, const struct seg *sg,
                        const struct msg__value *vals, struct buf *b)
{
  const char *path = t->text + sg->off;
  const char *dot = memchr(path, '.', sg->len);
  struct msg__value v = vals[sg->var];
  if (!v.p || (dot && !template_fast_find(&v, dot + 1,
                                          sg->len - (size_t)(dot + 1 - path))))
    return SO_ERR_INVALID;
  return put_fast(&v, b);
}

/* A campaign's content while binding: json-c's tree, or (fast path) its
 * text, checked by fast_content(). */
struct content {
  json_object *obj;
  struct msg__value text;
};

/* fast_content: whether content_json can be read without json-c: every
 * {{content.*}} found with certainty. Else json-c parses it (and words
 * any error). */
static bool fast_content(const struct template *t, const char *content_json,
                         struct msg__value *out)
{
  if (!template_fast_object(content_json, strlen(content_json), NULL, 0, out,
                            NULL))
    return false;
  for (size_t i = 0; i < t->n_segs; i++) {
    struct msg__value v = *out;
    const struct seg *sg = &t->segs[i];
    if (sg->kind != SEG_CONTENT)
      continue;
    if (!template_fast_find(&v, t->text + sg->off, sg->len))
      return false;
  }
  return true;
}

static int parse_vars(const struct template_recipient *r, json_object **out,
                      char *err, size_t errlen)
{
  *out = NULL;
  if (!r->id || !r->address) {
    snprintf(err, errlen, "recipient without id or address");
    return SO_ERR_INVALID;
  }
  if (!r->vars_json)
    return SO_OK;
  enum json_tokener_error jerr;
  json_object *v = json_tokener_parse_verbose(r->vars_json, &jerr);
  if (!v || !json_object_is_type(v, json_type_object)) {
    json_object_put(v);
    snprintf(err, errlen, "recipient %s: vars is not a JSON object", r->id);
    return SO_ERR_INVALID;
  }
  *out = v;
  return SO_OK;
}

/* const_seg: append a segment that is the same for every recipient
 * (text, campaign id, content.NAME - checked present by the caller). */
static int const_seg(const struct template *t, const struct seg *sg,
                     const char *campaign_id, const struct content *content,
                     struct buf *b)
{
  json_object *v = NULL;
  switch (sg->kind) {
    case SEG_TEXT:
      return buf_put(b, t->text + sg->off, sg->len);
    case SEG_CAMPAIGN_ID:
      return buf_put_escaped(b, campaign_id, strlen(campaign_id));
    case SEG_CONTENT:
      if (!content->obj) {
        struct msg__value fv = content->text;
        if (!template_fast_find(&fv, t->text + sg->off, sg->len))
          return SO_ERR_INVALID; /* fast_content() found it: cannot be */
        return put_fast(&fv, b);
      }
      if (!lookup(content->obj, t->text + sg->off, sg->len, &v))
        return SO_ERR_INVALID;
      return put_value(b, v);
    default:
      return SO_ERR_INVALID;
  }
}

static bool is_const(enum seg_kind k)
{
  return k == SEG_TEXT || k == SEG_CAMPAIGN_ID || k == SEG_CONTENT;
}

/* What compile() makes; moved into the template once bind succeeds. */
struct compiled {
  struct seg *segs;
  size_t n;
  size_t section_begin, section_end;
  char *lit;
  bool too_large;
};

/* compile: fold each run of per-campaign segments into one literal. */
static int compile(const struct template *t, const char *campaign_id,
                   const struct content *content, struct compiled *c)
{
  struct buf lit = {NULL, 0, 0};
  int rc = SO_ERR_NOMEM;
  memset(c, 0, sizeof(*c));
  c->segs = malloc((t->n_segs ? t->n_segs : 1) * sizeof(*c->segs));
  if (!c->segs)
    goto fail;
  c->section_begin = c->section_end = SIZE_MAX;
  for (size_t i = 0; i < t->n_segs;) {
    if (!is_const(t->segs[i].kind)) {
      if (t->segs[i].kind == SEG_SECTION_BEGIN)
        c->section_begin = c->n;
      else if (t->segs[i].kind == SEG_SECTION_END)
        c->section_end = c->n;
      c->segs[c->n++] = t->segs[i++];
      continue;
    }
    size_t start = lit.len;
    for (; i < t->n_segs && is_const(t->segs[i].kind); i++) {
      rc = c->too_large ? SO_OK
                        : const_seg(t, &t->segs[i], campaign_id, content, &lit);
      /* Every body holds every run at least once: all are too large. */
      if (rc == SO_ERR_TOO_LARGE)
        c->too_large = true;
      else if (rc != SO_OK)
        goto fail;
    }
    c->segs[c->n++] = (struct seg){SEG_TEXT, start, lit.len - start, 0};
  }
  if (c->section_begin == SIZE_MAX)
    c->section_begin = c->n;
  if (c->section_end == SIZE_MAX)
    c->section_end = c->n;
  if ((rc = buf_put(&lit, "", 0)) != SO_OK) /* never NULL */
    goto fail;
  c->lit = lit.p;
  return SO_OK;

fail:
  free(lit.p);
  free(c->segs);
  c->segs = NULL;
  return rc;
}

/* render_seg: one compiled segment for one recipient. */
static int render_seg(const struct template *t, const struct seg *sg,
                      const struct ctx *c, struct buf *b, char *err,
                      size_t errlen)
{
  json_object *v = NULL;
  switch (sg->kind) {
    case SEG_TEXT:
      return buf_put(b, t->lit + sg->off, sg->len);
    case SEG_RECIPIENT_ID:
      return buf_put_escaped(b, c->r->id, strlen(c->r->id));
    case SEG_ADDRESS:
      return buf_put_escaped(b, c->r->address, strlen(c->r->address));
    case SEG_VAR:
      if (c->vals)
        return put_var_fast(t, sg, c->vals, b);
      if (!c->vars || !lookup(c->vars, t->text + sg->off, sg->len, &v)) {
        snprintf(err, errlen, "recipient %s: vars.%.*s missing", c->r->id,
                 (int)sg->len, t->text + sg->off);
        return SO_ERR_INVALID;
      }
      return put_value(b, v);
    case SEG_CAMPAIGN_ID: /* folded into SEG_TEXT by compile() */
    case SEG_CONTENT:
    case SEG_SECTION_BEGIN:
    case SEG_SECTION_END:
      break;
  }
  return SO_OK;
}

/* parse_content: content_json (NULL for {}) through json-c, with every
 * {{content.*}} present. */
static int parse_content(const struct template *t, const char *content_json,
                         json_object **out, char *err, size_t errlen)
{
  json_object *content = content_json ? json_tokener_parse(content_json)
                                      : json_object_new_object();
  *out = NULL;
  if (!content || !json_object_is_type(content, json_type_object)) {
    snprintf(err, errlen, "content is not a JSON object");
    json_object_put(content);
    return SO_ERR_INVALID;
  }
  for (size_t i = 0; i < t->n_segs; i++) {
    json_object *v;
    const struct seg *sg = &t->segs[i];
    if (sg->kind == SEG_CONTENT &&
        !lookup(content, t->text + sg->off, sg->len, &v)) {
      snprintf(err, errlen, "content.%.*s missing", (int)sg->len,
               t->text + sg->off);
      json_object_put(content);
      return SO_ERR_INVALID;
    }
  }
  *out = content;
  return SO_OK;
}

int template_bind(struct template *t, const char *campaign_id,
                  const char *content_json, char *err, size_t errlen)
{
  if (!campaign_id) {
    snprintf(err, errlen, "no campaign id");
    return SO_ERR_INVALID;
  }
  char *id = strdup(campaign_id);
  if (!id) {
    snprintf(err, errlen, "out of memory");
    return SO_ERR_NOMEM;
  }
  struct content content = {NULL, {NULL, 0}};
  if (!content_json || !fast_content(t, content_json, &content.text)) {
    int rc = parse_content(t, content_json, &content.obj, err, errlen);
    if (rc != SO_OK) {
      free(id);
      return rc;
    }
  }
  struct compiled c;
  int rc = compile(t, id, &content, &c);
  json_object_put(content.obj); /* compile() rendered all it needs */
  if (rc != SO_OK) {
    snprintf(err, errlen, "out of memory");
    free(id);
    return SO_ERR_NOMEM;
  }
  free(t->campaign_id);
  free(t->csegs);
  free(t->lit);
  t->campaign_id = id;
  t->csegs = c.segs;
  t->n_csegs = c.n;
  t->c_section_begin = c.section_begin;
  t->c_section_end = c.section_end;
  t->lit = c.lit;
  t->lit_too_large = c.too_large;
  return SO_OK;
}

/* render_range: compiled segments [from, to) for one recipient context. */
static int render_range(const struct template *t, size_t from, size_t to,
                        const struct ctx *c, struct buf *b, char *err,
                        size_t errlen)
{
  for (size_t i = from; i < to; i++) {
    int rc = render_seg(t, &t->csegs[i], c, b, err, errlen);
    if (rc != SO_OK)
      return rc;
  }
  return SO_OK;
}

/* render_recipient: compiled segments [from, to) for recipient r, after
 * a "," when `comma`. The fast path first; if it is unsure or fails for
 * any reason, its output is cut off and the json-c path renders the
 * recipient, so results and errors are exactly that path's. */
static int render_recipient(const struct template *t, size_t from, size_t to,
                            const struct template_recipient *r, bool comma,
                            struct buf *b, char *err, size_t errlen)
{
  size_t mark = b->len;
  struct msg__value root, vals[TEMPLATE_FAST_NAMES];
  if (t->var_fast && r->id && r->address && r->vars_json &&
      template_fast_object(r->vars_json, strlen(r->vars_json),
                           (const char *const *)t->var_names, t->n_var_names,
                           &root, vals)) {
    struct ctx c = {r, NULL, vals};
    int rc = comma ? buf_put(b, ",", 1) : SO_OK;
    if (rc == SO_OK)
      rc = render_range(t, from, to, &c, b, err, errlen);
    if (rc == SO_OK)
      return SO_OK;
    b->len = mark;
    if (b->p)
      b->p[mark] = '\0';
  }
  struct ctx c = {r, NULL, NULL};
  int rc = parse_vars(r, &c.vars, err, errlen);
  if (rc == SO_OK && comma)
    rc = buf_put(b, ",", 1);
  if (rc == SO_OK)
    rc = render_range(t, from, to, &c, b, err, errlen);
  json_object_put(c.vars);
  return rc;
}

static int render_section(const struct template *t,
                          const struct template_recipient *r, size_t n,
                          struct buf *b, size_t *bad, char *err, size_t errlen)
{
  for (size_t j = 0; j < n; j++) {
    int rc = render_recipient(t, t->c_section_begin + 1, t->c_section_end,
                              &r[j], j > 0, b, err, errlen);
    if (rc != SO_OK) {
      if (rc == SO_ERR_INVALID)
        *bad = j;
      return rc;
    }
  }
  return SO_OK;
}

int template_render_into(const struct template *t,
                         const struct template_recipient *r, size_t n,
                         char **buf, size_t *cap, size_t *outlen, size_t *bad,
                         char *err, size_t errlen)
{
  struct buf b = {*buf, 0, *cap};
  struct ctx c = {n > 0 ? &r[0] : NULL, NULL, NULL};
  int rc = SO_ERR_INVALID;
  *outlen = 0;
  *bad = n;
  if (!t->campaign_id) {
    snprintf(err, errlen, "template not bound to a campaign");
    return SO_ERR_INVALID;
  }
  if (n == 0 || (!template_is_batch(t) && n != 1)) {
    snprintf(err, errlen, "cannot render %zu recipients into %s", n,
             template_is_batch(t) ? "a batch" : "a single-recipient body");
    return SO_ERR_INVALID;
  }
  if (t->lit_too_large) {
    rc = SO_ERR_TOO_LARGE;
  } else if (template_is_batch(t)) {
    rc = render_range(t, 0, t->c_section_begin, &c, &b, err, errlen);
    if (rc == SO_OK)
      rc = render_section(t, r, n, &b, bad, err, errlen);
    if (rc == SO_OK)
      rc = render_range(t, t->c_section_end + 1, t->n_csegs, &c, &b, err,
                        errlen);
  } else {
    rc = render_recipient(t, 0, t->n_csegs, &r[0], false, &b, err, errlen);
    if (rc == SO_ERR_INVALID)
      *bad = 0;
  }
  if (rc == SO_OK)
    rc = buf_put(&b, "", 0); /* NUL-terminated, also when empty */
  *buf = b.p;
  *cap = b.cap;
  if (rc != SO_OK) {
    if (rc == SO_ERR_TOO_LARGE)
      snprintf(err, errlen, "rendered body over %u bytes", TEMPLATE_MAX_BODY);
    else if (rc == SO_ERR_NOMEM)
      snprintf(err, errlen, "out of memory");
    return rc;
  }
  *outlen = b.len;
  return SO_OK;
}

int template_render(const struct template *t,
                    const struct template_recipient *r, size_t n, char **out,
                    size_t *outlen, size_t *bad, char *err, size_t errlen)
{
  char *p = NULL;
  size_t cap = 0;
  *out = NULL;
  int rc = template_render_into(t, r, n, &p, &cap, outlen, bad, err, errlen);
  if (rc != SO_OK) {
    free(p);
    return rc;
  }
  *out = p;
  return SO_OK;
}

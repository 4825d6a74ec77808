/* config_print.c - the effective configuration, in libconfig syntax.
 *
 * The output loads again with config_load() and gives the same
 * configuration, with one exception by design: secrets are never printed.
 * They appear as comments ("<redacted>" when set, "<unset>" when not), so
 * an operator sees which ones are set without the output ever holding one.
 */
#include <stdio.h>
#include <string.h>

#include "config_internal.h"

static void indent(FILE *out, int depth)
{
  for (int i = 0; i < depth; i++)
    fputs("  ", out);
}

/* print_string: a libconfig string literal. */
static void print_string(FILE *out, const char *s)
{
  fputc('"', out);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
      case '"':
        fputs("\\\"", out);
        break;
      case '\\':
        fputs("\\\\", out);
        break;
      case '\n':
        fputs("\\n", out);
        break;
      case '\r':
        fputs("\\r", out);
        break;
      case '\t':
        fputs("\\t", out);
        break;
      case '\f':
        fputs("\\f", out);
        break;
      default:
        if (c < 0x20)
          fprintf(out, "\\x%02x", c);
        else
          fputc(c, out);
    }
  }
  fputc('"', out);
}

static void print_section(FILE *out, const struct section_desc *sec,
                          const void *base, int depth);

static void print_key(FILE *out, const struct key_desc *key, const void *base,
                      int depth)
{
  const void *field = config_cfield(base, key);

  indent(out, depth);
  switch (key->type) {
    case KEY_BOOL:
      fprintf(out, "%s = %s;\n", key->name,
              *(const bool *)field ? "true" : "false");
      break;
    case KEY_INT:
      fprintf(out, "%s = %d;\n", key->name, *(const int *)field);
      break;
    case KEY_SIZE:
      fprintf(out, "%s = %zu;\n", key->name, *(const size_t *)field);
      break;
    case KEY_STRING: {
      const char *value = *(char *const *)field;
      char def[512];
      if (key->default_cb && value) {
        key->default_cb(def, sizeof(def));
        if (strcmp(value, def) == 0) {
          fprintf(out, "%s = \"\"; # default, now ", key->name);
          print_string(out, def);
          fputs("\n", out);
          break;
        }
      }
      fprintf(out, "%s = ", key->name);
      print_string(out, value);
      fputs(";\n", out);
      break;
    }
    case KEY_ENUM:
      fprintf(out, "%s = \"%s\";\n", key->name,
              key->names[*(const int *)field]);
      break;
    case KEY_SECRET:
      fprintf(out, "# %s = \"%s\"; (secret: %s_file or the environment)\n",
              key->name, *(char *const *)field ? "<redacted>" : "<unset>",
              key->name);
      break;
    case KEY_STRLIST: {
      char *const *list = field;
      size_t n = *(const size_t *)((const char *)base + key->count_offset);
      fprintf(out, "%s = [", key->name);
      for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : " ", out);
        print_string(out, list[i]);
      }
      fputs(" ];\n", out);
      break;
    }
    case KEY_INTLIST: {
      const int *list = field;
      size_t n = *(const size_t *)((const char *)base + key->count_offset);
      fprintf(out, "%s = [", key->name);
      for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%d", i ? ", " : " ", list[i]);
      fputs(" ];\n", out);
      break;
    }
    case KEY_GROUP:
      fprintf(out, "%s = {\n", key->name);
      print_section(out, key->sub, field, depth + 1);
      indent(out, depth);
      fputs("};\n", out);
      break;
  }
}

static void print_section(FILE *out, const struct section_desc *sec,
                          const void *base, int depth)
{
  for (size_t i = 0; i < sec->n_keys; i++)
    print_key(out, &sec->keys[i], base, depth);
}

void config_print(const struct config *cfg, FILE *out)
{
  fprintf(out, "# sendonce effective configuration (%s)\n",
          cfg->path ? cfg->path : "built-in defaults");
  fputs("# secrets are never printed; they show as <redacted> or <unset>\n",
        out);
  for (size_t i = 0; i < config_n_sections; i++) {
    const struct section_desc *sec = config_sections[i];
    fprintf(out, "\n%s = {\n", sec->name);
    print_section(out, sec, (const char *)cfg + sec->offset, 1);
    fputs("};\n", out);
  }
  fputs("\nproviders = {\n", out);
  for (size_t i = 0; i < cfg->n_providers; i++) {
    const struct config_provider *p = &cfg->providers[i];
    fprintf(out, "  %s = {\n", p->channel);
    print_section(out, &config_provider_section, p, 2);
    fputs("  };\n", out);
  }
  fputs("};\n", out);
}

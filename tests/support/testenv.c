/* testenv.c - where integration tests find the real servers. */
#include "testenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TESTENV_DEFAULT_FILE "/var/lib/sendonce-dev/test.env"

/* Load KEY=VALUE lines (optionally prefixed by "export ") into the
 * environment without overriding what is already set. */
static void testenv_load_file(void)
{
  static int loaded;
  if (loaded)
    return;
  loaded = 1;
  const char *path = getenv("SENDONCE_TEST_ENV");
  if (!path)
    path = TESTENV_DEFAULT_FILE;
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  char line[2048];
  while (fgets(line, sizeof(line), f)) {
    char *p = line;
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(p, "export ", 7) == 0)
      p += 7;
    char *eq = strchr(p, '=');
    if (!eq || *p == '#')
      continue;
    *eq = '\0';
    char *value = eq + 1;
    size_t vlen = strlen(value);
    if (vlen >= 2 && (value[0] == '\'' || value[0] == '"') &&
        value[vlen - 1] == value[0]) {
      value[vlen - 1] = '\0';
      value++;
    }
    setenv(p, value, 0);
  }
  fclose(f);
}

const char *testenv_get(const char *name)
{
  const char *v = getenv(name);
  if (v && *v)
    return v;
  testenv_load_file();
  v = getenv(name);
  if (!v || !*v) {
    fprintf(stderr,
            "testenv: %s is not set and not in the env file; run "
            "scripts/setup first (or set SENDONCE_TEST_ENV)\n",
            name);
    abort();
  }
  return v;
}

char *testenv_unique(const char *base)
{
  static unsigned counter;
  size_t len = strlen(base) + 48;
  char *out = malloc(len);
  if (!out)
    abort();
  snprintf(out, len, "%s-%ld-%u", base, (long)getpid(), counter++);
  return out;
}

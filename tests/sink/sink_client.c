/* sink_client.c - the sink as a child process, driven over libcurl. */
#include "sink_client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define MAX_ARGS 64
#define RESPONSE_CAP (4u << 20)

struct sink_client {
  pid_t pid;
  int port;
  char url[64];
};

struct buf {
  char *data;
  size_t len;
};

static const char *sink_binary(void)
{
  const char *env = getenv("SENDONCE_SINK_BIN");
  return env != NULL && env[0] != '\0' ? env : SENDONCE_SINK_BIN;
}

/* Read the "listening port=N" line within 10 s. */
static int read_port(int fd, int *port)
{
  char line[128];
  size_t len = 0;
  while (len < sizeof(line) - 1) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0)
      return -1;
    ssize_t n = read(fd, line + len, 1);
    if (n <= 0)
      return -1;
    if (line[len] == '\n')
      break;
    len++;
  }
  line[len] = '\0';
  char *end;
  const char *prefix = "listening port=";
  if (strncmp(line, prefix, strlen(prefix)) != 0)
    return -1;
  long v = strtol(line + strlen(prefix), &end, 10);
  if (*end != '\0' || v <= 0 || v > 65535)
    return -1;
  *port = (int)v;
  return 0;
}

struct sink_client *sink_client_start(const char *const *args, char *err,
                                      size_t errlen)
{
  const char *argv[MAX_ARGS + 4];
  size_t argc = 0;
  argv[argc++] = sink_binary();
  argv[argc++] = "--port";
  argv[argc++] = "0";
  for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
    if (argc >= MAX_ARGS) {
      snprintf(err, errlen, "sink_client: too many arguments");
      return NULL;
    }
    argv[argc++] = args[i];
  }
  argv[argc] = NULL;

  int fds[2];
  if (pipe(fds) != 0) {
    snprintf(err, errlen, "sink_client: pipe: %s", strerror(errno));
    return NULL;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "sink_client: fork: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return NULL;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(127);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execv(argv[0], (char *const *)(uintptr_t)argv);
    fprintf(stderr, "sink_client: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  struct sink_client *s = calloc(1, sizeof(*s));
  int port = 0;
  int rc = read_port(fds[0], &port);
  close(fds[0]);
  if (s == NULL || rc != 0) {
    snprintf(err, errlen, "sink_client: %s did not report its port", argv[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    free(s);
    return NULL;
  }
  s->pid = pid;
  s->port = port;
  snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", port);
  return s;
}

int sink_client_stop(struct sink_client *s)
{
  if (s == NULL)
    return 0;
  int status = 0;
  int result = -1;
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 1000; i++) {
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    if (r == s->pid) {
      result = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      break;
    }
    struct timespec nap = {0, 10 * 1000000L};
    nanosleep(&nap, NULL);
  }
  if (result < 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
  }
  free(s);
  return result;
}

int sink_client_pid(const struct sink_client *s)
{
  return (int)s->pid;
}

int sink_client_port(const struct sink_client *s)
{
  return s->port;
}

const char *sink_client_url(const struct sink_client *s)
{
  return s->url;
}

static size_t collect_cb(char *ptr, size_t size, size_t n, void *ud)
{
  struct buf *b = ud;
  size_t add = size * n;
  if (b->len + add > RESPONSE_CAP)
    return 0;
  char *grown = realloc(b->data, b->len + add + 1);
  if (grown == NULL)
    return 0;
  memcpy(grown + b->len, ptr, add);
  b->len += add;
  grown[b->len] = '\0';
  b->data = grown;
  return add;
}

/* One request to the sink; returns the status or -1; *body (may be NULL)
 * gets the response body, owned by the caller. */
static int request(struct sink_client *s, const char *method, const char *path,
                   const char *body, char **out)
{
  char url[128];
  struct buf b = {NULL, 0};
  long code = -1;
  CURL *c = curl_easy_init();
  if (c == NULL)
    return -1;
  snprintf(url, sizeof(url), "%s%s", s->url, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (body != NULL)
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (out != NULL)
    *out = b.data;
  else
    free(b.data);
  return (int)code;
}

struct json_object *sink_client_stats(struct sink_client *s)
{
  char *body = NULL;
  int code = request(s, "GET", "/stats", NULL, &body);
  struct json_object *o =
      code == 200 && body != NULL ? json_tokener_parse(body) : NULL;
  free(body);
  return o;
}

int64_t sink_client_stat(struct json_object *stats, const char *name)
{
  struct json_object *v;
  if (stats == NULL || !json_object_object_get_ex(stats, name, &v))
    return -1;
  return json_object_get_int64(v);
}

int sink_client_mode(struct sink_client *s, const char *json)
{
  return request(s, "POST", "/mode", json, NULL);
}

int sink_client_reset(struct sink_client *s)
{
  return request(s, "POST", "/reset", "", NULL);
}

/* testenv.h - where integration tests find the real servers.
 *
 * scripts/setup writes the connection settings of the local RabbitMQ and
 * PostgreSQL to an env file (default /var/lib/sendonce-dev/test.env, or
 * $SENDONCE_TEST_ENV). Variables already in the environment win, so a
 * developer can point the suite at other servers.
 *
 * Variables: SENDONCE_BROKER_URI, SENDONCE_BROKER_USER,
 * SENDONCE_BROKER_PASSWORD, SENDONCE_WATCHDOG_MGMT_URL,
 * SENDONCE_REGISTRY_PG_CONNINFO, SENDONCE_REGISTRY_PASSWORD.
 */
#ifndef SENDONCE_TESTENV_H
#define SENDONCE_TESTENV_H

/* testenv_get: the value of `name`, from the environment or the env file.
 * A missing variable is a test failure (the servers are part of the suite,
 * not optional): it prints what is missing and aborts. */
const char *testenv_get(const char *name);

/* testenv_unique: a name unique to this process and call, "<base>-<pid>-<n>"
 * (for queue prefixes, schemas, files). Owned by the caller (free()). */
char *testenv_unique(const char *base);

#endif /* SENDONCE_TESTENV_H */

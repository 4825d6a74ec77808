/* machine_cpu.c - the whole machine's busy CPU time (see machine_cpu.h). */
#include "machine_cpu.h"

#include <stdio.h>
#include <unistd.h>

double machine_busy_s(void)
{
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return -1;
  /* cpu  user nice system idle iowait irq softirq steal ... (USER_HZ) */
  unsigned long long user, nice, sys, idle, iowait, irq, softirq, steal;
  int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user,
                   &nice, &sys, &idle, &iowait, &irq, &softirq, &steal);
  fclose(f);
  long hz = sysconf(_SC_CLK_TCK);
  if (got != 8 || hz <= 0)
    return -1;
  return (double)(user + nice + sys + irq + softirq + steal) / (double)hz;
}

double machine_cpu_us_per_op(double busy0, double busy1, long long ops)
{
  if (busy0 < 0 || busy1 < busy0 || ops <= 0)
    return -1;
  return (busy1 - busy0) * 1e6 / (double)ops;
}

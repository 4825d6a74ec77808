/* machine_cpu.h - the CPU time the whole machine spent busy, for the
 * bench tools' "machine CPU per operation" figures.
 *
 * Busy is every process and the kernel on every core (user, nice,
 * system, irq, softirq, steal in /proc/stat): the broker, the database,
 * the sink and the tool itself are all counted, idle and iowait are not.
 * bench/run adds such figures up to bound what sendonce could reach on
 * the machine (docs/BENCHMARKS.md, "The design's bound"). */
#ifndef SENDONCE_BENCH_MACHINE_CPU_H
#define SENDONCE_BENCH_MACHINE_CPU_H

/* machine_busy_s: busy CPU seconds since boot, all cores summed; a
 * negative value when /proc/stat cannot be read. */
double machine_busy_s(void);

/* machine_cpu_us_per_op: the busy microseconds per operation between two
 * machine_busy_s() readings; a negative value if either failed or ops is
 * not positive. */
double machine_cpu_us_per_op(double busy0, double busy1, long long ops);

#endif /* SENDONCE_BENCH_MACHINE_CPU_H */
